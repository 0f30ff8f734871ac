#!/usr/bin/env bash
# Power-cut test of thinsnap's boot sequence, run on the HOST:
#
#   tests/boot/powercut.sh BUILD_DIR KIND CUTS [SEED]      KIND: loop | lvm
#
# Boots the test VM CUTS + 2 times on the same persistent disk images (a host file that outlives
# each VM; tests/vm/run --disk, cache=none with flushes honoured). Boot 0 makes the pool and imports
# an image with containerd; every boot runs the image as a container that writes and fsyncs a file,
# and every boot but the last then runs a workload (Prepare / write+fsync / Commit chains; Removes,
# all through containerd) and the host kills qemu with SIGKILL at a random instant after the
# workload starts. Every boot after a cut runs the shipped units' commands
# in their order (tests/boot/boot-sequence.sh) and checks everything the guest acknowledged before
# any cut (tests/boot/powercut-guest.sh); the last boot then runs the image, lets containerd's GC
# remove everything, and thin_checks the pool, which must hold only the base device.
#
# The acknowledgements travel over a virtio port (tests/vm/run --guest-log) that the host sees
# line by line, so a line the host has was written by the guest after its operation returned and
# before the cut. The seed and each cut's instant are logged; TCG timing is not deterministic, so a
# seed reproduces the instants, not the exact operation that each cut interrupts.
set -euo pipefail

build=$(readlink -f "${1:?usage: $0 BUILD_DIR KIND CUTS [SEED]}")
kind=${2:?usage}
cuts=${3:?usage}
seed=${4:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
here=$(dirname "$(readlink -f "$0")")
src=$(dirname "$(dirname "$here")")
vmrun=$src/tests/vm/run
case "$kind" in loop | lvm) ;; *) echo "KIND must be loop or lvm" >&2; exit 2 ;; esac
# The guest mounts the persistent disk over /var/lib (and tmpfs over /tmp, /run, /var/tmp):
# a checkout or build there would vanish from under the guest's feet.
for dir in "$build" "$src"; do
  case "$dir/" in
    /var/lib/* | /tmp/* | /run/* | /var/tmp/*)
      echo "powercut: FAIL: $dir is hidden inside the guest (persistent disk on /var/lib, tmpfs on /tmp, /run, /var/tmp); use a checkout elsewhere, e.g. under /srv" >&2
      exit 1
      ;;
  esac
done
[[ "$cuts" =~ ^[1-9][0-9]*$ ]] || { echo "CUTS must be a positive number" >&2; exit 2; }
for bin in "$build/src/daemon/thinsnapd" "$build/tools/thinsnapctl" "$build/tests/e2e/e2etool"; do
  [ -x "$bin" ] || { echo "powercut: FAIL: $bin not built" >&2; exit 1; }
done
for tool in mkfs.ext4 truncate; do
  command -v "$tool" >/dev/null || { echo "powercut: FAIL: $tool missing (tools/install-deps)" >&2; exit 1; }
done

say() { echo "powercut[$kind]: $*"; }
fail() {
  echo "powercut[$kind]: FAIL: $*" >&2
  exit 1
}

# The state lives in the build tree: the guest sees it (read-only) through the host root, and it
# must not be under /tmp, which the guest covers with tmpfs.
state=$build/tests/boot/powercut-$kind-$cuts
rm -rf "$state"
mkdir -p "$state"
truncate -s 3G "$state/disk0.img"
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "$state/disk0.img"
disks=(--disk "$state/disk0.img")
if [ "$kind" = lvm ]; then
  truncate -s 1536M "$state/disk1.img"
  disks+=(--disk "$state/disk1.img")
fi
"$build/tests/e2e/e2etool" mkimage -o "$state/image.tar" -busybox /bin/busybox -ref thinsnap.test/e2e:latest
: >"$state/acks"

RANDOM=$seed
# The workload's first step (a container run) takes a few seconds under TCG; instants spread
# over it and the chains after it.
lo_ms=${THINSNAP_POWERCUT_MIN_MS:-1000}
hi_ms=${THINSNAP_POWERCUT_MAX_MS:-20000}
say "seed $seed: $cuts cuts, each at a uniform instant in [$lo_ms, $hi_ms] ms after the workload arms"
total_verified=0
start=$SECONDS

# boot PHASE CYCLE [CUT_MS]
boot() {
  local phase=$1 cycle=$2 cut_ms=${3:-} log=$state/guest.$2.log out=$state/console.$2.log rc=0
  local -a cut=()
  [ -z "$cut_ms" ] || cut=(--power-cut "$cut_ms")
  "$vmrun" --timeout 600 --mem 2048 "${disks[@]}" --guest-log "$log" "${cut[@]}" -- \
    bash "$here/powercut-guest.sh" "$kind" "$phase" "$cycle" "$state" "$build" >"$out" 2>&1 || rc=$?
  # Only whole lines count: the cut may have ended the last one mid-write.
  local acked
  acked=$(grep -cE '^ACK [a-z]+ .* END$' "$log" || true)
  grep -E '^ACK [a-z]+ .* END$' "$log" >>"$state/acks" || true
  local v
  v=$(grep -Eo 'VERIFIED-ACKS [0-9]+' "$out" | awk '{ print $2 }' | tail -n 1 || true)
  [ -z "$v" ] || total_verified=$((total_verified + v))
  if grep -q '^WORKLOAD-FAIL' "$log"; then
    cat "$out" >&2
    fail "boot $cycle ($phase): $(grep '^WORKLOAD-FAIL' "$log" | head -n 1)"
  fi
  if [ "$rc" != 0 ]; then
    cat "$out" >&2
    fail "boot $cycle ($phase) failed (tests/vm/run exit $rc); console in $out"
  fi
  grep -E '^powercut-guest: .*(serving|verified|imported|runs:|thin_check|GC)' "$out" | sed "s/^/  boot $cycle: /" || true
  say "boot $cycle ($phase${cut_ms:+, cut at +$cut_ms ms}): $acked operations acknowledged${v:+, $v verified}"
}

for c in $(seq 0 $((cuts - 1))); do
  ms=$((lo_ms + (RANDOM * 32768 + RANDOM) % (hi_ms - lo_ms + 1)))
  say "cut $((c + 1))/$cuts: seed $seed, SIGKILL to qemu at +$ms ms"
  if [ "$c" = 0 ]; then boot first "$c" "$ms"; else boot cut "$c" "$ms"; fi
done
boot final "$cuts"
grep -q '^POWERCUT-FINAL-OK' "$state/console.$cuts.log" || fail "the final boot did not finish its checks"
say "PASS: $cuts power cuts (seed $seed), $(wc -l <"$state/acks") operations acknowledged, $total_verified acknowledgements verified over all boots, $((SECONDS - start)) s"
