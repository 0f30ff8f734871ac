#!/usr/bin/env bash
# What a reboot costs: the time from the start of thinsnapd's boot (the pool unit) to thinsnapd
# serving, with SNAPSHOTS snapshots in the pool, half of them with an active device (active
# snapshots and views, which the start-up reconciler re-activates one by one). In the test VM:
#
#   tests/vm/run -- tests/boot/boot-bench.sh BUILD_DIR [SNAPSHOTS] [REBOOTS]
#
# Builds the population once (e2etool populate) on a loop pool in the guest's tmpfs: SNAPSHOTS/2
# committed layers (10 chains), then SNAPSHOTS/2 active snapshots and views on them (one view in
# ten). Then, for
# each of REBOOTS "reboots": thinsnapd stopped, every device-mapper device of the pool removed and
# the loops detached (what a reboot leaves), and then the shipped units' commands
# (boot-sequence.sh, without containerd): pool activate, thinsnapd until READY=1. The figures
# are printed, never judged; the script fails only if an operation fails or a start-up does not
# re-activate every device.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
build=$(readlink -f "${1:?usage: $0 BUILD_DIR [SNAPSHOTS] [REBOOTS]}")
total=${2:-1000}
reboots=${3:-3}
src=$(dirname "$(dirname "$(dirname "$(readlink -f "$0")")")")
fail() {
  echo "boot-bench: FAIL: $*" >&2
  exit 1
}
log() { echo "boot-bench: [$(date +%T)] $*"; }
[ -e /dev/mapper/control ] || fail "no device-mapper here; run through tests/vm/run"
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd

# The units' paths: binaries in /usr/local/sbin, the pool in /var/lib/thinsnap-pool, root_dir
# /var/lib/thinsnap, /etc/thinsnap/config.toml. /var/lib and /usr/local/sbin are tmpfs here
# (the host root is read-only); /etc a tmpfs of links to the host's entries.
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /usr/local/sbin
ln -s "$build/src/daemon/thinsnapd" /usr/local/sbin/thinsnapd
ln -s "$build/tools/thinsnapctl" /usr/local/sbin/thinsnapctl
mkdir -p /run/etc.host
mount --bind /etc /run/etc.host
mount -t tmpfs tmpfs /etc
ln -s /run/etc.host/* /etc/ # one process: under TCG each one costs a fraction of a second
mkdir -p /etc/thinsnap
cp "$src/deploy/config.toml" /etc/thinsnap/config.toml
export MODPROBE_OPTIONS="-d ${THINSNAP_VM_CACHE:-/var/cache/thinsnap-vm}/kernel-$(uname -r)/root"
BOOT_DEPLOY=$src/deploy BOOT_LOGDIR=/run/boot-logs
# shellcheck source=boot-sequence.sh
source "$src/tests/boot/boot-sequence.sh"
cleanup() {
  set +e
  [ -z "$THINSNAPD_PID" ] || kill -9 "$THINSNAPD_PID"
  dmsetup remove_all >/dev/null 2>&1
  for l in $(losetup -n -O NAME -j /var/lib/thinsnap-pool/data.img) $(losetup -n -O NAME -j /var/lib/thinsnap-pool/meta.img); do
    losetup -d "$l"
  done
}
trap cleanup EXIT

thinsnapctl pool create --loop --dir /var/lib/thinsnap-pool --data-size 8G --meta-size 256M >/dev/null
thinsnapctl pool destroy --dir /var/lib/thinsnap-pool >/dev/null
boot_sequence loop "" nocontainerd

ctl() { thinsnapctl --timeout 300 "$@"; }
log "making $((total / 2)) committed layers (10 chains), then $((total - total / 2)) active snapshots and views (one in ten a view)"
t0=$SECONDS
"$build/tests/e2e/e2etool" populate /run/thinsnap/thinsnap.sock "$total" || fail "populate"
made=$(ctl ls --json | jq length)
active=$(dmsetup ls | grep -c -- '-thin-' || true)
[ "$made" = "$total" ] || fail "made $made snapshots, want $total"
log "population: $made snapshots, $active active devices, made in $((SECONDS - t0)) s"

for r in $(seq 1 "$reboots"); do
  boot_stop
  # What a reboot leaves: no device-mapper devices, no loops.
  thinsnapctl pool destroy --dir /var/lib/thinsnap-pool --force >/dev/null
  [ -z "$(dmsetup ls | grep -- '-thin-' || true)" ] || fail "thin devices left after pool destroy"
  boot_sequence loop "" nocontainerd
  now=$(dmsetup ls | grep -c -- '-thin-' || true)
  [ "$now" = "$active" ] || fail "after reboot $r: $now active devices, want $active"
  reactivated=$(grep -Eo 'inactive snapshot devices \[[0-9,]*\]' "$BOOT_LOGDIR/thinsnapd.log" | tr -cd , | wc -c)
  log "reboot $r: thinsnapd re-activated $((reactivated + 1)) devices"
  echo "BOOT-TO-SERVING snapshots=$total active_devices=$active pool_unit_ms=$BOOT_POOL_MS" \
    "thinsnapd_to_ready_ms=$BOOT_THINSNAPD_MS total_ms=$((BOOT_POOL_MS + BOOT_THINSNAPD_MS))"
done
boot_stop
