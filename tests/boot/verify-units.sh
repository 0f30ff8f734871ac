#!/usr/bin/env bash
# `systemd-analyze verify` on the shipped units (deploy/*.service), on the host, no VM:
#
#   tests/boot/verify-units.sh BUILD_DIR
#
# The units name /usr/local/sbin/thinsnap{d,ctl}, where `cmake --install` puts them, and
# systemd-analyze checks that every ExecStart= program exists. So the units are verified from a
# copy in which only that directory is replaced by one holding links to the built binaries; the
# template thinsnap-vg@.service is verified as an instance. Any message from systemd-analyze (an
# unknown key is only a warning there) fails the test, and so does a missing systemd-analyze.
set -euo pipefail

build=$(readlink -f "${1:?usage: $0 BUILD_DIR}")
src=$(dirname "$(dirname "$(dirname "$(readlink -f "$0")")")")
fail() {
  echo "verify-units: FAIL: $*" >&2
  exit 1
}
command -v systemd-analyze >/dev/null ||
  fail "systemd-analyze not found: install Debian's systemd package (tools/install-deps)"

stage=$build/tests/boot/units
rm -rf "$stage"
mkdir -p "$stage/sbin"
ln -s "$build/src/daemon/thinsnapd" "$stage/sbin/thinsnapd"
ln -s "$build/tools/thinsnapctl" "$stage/sbin/thinsnapctl"
units=()
for unit in "$src"/deploy/*.service; do
  name=$(basename "$unit")
  sed "s#/usr/local/sbin/#$stage/sbin/#g" "$unit" >"$stage/$name"
  case "$name" in
    *@.service) ln -s "$name" "$stage/${name%@.service}@tvg.service" && units+=("$stage/${name%@.service}@tvg.service") ;;
    *) units+=("$stage/$name") ;;
  esac
done
[ ${#units[@]} -ge 3 ] || fail "expected at least 3 units in $src/deploy, found ${#units[@]}"

rc=0
out=$(cd "$stage" && systemd-analyze verify "${units[@]}" 2>&1) || rc=$?
[ "$rc" = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify (exit $rc):"$'\n'"$out"
# The boot order the power-cut test follows (tests/boot/boot-sequence.sh) is the one declared.
grep -q '^Type=notify$' "$src/deploy/thinsnapd.service" || fail "thinsnapd.service is not Type=notify"
for name in "${units[@]}"; do echo "verified: $(basename "$name")"; done
echo "verify-units: systemd-analyze verify: clean ($(systemd-analyze --version | head -n1))"
