#!/usr/bin/env bash
# A real pull from a registry into thinsnap: the three-layer Debian image that
# build-image.sh made on the host is pushed with skopeo to Debian's
# docker-registry on the guest's loopback, pulled by containerd 1.6 with
# `ctr images pull --plain-http --snapshotter thinsnap`, run with `ctr run`,
# and its unpacked root (a new container's snapshot, mounted read-only)
# compared path by path with the tree the image was built from: type, mode,
# owner, link count and hard-link group, symlink target and the sha256 of
# every file. Needs root and device-mapper, i.e. the test VM:
#
#   tests/e2e/registry/build-image.sh BUILD_DIR/tests/e2e/registry/treecmp CACHE_DIR  # on the host
#   tests/vm/run --mem 3072 -- tests/e2e/registry/pull-test.sh BUILD_DIR CACHE_DIR
#
# Then the image is removed and containerd's GC must leave thinsnapd empty;
# thinsnapd must exit cleanly and the pool pass thin_check with only the base
# device left.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/testbed.sh
source "$here/../testbed.sh"
# shellcheck source=tests/e2e/registry/lib.sh
source "$here/lib.sh"

# shellcheck source=tests/e2e/registry/image.env
source "$here/image.env"

[ $# -eq 2 ] || tb_fail "usage: $0 BUILD_DIR IMAGE_CACHE_DIR"
testbed_init registry "$1"
image=$(image_dir "$(readlink -f "$2")")
treecmp=$BUILD/tests/e2e/registry/treecmp
e2etool=$BUILD/tests/e2e/e2etool
for bin in "$treecmp" "$e2etool"; do
  [ -x "$bin" ] || tb_fail "$bin not built (targets treecmp_bin e2etool_bin)"
done
if [ ! -s "$image/expected.manifest" ] || [ ! -f "$image/oci/index.json" ]; then
  tb_fail "no image in $image (tests/e2e/registry/build-image.sh makes it on the host)"
fi
registry_require_tools

mnt=
unmount_verify() { [ -z "$mnt" ] || umount "$mnt" 2>/dev/null; }
TB_EXIT_HOOKS+=(unmount_verify)

pool_create 8G 256M
daemon_start
registry_start
registry_push "oci:$image/oci:test" thinsnap/debian
containerd_start # no extra configuration

step "ctr images pull --plain-http --snapshotter thinsnap $REF"
t0=$(date +%s%N)
ctr_ images pull --plain-http --snapshotter thinsnap "$REF" >"$WORK/pull.log" 2>&1 ||
  { tail -n 30 "$WORK/pull.log" >&2; tb_fail "ctr images pull"; }
step "pulled in $((($(date +%s%N) - t0) / 1000000)) ms"
ctr_ images check --snapshotter thinsnap | awk -v r="$REF" '$1 == r && /complete/ && $NF == "true" { f = 1 } END { exit !f }' ||
  tb_fail "image $REF is not complete and unpacked into thinsnap"
ctr_ snapshots --snapshotter thinsnap ls
layers=$(ctr_ snapshots --snapshotter thinsnap ls | awk 'NR > 1 && $NF == "Committed"' | wc -l)
[ "$layers" -eq 3 ] || tb_fail "want 3 committed layer snapshots, got $layers"

step "ctr run --rm --snapshotter thinsnap $REF c1 (the image's /opt/thinsnap/bin/hello)"
out=$(ctr_ run --rm --snapshotter thinsnap "$REF" c1 2>&1) || { echo "$out"; tb_fail "ctr run"; }
echo "$out"
[ "$out" = "$(cat "$image/run.expected")" ] || {
  echo "--- expected ---"
  cat "$image/run.expected"
  tb_fail "the program in the image printed something else"
}

step "comparing the root of a fresh container's snapshot with the source tree"
# A container (never started) holds its snapshot, so containerd's GC, which
# the --rm above set going, cannot remove it under us as it would a bare View.
ctr_ containers create --snapshotter thinsnap "$REF" verify >/dev/null
mnt=$WORK/rootfs
mkdir -p "$mnt"
# (no process substitution: the guest has no /dev/fd)
read -r -a m <<<"$(ctr_ snapshots --snapshotter thinsnap mounts "$mnt" verify)"
# "mount -t TYPE SOURCE TARGET -o OPTIONS", one line: thinsnap hands out one ext4 block device.
if [ "${m[0]}" != mount ] || [ "${m[1]}" != -t ] || [ "${m[4]}" != "$mnt" ]; then
  tb_fail "unexpected mount line: ${m[*]}"
fi
[ -b "${m[3]}" ] || tb_fail "mount source ${m[3]} is not a block device"
# Read-only: the comparison must not change what it looks at.
mount -t "${m[2]}" -o ro "${m[3]}" "$mnt"
cmp_rc=0
"$treecmp" compare "$image/expected.manifest" "$mnt" >"$WORK/treecmp.out" || cmp_rc=$?
head -n 60 "$WORK/treecmp.out"
umount "$mnt"
mnt=
ctr_ containers rm verify # and its snapshot
[ "$cmp_rc" -eq 0 ] || tb_fail "the unpacked image differs from its source tree (treecmp status $cmp_rc)"
compared=$(sed -n 's/.* \([0-9]*\) compared field by field.*/\1/p' "$WORK/treecmp.out")
step "paths compared: $compared, no differences"

step "ctr images rm --sync $REF"
ctr_ images rm --sync "$REF"
left=$(ctr_ snapshots --snapshotter thinsnap ls | awk 'NR > 1')
[ -z "$left" ] || tb_fail "containerd still holds snapshots: $left"
remaining=$("$e2etool" snapshots "$THINSNAP_SOCK")
[ -z "$remaining" ] || tb_fail "thinsnapd still holds snapshots after containerd's GC: $remaining"

containerd_stop
registry_stop
daemon_stop
pool_destroy_and_check 1
step "registry_pull: PASS ($compared paths compared)"
