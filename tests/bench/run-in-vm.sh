#!/usr/bin/env bash
# Latency and concurrency figures for thinsnapd on real dm-thin, measured
# through containerd's snapshots/proxy client (tests/bench/proxybench).
# Needs root and device-mapper, i.e. the test VM:
#
#   tests/vm/run -- tests/bench/run-in-vm.sh BUILD_DIR [thinsnap|devmapper|both] [-- PROXYBENCH_ARGS...]
#
# thinsnap (default): a loop pool made with `thinsnapctl pool create --loop`,
# thinsnapd on it (root dir and socket in the guest's /tmp), the bench, then
# a clean daemon exit and pool teardown. devmapper: the same bench against
# containerd's own devmapper snapshotter, served in-process by proxybench on a
# pool of its own. both: one after the other, for a side-by-side reading.
#
# The figures are printed, never judged; the script fails only if an
# operation, the daemon's exit or the teardown fails.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1

log() { echo "[$(date +%T)] $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[ $# -ge 1 ] || fail "usage: $0 BUILD_DIR [thinsnap|devmapper|both] [-- PROXYBENCH_ARGS...]"
build=$(readlink -f "$1")
shift
mode=thinsnap
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  mode=$1
  shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
bench_args=("$@")
case "$mode" in thinsnap | devmapper | both) ;; *) fail "unknown mode $mode" ;; esac
[ "$(id -u)" -eq 0 ] || fail "must run as root with device-mapper (tests/vm/run -- $0 ...)"

ctl=$build/tools/thinsnapctl
# THINSNAP_BENCH_DAEMON picks another thinsnapd binary, for before/after comparisons.
thinsnapd=${THINSNAP_BENCH_DAEMON:-$build/src/daemon/thinsnapd}
bench=$build/tests/bench/proxybench/proxybench
for bin in "$ctl" "$thinsnapd" "$bench"; do
  [ -x "$bin" ] || fail "$bin not built (targets thinsnapctl thinsnapd proxybench_bin)"
done

work=$(mktemp -d /tmp/thinsnap-bench.XXXXXX)
daemon_pid=
pools=()
cleanup() {
  local rc=$?
  set +e
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    tail -n 40 "$work/thinsnapd.log"
  fi
  local dir
  for dir in "${pools[@]}"; do
    [ -n "$dir" ] || continue
    "$ctl" pool destroy --force --dir "$dir" >/dev/null 2>&1
  done
  exit "$rc"
}
trap cleanup EXIT

# pool_create DIR NAME: a 6 GiB (sparse) loop pool with 256 MiB of metadata.
pool_create() {
  local dir=$1 name=$2
  pools+=("$dir")
  "$ctl" pool create --loop --dir "$dir" --data-size 6GiB --meta-size 256MiB --name "$name" ||
    fail "thinsnapctl pool create $name"
  log "pool $name created in $dir"
}

# pool_destroy DIR [--force]: fails if the pool cannot be torn down cleanly.
pool_destroy() {
  local dir=$1
  shift
  "$ctl" pool destroy "$@" --dir "$dir" || fail "thinsnapctl pool destroy $dir"
  pools=("${pools[@]/$dir/}")
}

run_thinsnap() {
  local name=bench-ts-$$
  pool_create "$work/ts-pool" "$name"
  "$thinsnapd" --root "$work/ts-root" --socket "$work/thinsnapd.sock" --pool "$name" \
    --log-level warn >"$work/thinsnapd.log" 2>&1 &
  daemon_pid=$!
  local _
  for _ in $(seq 600); do
    [ -S "$work/thinsnapd.sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/thinsnapd.log" >&2; fail "thinsnapd exited"; }
    sleep 0.1
  done
  [ -S "$work/thinsnapd.sock" ] || fail "thinsnapd did not create its socket within 60 s"
  log "thinsnapd pid $daemon_pid ready"
  "$bench" -label thinsnap -socket "$work/thinsnapd.sock" "${bench_args[@]}" ||
    fail "proxybench against thinsnapd"
  local pid=$daemon_pid rc=0
  daemon_pid=
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || { tail -n 40 "$work/thinsnapd.log" >&2; fail "thinsnapd exited with $rc"; }
  if grep -q '\[warning\]\|\[error\]' "$work/thinsnapd.log"; then
    echo "--- thinsnapd warnings ---"
    grep '\[warning\]\|\[error\]' "$work/thinsnapd.log" | head -n 20
  fi
  # Nothing may be left active once thinsnapd has exited cleanly.
  pool_destroy "$work/ts-pool"
}

run_devmapper() {
  local name=bench-dm-$$
  pool_create "$work/dm-pool" "$name"
  "$bench" -label devmapper -devmapper-pool "$name" -devmapper-root "$work/dm-root" \
    "${bench_args[@]}" || fail "proxybench against containerd's devmapper snapshotter"
  # containerd's devmapper may leave devices behind (deferred removal); not ours to judge.
  pool_destroy "$work/dm-pool" --force
}

log "proxybench mode $mode, $(nproc) CPUs"
case "$mode" in
  thinsnap) run_thinsnap ;;
  devmapper) run_devmapper ;;
  both)
    run_thinsnap
    run_devmapper
    ;;
esac
log "bench: done"
