#!/usr/bin/env bash
# thinsnapd's /metrics scraped by Debian's real Prometheus server on loopback, in the VM:
#   tests/vm/run -- tests/vm/metrics_test.sh <build-dir>
#
# Prometheus (1 s scrape interval, deploy/prometheus-rules.yml loaded) scrapes a thinsnapd on a
# loop pool. Through Prometheus' HTTP API the test checks that series move with real operations:
#   - N Prepares raise thinsnap_grpc_requests_total{method="Prepare",code="OK"} by exactly N, and
#     the create_snap latency histogram counts them;
#   - writing 64 MiB into a snapshot's device raises thinsnap_pool_data_used_bytes by >= 64 MiB;
#   - a Prepare of an existing key and a Stat of a missing one are counted as ALREADY_EXISTS and
#     NOT_FOUND;
# and that `promtool check metrics` passes on the exposition, every alert rule evaluates, a
# Prepare killed half-way is counted as a repair at the next start, and a start of thinsnapd
# that fails leaves nothing in its --root.
set -euo pipefail

build=$(readlink -f "${1:?usage: $0 <build-dir>}")
src=$(readlink -f "$(dirname "$0")/../..")
ctl_bin=$build/tools/thinsnapctl
daemon=$build/src/daemon/thinsnapd
[ -e /dev/mapper/control ] || { echo "FAIL: no device-mapper here; run through tests/vm/run"; exit 1; }
for tool in prometheus promtool curl jq; do
  command -v $tool >/dev/null || { echo "FAIL: $tool not installed (tools/install-deps)"; exit 1; }
done

work=$(mktemp -d /tmp/thinsnap-metrics.XXXXXX)
socket=$work/thinsnap.sock
pool="metrics-pool"
metrics=127.0.0.1:9500
prom=127.0.0.1:9090
daemon_pid=
prom_pid=
cleanup() {
  set +e
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  [ -n "$prom_pid" ] && kill -TERM "$prom_pid" && wait "$prom_pid"
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
  fi
  "$ctl_bin" pool destroy --dir "$work/pool" --force --delete-files >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

checks=0
fail() {
  echo "FAIL: $*"
  [ -f "$work/thinsnapd.log" ] && tail -n 20 "$work/thinsnapd.log"
  [ -f "$work/prometheus.log" ] && tail -n 20 "$work/prometheus.log"
  exit 1
}
ok() {
  checks=$((checks + 1))
  echo "ok $checks - $*"
}
ctl() { "$ctl_bin" --socket "$socket" "$@"; }

# query EXPR: the value of an instant query's single sample, or "none" if it has no sample.
query() {
  curl -sf "http://$prom/api/v1/query" --data-urlencode "query=$1" |
    jq -r 'if (.data.result | length) == 0 then "none" else .data.result[0].value[1] end'
}
# await EXPR: waits (up to 60 s, i.e. many scrapes) until the instant query EXPR has a sample,
# i.e. until a comparison like `x > 5` holds, and prints the value of VALUE_EXPR (default EXPR).
await() {
  local expr=$1 shown=${2:-$1} _
  for _ in $(seq 120); do
    if [ "$(query "$expr")" != none ]; then
      echo "  $shown = $(query "$shown")"
      return 0
    fi
    sleep 0.5
  done
  fail "never true within 60 s: $expr (now: $shown = $(query "$shown"))"
}
# value EXPR: its value, 0 if it has no sample yet.
value() {
  local v
  v=$(query "$1")
  [ "$v" = none ] && v=0
  echo "$v"
}

# The guest's loopback interface starts down.
ip link set lo up

# A failed start leaves nothing behind: no such pool, fresh root.
if "$daemon" --root "$work/failed-root" --socket "$work/failed.sock" --pool no-such-pool \
  2>"$work/failed.err"; then
  fail "thinsnapd started without a pool"
fi
[ ! -e "$work/failed-root" ] || fail "a failed start left $(ls -A "$work/failed-root") in --root"
ok "failed start leaves no --root behind: $(tail -n1 "$work/failed.err")"

"$ctl_bin" pool create --loop --dir "$work/pool" --name $pool --data-size 1G --meta-size 32M >/dev/null
# daemon_start [ENV=VALUE...]: thinsnapd on the pool, serving metrics; returns once it serves.
daemon_start() {
  rm -f "$socket"
  env "$@" "$daemon" --root "$work/root" --socket "$socket" --pool $pool \
    --metrics-address $metrics >>"$work/thinsnapd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 300); do
    [ -S "$socket" ] && break
    kill -0 $daemon_pid || fail "thinsnapd exited"
    sleep 0.1
  done
  [ -S "$socket" ] || fail "no socket"
}
daemon_start
# It binds exactly the configured address.
ss -Hltn "sport = :9500" | awk '{print $4}' >"$work/listen"
[ "$(cat "$work/listen")" = "$metrics" ] || fail "listening on $(cat "$work/listen"), want $metrics"
ok "thinsnapd serves /metrics on exactly $metrics"

curl -sf "http://$metrics/metrics" >"$work/scrape.txt" || fail "GET /metrics"
promtool check metrics <"$work/scrape.txt" || fail "promtool check metrics"
ok "promtool check metrics passes on the exposition ($(grep -vc '^#' "$work/scrape.txt") samples)"

cp "$src/deploy/prometheus-rules.yml" "$work/rules.yml"
cat >"$work/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [$work/rules.yml]
scrape_configs:
  - job_name: thinsnap
    static_configs: [{targets: ["$metrics"]}]
CONF
promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address=$prom >"$work/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://$prom/-/ready" >/dev/null && break
  kill -0 $prom_pid || fail "prometheus exited"
  sleep 0.2
done
curl -sf "http://$prom/-/ready" >/dev/null || fail "prometheus not ready within 120 s"
echo "prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}') ready"
await 'up{job="thinsnap"} == 1' 'up{job="thinsnap"}'
ok "Prometheus scrapes thinsnapd"

n=5
ok_prepares='sum(thinsnap_grpc_requests_total{method="Prepare",code="OK"})'
snaps='sum(thinsnap_dm_operation_duration_seconds_count{operation="create_snap"})'
before=$(value "$ok_prepares")
snaps_before=$(value "$snaps")
for i in $(seq $n); do ctl prepare "p$i" >/dev/null; done
await "$ok_prepares - $before == $n" "$ok_prepares"
ok "after $n Prepares, Prepare/OK rose by $n (from $before)"
await "$snaps - $snaps_before >= $n" "$snaps"
ok "create_snap latency histogram counted the $n snapshots"
await 'thinsnap_snapshots{kind="active"} == 5' 'thinsnap_snapshots{kind="active"}'
ok "thinsnap_snapshots{kind=active} is $n"

used='sum(thinsnap_pool_data_used_bytes)'
# Wait for a reading taken after the Prepares, then write.
sleep 2
used_before=$(value "$used")
read -r type source options <<<"$(ctl mounts p1)"
mkdir "$work/mnt"
mount -t "$type" -o "$options" "$source" "$work/mnt"
dd if=/dev/zero of="$work/mnt/blob" bs=1M count=64 conv=fsync status=none
umount "$work/mnt"
await "$used - $used_before >= 64 * 1024 * 1024" "$used - $used_before"
ok "writing 64 MiB raised pool data used bytes from $used_before by >= 64 MiB"
ratio=$(query 'thinsnap_pool_data_used_bytes / thinsnap_pool_data_size_bytes')
echo "  data used ratio = $ratio"

exists='sum(thinsnap_grpc_requests_total{method="Prepare",code="ALREADY_EXISTS"})'
missing='sum(thinsnap_grpc_requests_total{method="Stat",code="NOT_FOUND"})'
exists_before=$(value "$exists")
missing_before=$(value "$missing")
ctl prepare p1 >/dev/null 2>&1 && fail "prepare of an existing key succeeded"
ctl info no-such-key >/dev/null 2>&1 && fail "info of a missing key succeeded"
await "$exists - $exists_before == 1" "$exists"
await "$missing - $missing_before == 1" "$missing"
ok "a bad Prepare and a bad Stat are counted as ALREADY_EXISTS and NOT_FOUND"
await 'histogram_quantile(0.5, sum by (le) (rate(thinsnap_grpc_request_duration_seconds_bucket{method="Prepare"}[1m]))) > 0' \
  'histogram_quantile(0.5, sum by (le) (rate(thinsnap_grpc_request_duration_seconds_bucket{method="Prepare"}[1m])))'
ok "Prepare latency p50 is computable from the histogram"

for flag in needs_check read_only out_of_data_space error_if_no_space; do
  echo "  thinsnap_pool_$flag = $(query "thinsnap_pool_$flag")"
done
[ "$(query 'thinsnap_pool_error_if_no_space')" = 1 ] || fail "error_if_no_space not reported"
[ "$(query 'thinsnap_pool_needs_check')" = 0 ] || fail "needs_check reported on a healthy pool"
ok "pool flags reported (error_if_no_space=1, needs_check=0)"

# Every alert rule loads and evaluates against the live series; none fires on a healthy pool.
sleep 2
curl -sf "http://$prom/api/v1/rules" >"$work/rules.json"
rules=$(grep -c '^ *- alert:' "$work/rules.yml")
jq -e --argjson n "$rules" '[.data.groups[].rules[]] | length == $n and all(.health == "ok")' \
  "$work/rules.json" >/dev/null ||
  fail "rules not all healthy: $(jq -c '[.data.groups[].rules[] | {name, health, lastError}]' "$work/rules.json")"
firing=$(jq -r '[.data.groups[].rules[] | select(.state == "firing") | .name] | join(",")' "$work/rules.json")
[ -z "$firing" ] || fail "alerts firing on a healthy pool: $firing"
ok "all 11 alert rules evaluate (health ok) and none fires"

echo "--- scrape excerpt"
curl -sf "http://$metrics/metrics" >"$work/scrape.txt" || fail "GET /metrics"
grep -E '^thinsnap_(pool_|snapshots|thin_ids|pending|build|reconcile_duration|grpc_requests_total)' \
  "$work/scrape.txt"

# A crash in the middle of a Prepare is repaired at the next start, and the repair is counted.
kill -TERM $daemon_pid
wait $daemon_pid || fail "thinsnapd exited non-zero"
daemon_start THINSNAP_FAILPOINTS=create.after_snap=kill
ctl prepare crashed >/dev/null 2>&1 && fail "prepare survived the create.after_snap kill"
wait $daemon_pid && fail "thinsnapd was not killed by the failpoint"
daemon_start
await 'thinsnap_reconcile_repairs_total{kind="unfinished_create"} == 1' \
  'thinsnap_reconcile_repairs_total{kind="unfinished_create"}'
echo "  thinsnap_reconcile_duration_seconds = $(query thinsnap_reconcile_duration_seconds)"
ok "the next start repaired the killed Prepare; reconcile_repairs_total{kind=unfinished_create} = 1"


for i in $(seq $n); do ctl rm "p$i"; done
kill -TERM $prom_pid
wait $prom_pid || true
prom_pid=
kill -TERM $daemon_pid
wait $daemon_pid || fail "thinsnapd exited non-zero"
daemon_pid=
echo "PASS: $checks checks"
