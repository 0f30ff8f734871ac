#!/usr/bin/env bash
# Latency and concurrency figures for thinsnapd on real dm-thin, measured
# through containerd's snapshots/proxy client (tests/bench/proxybench).
# Needs root and device-mapper, i.e. the test VM:
#
#   tests/vm/run -- tests/bench/run-in-vm.sh BUILD_DIR [thinsnap|devmapper|both|metrics] [-- PROXYBENCH_ARGS...]
#
# thinsnap (default): a loop pool made with `thinsnapctl pool create --loop`;
# first the kernel's floor on it (dm_floor_bench: the same operations with
# libdevmapper alone), then thinsnapd on it (root dir and socket in the
# guest's /tmp), the bench, which prints its figures beside the targets set
# against that floor, then a clean daemon exit and pool teardown. devmapper: the same bench against
# containerd's own devmapper snapshotter, served in-process by proxybench on a
# pool of its own. both: one after the other, for a side-by-side reading.
# metrics: the overhead of metrics_address: two thinsnapds on two identical
# pools, one without metrics and one serving /metrics (scraped every second
# meanwhile, as a busy Prometheus would), and single Prepares interleaved
# between them (proxybench -ab-socket); their p50s are printed side by side.
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

[ $# -ge 1 ] || fail "usage: $0 BUILD_DIR [thinsnap|devmapper|both|metrics|discard|max-size] [-- PROXYBENCH_ARGS...]"
build=$(readlink -f "$1")
shift
mode=thinsnap
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  mode=$1
  shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
bench_args=("$@")
case "$mode" in thinsnap | devmapper | both | metrics | discard | max-size) ;; *) fail "unknown mode $mode" ;; esac
[ "$(id -u)" -eq 0 ] || fail "must run as root with device-mapper (tests/vm/run -- $0 ...)"

ctl=$build/tools/thinsnapctl
# THINSNAP_BENCH_DAEMON picks another thinsnapd binary, for before/after comparisons.
thinsnapd=${THINSNAP_BENCH_DAEMON:-$build/src/daemon/thinsnapd}
bench=$build/tests/bench/proxybench/proxybench
floor=$build/tests/bench/dm_floor_bench
for bin in "$ctl" "$thinsnapd" "$bench" "$floor"; do
  [ -x "$bin" ] || fail "$bin not built (targets thinsnapctl thinsnapd proxybench_bin dm_floor_bench)"
done

work=$(mktemp -d /tmp/thinsnap-bench.XXXXXX)
daemon_pid=
extra_pids=()  # the metrics mode's second daemon and scrape loop
pools=()
cleanup() {
  local rc=$?
  set +e
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
    tail -n 40 "$work/thinsnapd.log"
  fi
  local pid
  for pid in "${extra_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
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

# daemon_start NAME POOL [THINSNAPD_ARGS...]: thinsnapd with root, socket and log in $work/NAME*;
# returns once the socket exists, with the daemon's pid in $started_pid.
daemon_start() {
  local name=$1 pool=$2
  shift 2
  "$thinsnapd" --root "$work/$name-root" --socket "$work/$name.sock" --pool "$pool" \
    --log-level warn "$@" >"$work/$name.log" 2>&1 &
  local pid=$! _
  for _ in $(seq 600); do
    [ -S "$work/$name.sock" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; fail "thinsnapd $name exited"; }
    sleep 0.1
  done
  [ -S "$work/$name.sock" ] || fail "thinsnapd $name did not create its socket within 60 s"
  log "thinsnapd $name pid $pid ready"
  started_pid=$pid
}

# run_thinsnap [LABEL [THINSNAPD_ARGS...]]; with floor=1, the kernel's floor first, on the same pool.
run_thinsnap() {
  local label=${1:-thinsnap}
  shift || true
  # A pool per run: the discard and max-size modes run twice in one VM.
  local name=bench-ts-$$-$label pool_dir=$work/ts-pool-$label
  local -a targets=()
  pool_create "$pool_dir" "$name"
  if [ "${floor_first:-0}" = 1 ]; then
    "$floor" --pool "$name" --out "$work/floor.txt" || fail "dm_floor_bench on $name"
    targets=(-floor "$work/floor.txt")
  fi
  rm -rf "$work/thinsnapd-root"  # a fresh thinsnapd for the fresh pool
  daemon_start thinsnapd "$name" "$@"
  daemon_pid=$started_pid
  "$bench" -label "$label" -socket "$work/thinsnapd.sock" "${targets[@]}" "${bench_args[@]}" ||
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
  pool_destroy "$pool_dir"
}

run_metrics() {
  local off=bench-off-$$ on=bench-on-$$ address=127.0.0.1:9501
  ip link set lo up
  pool_create "$work/off-pool" "$off"
  pool_create "$work/on-pool" "$on"
  daemon_start thinsnapd "$off"
  daemon_pid=$started_pid
  daemon_start metrics-on "$on" --metrics-address "$address"
  local on_pid=$started_pid
  extra_pids+=("$on_pid")
  curl -sf "http://$address/metrics" >"$work/scrape.txt" || fail "GET http://$address/metrics"
  log "metrics-on serves $(grep -vc '^#' "$work/scrape.txt") samples on $address"
  # Scraped every second during the bench.
  (while sleep 1; do curl -sf -o /dev/null "http://$address/metrics" || exit 1; done) &
  local scraper=$!
  extra_pids+=("$scraper")
  "$bench" -socket "$work/thinsnapd.sock" -ab-socket "$work/metrics-on.sock" \
    -ab-labels metrics-off,metrics-on "${bench_args[@]}" || fail "proxybench -ab-socket"
  kill -0 "$scraper" || fail "a scrape of $address failed during the bench"
  local scrapes
  scrapes=$(curl -sf "http://$address/metrics" | awk '$1 == "exposer_scrapes_total" {print $2}')
  log "metrics-on was scraped $scrapes times"
  local pid rc
  for pid in "$daemon_pid" "$on_pid"; do
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "thinsnapd $pid exited with $rc"
  done
  daemon_pid=
  kill "$scraper"
  wait "$scraper" 2>/dev/null || true
  extra_pids=()
  pool_destroy "$work/off-pool"
  pool_destroy "$work/on-pool"
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
  thinsnap) floor_first=1 run_thinsnap ;;
  devmapper) run_devmapper ;;
  both)
    run_thinsnap
    run_devmapper
    ;;
  metrics) run_metrics ;;
  discard)
    # Remove with the reclaim (discard before delete, in the background) and without it.
    printf 'discard_unused_blocks = false\n' >"$work/no-discard.toml"
    run_thinsnap discard-on
    run_thinsnap discard-off --config "$work/no-discard.toml"
    ;;
  max-size)
    # Prepare without the label, then with a containerd.io/snapshot/max-size of twice the
    # base size (10 GiB): every root snapshot's device and filesystem grow.
    run_thinsnap no-label
    bench_args+=(-max-size $((20 << 30)))
    run_thinsnap max-size-20GiB
    ;;
esac
log "bench: done"
