#!/usr/bin/env bash
# tests/cli/cli_test.sh THINSNAPD THINSNAPCTL VERSION: what a user sees from the two binaries
# before anything touches a pool. Runs on the host as any user.
set -uo pipefail

[ $# -eq 3 ] || { echo "usage: $0 THINSNAPD THINSNAPCTL VERSION" >&2; exit 2; }
daemon=$1 ctl=$2 version=$3
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect WANT_CODE WANT_TEXT CMD...: CMD exits WANT_CODE and its stdout+stderr contains WANT_TEXT.
expect() {
  local want_code=$1 want_text=$2 out code
  shift 2
  out=$("$@" 2>&1)
  code=$?
  [ "$code" = "$want_code" ] || fail "$(basename "$1") ${*:2}: exit $code, want $want_code: $out"
  grep -qF -- "$want_text" <<<"$out" ||
    fail "$(basename "$1") ${*:2}: no '$want_text' in: $out"
}

# --version: one line, the project version from CMake.
for bin in "$daemon" "$ctl"; do
  name=$(basename "$bin")
  out=$("$bin" --version 2>&1)
  code=$?
  [ "$code" = 0 ] || fail "$name --version: exit $code: $out"
  [ "$out" = "$name $version" ] || fail "$name --version printed '$out', want '$name $version'"
done

# thinsnapd --help: the defaults of --root and --socket, and when --pool is required.
expect 0 "default /var/lib/thinsnap" "$daemon" --help
expect 0 "default /run/thinsnap/thinsnap.sock" "$daemon" --help
expect 0 "REQUIRED unless the --config file sets pool_name" "$daemon" --help
expect 0 "--version" "$daemon" --help
# ... and the check it describes: no pool anywhere is refused before anything is created.
expect 1 "pool_name is required (config file or --pool)" "$daemon" --root /nonexistent/thinsnap

# thinsnapctl: --help lists --version; no subcommand is still a usage error.
expect 0 "--version" "$ctl" --help
expect 2 "A subcommand is required" "$ctl"

if [ "$failures" -ne 0 ]; then
  echo "cli_test: $failures failure(s)" >&2
  exit 1
fi
echo "cli_test: OK ($(basename "$daemon") and $(basename "$ctl") $version)"
