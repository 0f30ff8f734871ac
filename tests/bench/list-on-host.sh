#!/usr/bin/env bash
# List at 10,000 snapshots through containerd's snapshots/proxy client, on the
# host (issue 17): fake_thinsnapd, thinsnapd's serving stack over the
# in-memory pool with its database on /dev/shm, and proxybench's list phase,
# which builds the scale bench's layout untimed and then times five Lists. No
# device-mapper, no VM: about a minute instead of bench_scale's quarter of an
# hour, for the server's and the client's share of the List. The VM's figure,
# beside its target, is still bench_scale's.
#
#   tests/bench/list-on-host.sh BUILD_DIR [-- PROXYBENCH_ARGS...]
#
# The figures are printed, never judged; the script fails only if a call does.
set -euo pipefail

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[ $# -ge 1 ] || fail "usage: $0 BUILD_DIR [-- PROXYBENCH_ARGS...]"
build=$(readlink -f "$1")
shift
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
server=$build/tests/bench/fake_thinsnapd
bench=$build/tests/bench/proxybench/proxybench
for bin in "$server" "$bench"; do
  [ -x "$bin" ] || fail "$bin not built (targets fake_thinsnapd proxybench_bin)"
done

dir=$(mktemp -d /dev/shm/thinsnap-list.XXXXXX)
server_pid=
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || rc=1
  fi
  [ "$rc" -eq 0 ] || tail -n 20 "$dir/server.log" >&2
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT

"$server" "$dir" >"$dir/server.out" 2>"$dir/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q ready "$dir/server.out" && break
  kill -0 "$server_pid" 2>/dev/null || fail "fake_thinsnapd exited"
  sleep 0.1
done
grep -q ready "$dir/server.out" || fail "fake_thinsnapd did not start within 10 s"
"$bench" -label fake -socket "$dir/thinsnapd.sock" -scale-snapshots 10000 -scale-phase list "$@"
