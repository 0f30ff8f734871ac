#!/usr/bin/env bash
# Runs containerd's snapshotter conformance suite (snapshots/testsuite, through
# containerd's snapshots/proxy client) against a live thinsnapd on a fresh
# loop-backed dm-thin pool. Needs root and device-mapper, i.e. the test VM:
#
#   tests/vm/run --timeout 1200 -- tests/conformance/run-in-vm.sh BUILD_DIR
#
# Passes only if every runnable case passes: the 20 suite cases (Rename is
# always skipped by the suite itself) and TestKataMountShape; then thinsnapd
# must exit cleanly and the pool metadata must pass thin_check and hold
# nothing but the base device.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/testbed.sh
source "$here/../e2e/testbed.sh"

[ $# -eq 1 ] || tb_fail "usage: $0 BUILD_DIR"
testbed_init conformance "$1"
bin=$BUILD/tests/conformance/conformance.test
[ -x "$bin" ] || tb_fail "$bin not built (target conformance_test_bin)"

start=$(date +%s)
pool_create 4G 128M
daemon_start

tb_log "running the conformance suite"
rc=0
# The suite's work dirs go to TMPDIR, which is tmpfs in the VM.
(cd "$WORK" && "$bin" -test.root -test.v -test.parallel 1 -test.timeout 50m \
  -thinsnap.socket "$THINSNAP_SOCK") 2>&1 | tee "$WORK/suite.log" || rc=$?
tb_log "suite finished with status $rc after $(($(date +%s) - start)) s"

echo "=== summary ==="
grep -E '^ *--- (PASS|FAIL|SKIP)' "$WORK/suite.log" || true
passed=$(grep -cE '^ +--- PASS: TestSnapshotterSuite/' "$WORK/suite.log" || true)
skipped=$(grep -E '^ +--- SKIP: TestSnapshotterSuite/' "$WORK/suite.log" | awk '{print $3}' || true)
failed=$(grep -cE -- '--- FAIL' "$WORK/suite.log" || true)
tb_log "suite cases passed: $passed; skipped: ${skipped:-none}; failures: $failed"

daemon_stop
pool_destroy_and_check 1

[ "$rc" -eq 0 ] || tb_fail "conformance binary exited with status $rc"
[ "$failed" -eq 0 ] || tb_fail "$failed failing cases"
[ "$passed" -eq 20 ] || tb_fail "want 20 passing suite cases, got $passed"
[ "$skipped" = "TestSnapshotterSuite/Rename" ] || tb_fail "unexpected skips: $skipped"
grep -qE '^--- PASS: TestKataMountShape' "$WORK/suite.log" || tb_fail "TestKataMountShape did not pass"
tb_log "conformance: PASS ($(($(date +%s) - start)) s)"
