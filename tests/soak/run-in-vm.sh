#!/usr/bin/env bash
# Soak test of thinsnapd on real dm-thin. Runs inside the test VM:
#   tests/vm/run -- tests/soak/run-in-vm.sh <thinsnapctl> <thinsnapd> <thinsnap_soak>
#
# Provisions a loop-backed pool, starts thinsnapd on it, runs thinsnap_soak (32 concurrent
# clients for THINSNAP_SOAK_SECONDS, default 60), then checks that nothing leaked and that
# everything is consistent:
#   - the soak itself: no unexpected gRPC code, no call past its deadline, List empty at the end;
#   - thinsnapd is still alive afterwards and stops cleanly (exit 0) on SIGTERM;
#   - `thinsnapctl check --json` is clean while it serves and after it stopped, the pool holds
#     only the base thin id and the metadata accounts for exactly the same ids;
#   - no thin device is left active;
#   - thin_check passes on the metadata after the pool is torn down.
set -euo pipefail

ctl=$(readlink -f "${1:?usage: $0 <thinsnapctl> <thinsnapd> <thinsnap_soak>}")
daemon=$(readlink -f "${2:?usage: $0 <thinsnapctl> <thinsnapd> <thinsnap_soak>}")
soak=$(readlink -f "${3:?usage: $0 <thinsnapctl> <thinsnapd> <thinsnap_soak>}")
seconds=${THINSNAP_SOAK_SECONDS:-60}
clients=${THINSNAP_SOAK_CLIENTS:-32}
[ -e /dev/mapper/control ] || { echo "FAIL: no device-mapper here; run through tests/vm/run"; exit 1; }

work=$(mktemp -d /tmp/thinsnap-soak.XXXXXX)
pool=soak-$$
socket=$work/run/thinsnap.sock
daemon_pid=
pool_made=

fail() {
  echo "FAIL: $*"
  exit 1
}

cleanup() {
  set +e
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
  fi
  if [ -n "$pool_made" ]; then
    "$ctl" pool destroy --dir "$work/pool" --force >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Reports and fails unless `thinsnapctl check` finds the metadata and the pool in agreement,
# with only the base device left in the pool.
check_clean() {
  local when=$1 out
  out=$("$ctl" check --json --root "$work/root" --pool "$pool") ||
    { echo "$out"; fail "thinsnapctl check ($when) exited non-zero"; }
  echo "check ($when): $(jq -c '{clean, pool_thin_ids, metadata_thin_ids}' <<<"$out")"
  jq -e '.clean == true and (.pool_thin_ids | length) == 1 and
         (.pool_thin_ids | sort) == (.metadata_thin_ids | sort)' <<<"$out" >/dev/null ||
    { echo "$out"; fail "thinsnapctl check ($when): not clean or thin ids leaked"; }
}

# 4 GiB of (sparse) data and 256 MiB of metadata: far from the 10% free-space floor even with
# every client's snapshots live, so ResourceExhausted is never legitimate here.
mkdir -p "$work/pool" "$work/root"
"$ctl" pool create --loop --dir "$work/pool" --data-size 4G --meta-size 256M --name "$pool"
pool_made=1
cat >"$work/thinsnapd.toml" <<TOML
base_size = "512M"
log_level = "warn"
TOML

"$daemon" --config "$work/thinsnapd.toml" --root "$work/root" --socket "$socket" --pool "$pool" \
  2>"$work/thinsnapd.log" &
daemon_pid=$!
for _ in $(seq 600); do
  [ -S "$socket" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/thinsnapd.log"; fail "thinsnapd exited at start"; }
  sleep 0.1
done
[ -S "$socket" ] || { cat "$work/thinsnapd.log"; fail "thinsnapd did not create $socket in 60 s"; }

soak_status=0
"$soak" --socket "$socket" --clients "$clients" --duration "$seconds" --deadline 60 || soak_status=$?
kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/thinsnapd.log"; fail "thinsnapd died during the soak"; }
if [ "$soak_status" -ne 0 ]; then
  tail -n 50 "$work/thinsnapd.log"
  fail "thinsnap_soak exited $soak_status"
fi
# Removals finish in the background; Cleanup returns once they are done.
"$ctl" --socket "$socket" cleanup || fail "thinsnapctl cleanup"
check_clean "thinsnapd serving"

kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=
[ "$daemon_status" -eq 0 ] || { tail -n 50 "$work/thinsnapd.log"; fail "thinsnapd exited $daemon_status on SIGTERM"; }
check_clean "thinsnapd stopped"

thin_devices=$(dmsetup ls --target thin | grep -v '^No devices found' || true)
[ -z "$thin_devices" ] || fail "thin devices still active after shutdown: $thin_devices"
if grep -Eq '\[(error|critical)\]' "$work/thinsnapd.log"; then
  grep -E '\[(error|critical)\]' "$work/thinsnapd.log" | head -n 20
  fail "thinsnapd logged errors"
fi

"$ctl" pool destroy --dir "$work/pool"
pool_made=
# thin_check uses O_DIRECT, which tmpfs refuses: check through a loop device.
loop=$(losetup --find --show "$work/pool/meta.img")
thin_check_status=0
thin_check "$loop" || thin_check_status=$?
losetup -d "$loop"
[ "$thin_check_status" -eq 0 ] || fail "thin_check found problems in the pool metadata"
echo "soak_vm: PASS"
