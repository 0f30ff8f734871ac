#!/usr/bin/env bash
# Runs dm_stress (tests/vm/dm_stress.cc) in the test VM: first a check that LeakSanitizer works
# here at all, then the stress run with DM_DISABLE_UDEV=1 (libdevmapper manages /dev/mapper
# itself, so every removal queues a node operation) and again without it.
#   tests/vm/run -- bash tests/vm/dm_stress.sh build/dm_stress
set -euo pipefail

bin=$(readlink -f "${1:?usage: dm_stress.sh DM_STRESS_BINARY [ARGS...]}")
shift
log=$(mktemp /tmp/dm_stress.XXXXXX)
fail() {
  echo "dm_stress.sh: FAIL: $*" >&2
  exit 1
}

# A leak check that cannot run (it stops the threads with ptrace) would pass everything.
# (abort_on_error=0 only keeps bash from printing an "Aborted" notice for it.)
if ASAN_OPTIONS=abort_on_error=0 "$bin" --leak-selftest >"$log" 2>&1; then
  cat "$log"
  fail "LeakSanitizer did not fail a program that leaks"
fi
grep -q "ERROR: LeakSanitizer: detected memory leaks" "$log" ||
  { cat "$log"; fail "LeakSanitizer did not report the deliberate leak"; }
echo "dm_stress.sh: LeakSanitizer works here (it caught the deliberate leak)"

run() {
  local label=$1
  shift
  echo "dm_stress.sh: --- $label ---"
  local rc=0
  "$@" >"$log" 2>&1 || rc=$?
  cat "$log"
  # Belt and braces: a sanitizer report fails the run even if the exit status were lost.
  if grep -qE "Sanitizer|runtime error:" "$log"; then
    fail "$label: sanitizer report"
  fi
  [ "$rc" = 0 ] || fail "$label: exit status $rc"
}
run "DM_DISABLE_UDEV=1" env DM_DISABLE_UDEV=1 "$bin" "$@"
run "without DM_DISABLE_UDEV" env -u DM_DISABLE_UDEV "$bin" "$@"
echo "dm_stress.sh: PASS"
