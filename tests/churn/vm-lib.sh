# shellcheck shell=bash
# Guest-side setup shared by the VM tests in tests/churn (churn.sh, handoff.sh, devname.sh),
# tests/vm/handoff/handoff.sh and tests/soak/run-in-vm.sh:
# a loop pool, thinsnapd on it with /metrics, leak checks and a teardown. Sourced by a script
# running with `set -euo pipefail` as root inside the test VM (tests/vm/run).
#
#   vm_init NAME BUILD_DIR [-- ARGS...]
#                                   binaries ($ctl, $thinsnapd, $churn), $work, the EXIT trap, and
#                                   $vm_args: THINSNAP_CHURN_ARGS (through ctest) then ARGS
#   vm_pool_create DATA META        a loop pool $pool in $work/pool ($data_file is its data file)
#   vm_daemon_start BASE_SIZE       thinsnapd on $socket, /metrics on $metrics_url
#   vm_daemon_alive WHEN            records a problem (with the log's tail) if thinsnapd died
#   vm_daemon_stop                  SIGTERM; records a problem unless it exits 0 within 120 s
#   vm_check_clean WHEN             `thinsnapctl check --json`: clean, only the base thin id
#   vm_pool_destroy                 tears the pool down, then thin_check on its metadata
#   vm_end WHEN [KEY...]            the usual end: removes KEYs and calls Cleanup (if thinsnapd still
#                                   runs), vm_check_clean, vm_daemon_stop, vm_check_clean again,
#                                   vm_pool_destroy, vm_finish
#   vm_problem MSG                  records a failure and goes on; vm_fail MSG ends the test now
#   vm_finish                       prints every problem and the verdict; exits 1 if any
#
# A script may define vm_on_exit, which the EXIT trap runs first (e.g. to close a held device).

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1

vm_name=
vm_args=()
vm_problems=()
daemon_pid=
vm_pool_made=

vm_log() { echo "[$(date +%T)] $*"; }

vm_fail() {
  echo "FAIL: $*" >&2
  echo "$vm_name: FAIL" >&2
  exit 1
}

vm_problem() {
  echo "FAIL: $*"
  vm_problems+=("$*")
}

vm_finish() {
  if [ "${#vm_problems[@]}" -gt 0 ]; then
    echo "== $vm_name: ${#vm_problems[@]} problem(s) =="
    printf '  - %s\n' "${vm_problems[@]}"
    echo "$vm_name: FAIL"
    exit 1
  fi
  echo "$vm_name: PASS"
}

vm_cleanup() {
  local rc=$?
  set +e
  if declare -F vm_on_exit >/dev/null; then vm_on_exit; fi
  # Whatever a failed client left mounted under the work directory, innermost first.
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
  fi
  if [ -n "$vm_pool_made" ]; then
    "$ctl" pool destroy --dir "$work/pool" --force >/dev/null 2>&1
  fi
  rm -rf "$work"
  exit "$rc"
}

vm_init() {
  vm_name=$1
  local build
  build=$(readlink -f "${2:?usage: $0 BUILD_DIR [-- THINSNAP_CHURN_ARGS...]}")
  shift 2
  [ $# -gt 0 ] && [ "$1" = "--" ] && shift
  # Through ctest too: tests/vm/run passes THINSNAP_* variables into the guest.
  read -ra vm_args <<<"${THINSNAP_CHURN_ARGS:-}"
  vm_args+=("$@")
  ctl=$build/tools/thinsnapctl
  thinsnapd=${THINSNAP_CHURN_DAEMON:-$build/src/daemon/thinsnapd}
  churn=$build/tests/churn/thinsnap_churn
  local bin
  for bin in "$ctl" "$thinsnapd" "$churn"; do
    [ -x "$bin" ] || vm_fail "$bin not built (targets thinsnapctl thinsnapd thinsnap_churn_bin)"
  done
  [ -e /dev/mapper/control ] || vm_fail "no device-mapper here; run through tests/vm/run"
  [ "$(id -u)" -eq 0 ] || vm_fail "must run as root"
  work=$(mktemp -d "/tmp/thinsnap-$vm_name.XXXXXX")
  pool=$vm_name-$$
  socket=$work/run/thinsnap.sock
  # shellcheck disable=SC2034 # for the sourcing script
  metrics_url=http://127.0.0.1:9500/metrics
  trap vm_cleanup EXIT
  vm_log "$vm_name: $(nproc) CPUs, $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) MiB, work dir $work"
}

vm_pool_create() {
  mkdir -p "$work/pool" "$work/root" "$work/mnt"
  "$ctl" pool create --loop --dir "$work/pool" --data-size "$1" --meta-size "$2" --name "$pool" ||
    vm_fail "thinsnapctl pool create"
  vm_pool_made=1
  data_file=$work/pool/data.img
  [ -f "$data_file" ] || vm_fail "no data file $data_file"
}

vm_daemon_start() {
  ip link set lo up
  printf 'base_size = "%s"\nlog_level = "warn"\n' "$1" >"$work/thinsnapd.toml"
  "$thinsnapd" --config "$work/thinsnapd.toml" --root "$work/root" --socket "$socket" --pool "$pool" \
    --metrics-address 127.0.0.1:9500 2>"$work/thinsnapd.log" &
  daemon_pid=$!
  local _
  for _ in $(seq 600); do
    [ -S "$socket" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/thinsnapd.log"; vm_fail "thinsnapd exited at start"; }
    sleep 0.1
  done
  [ -S "$socket" ] || { cat "$work/thinsnapd.log"; vm_fail "thinsnapd did not create $socket in 60 s"; }
  vm_log "thinsnapd $daemon_pid serving on $socket, pool $pool"
}

vm_daemon_alive() {
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    local rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=
    tail -n 40 "$work/thinsnapd.log"
    vm_problem "thinsnapd died ($1), exit status $rc"
    return 1
  fi
}

vm_daemon_stop() {
  [ -n "$daemon_pid" ] || return 0
  local pid=$daemon_pid rc=0 _
  daemon_pid=
  kill -TERM "$pid"
  for _ in $(seq 1200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    vm_problem "thinsnapd did not exit within 120 s of SIGTERM"
  fi
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { tail -n 40 "$work/thinsnapd.log"; vm_problem "thinsnapd exited $rc on SIGTERM"; }
  if grep -Eq '\[(warning|error|critical)\]' "$work/thinsnapd.log"; then
    echo "--- thinsnapd warnings and errors (first 20 of $(grep -Ec '\[(warning|error|critical)\]' "$work/thinsnapd.log")) ---"
    grep -m 20 -E '\[(warning|error|critical)\]' "$work/thinsnapd.log"
  fi
}

# Records a problem unless the metadata and the pool agree and only the base thin id is left.
vm_check_clean() {
  local when=$1 out rc=0
  out=$("$ctl" check --json --root "$work/root" --pool "$pool") || rc=$?
  if [ "$rc" -ne 0 ] && ! jq -e . <<<"$out" >/dev/null 2>&1; then
    echo "$out"
    vm_problem "thinsnapctl check ($when) exited $rc"
    return 0
  fi
  echo "check ($when): $(jq -c '{clean, pool_thin_ids, metadata_thin_ids}' <<<"$out")"
  jq -e '.clean == true and (.pool_thin_ids | length) == 1 and
         (.pool_thin_ids | sort) == (.metadata_thin_ids | sort)' <<<"$out" >/dev/null ||
    { echo "$out"; vm_problem "thinsnapctl check ($when): not clean, or thin ids besides the base left"; }
}

vm_pool_destroy() {
  local thin_devices
  thin_devices=$(dmsetup ls --target thin | grep -v '^No devices found' || true)
  [ -z "$thin_devices" ] || vm_problem "thin devices still active at the end: $thin_devices"
  if ! "$ctl" pool destroy --dir "$work/pool"; then
    vm_problem "thinsnapctl pool destroy"
    return 0
  fi
  vm_pool_made=
  # thin_check uses O_DIRECT, which tmpfs refuses: check through a loop device.
  local loop rc=0
  loop=$(losetup --find --show "$work/pool/meta.img")
  thin_check "$loop" || rc=$?
  losetup -d "$loop"
  [ "$rc" -eq 0 ] || vm_problem "thin_check found problems in the pool metadata"
}

vm_end() {
  local when=$1 key
  shift
  if vm_daemon_alive "$when"; then
    for key in "$@"; do
      "$ctl" --socket "$socket" rm "$key" || vm_problem "remove $key"
    done
    [ $# -eq 0 ] || "$ctl" --socket "$socket" cleanup || vm_problem "final Cleanup"
    vm_check_clean "thinsnapd serving"
  fi
  vm_daemon_stop
  vm_check_clean "thinsnapd stopped"
  vm_pool_destroy
  vm_finish
}
