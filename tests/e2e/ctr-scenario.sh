#!/usr/bin/env bash
# containerd end to end: Debian's containerd 1.6.20 uses thinsnapd as its
# proxy snapshotter "thinsnap" to import a locally built OCI image, run a
# container on it with runc, and garbage-collect everything afterwards.
# Needs root and device-mapper, i.e. the test VM:
#
#   tests/vm/run --timeout 1200 -- tests/e2e/ctr-scenario.sh BUILD_DIR
#
# Asserts: the image unpacks into thinsnap; every layer's content (whiteout,
# opaque dir, hard link, symlinks, xattr, setuid, overwrite) is right inside
# the container; after `ctr images rm --sync` containerd's GC has removed
# every snapshot from thinsnapd; thinsnapd exits cleanly; the pool metadata
# passes thin_check and holds nothing but the base device.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/testbed.sh
source "$here/testbed.sh"

[ $# -eq 1 ] || tb_fail "usage: $0 BUILD_DIR"
testbed_init ctr "$1"
e2etool=$BUILD/tests/e2e/e2etool
[ -x "$e2etool" ] || tb_fail "$e2etool not built (target e2etool_bin)"
containerd_require_tools

ref=thinsnap.test/e2e:latest
pool_create 4G 128M
daemon_start

step "building the OCI image archive"
"$e2etool" mkimage -o "$WORK/image.tar" -busybox /bin/busybox -ref "$ref"

# At debug level: a failure to remove a snapshot at GC is only logged (see below).
CONTAINERD_LOG_LEVEL=debug containerd_start

step "ctr image import --snapshotter thinsnap"
ctr_ image import --snapshotter thinsnap "$WORK/image.tar"
check=$(ctr_ images check --snapshotter thinsnap)
echo "$check"
echo "$check" | awk -v r="$ref" '$1 == r && /complete/ && $NF == "true" { found = 1 } END { exit !found }' ||
  tb_fail "image $ref is not complete and unpacked into thinsnap"
step "snapshots containerd holds in thinsnap after import:"
ctr_ snapshots --snapshotter thinsnap ls
layers=$(ctr_ snapshots --snapshotter thinsnap ls | awk 'NR > 1 && $NF == "Committed"' | wc -l)
[ "$layers" -eq 3 ] || tb_fail "want 3 committed layer snapshots, got $layers"
step "the same snapshots as thinsnapd holds them (keys prefixed by containerd's metadata layer):"
"$e2etool" snapshots "$THINSNAP_SOCK" | tee "$WORK/thinsnapd-snapshots"
held=$(grep -c '^Committed default/' "$WORK/thinsnapd-snapshots" || true)
[ "$held" -eq 3 ] || tb_fail "want 3 committed snapshots in thinsnapd, got $held"

step "ctr run --rm --snapshotter thinsnap $ref c1"
out=$(ctr_ run --rm --snapshotter thinsnap \
  --mount "type=bind,src=$e2etool,dst=/e2etool,options=rbind:ro" \
  --mount "type=bind,src=$here/container-checks.sh,dst=/checks.sh,options=rbind:ro" \
  "$ref" c1 /bin/sh /checks.sh 2>&1) || {
  echo "$out"
  tb_fail "container checks failed"
}
echo "$out"
echo "$out" | grep -q '^ALL-CHECKS-PASSED' || tb_fail "container did not report ALL-CHECKS-PASSED"
[ "$(echo "$out" | grep -c '^CHECK-OK')" -eq 10 ] || tb_fail "want 10 CHECK-OK lines"

step "containers and tasks after --rm:"
[ -z "$(ctr_ containers ls -q)" ] || tb_fail "containers left: $(ctr_ containers ls -q)"
[ -z "$(ctr_ tasks ls -q)" ] || tb_fail "tasks left: $(ctr_ tasks ls -q)"
echo "none"

step "ctr images rm --sync $ref"
ctr_ images rm --sync "$ref"
[ -z "$(ctr_ images ls -q)" ] || tb_fail "images left: $(ctr_ images ls -q)"
left=$(ctr_ snapshots --snapshotter thinsnap ls | awk 'NR > 1')
[ -z "$left" ] || tb_fail "containerd still holds snapshots: $left"
# containerd's metadata GC removed them from thinsnapd synchronously (its
# errors are only logged), so thinsnapd's own list must be empty too.
remaining=$("$e2etool" snapshots "$THINSNAP_SOCK")
if [ -n "$remaining" ]; then
  grep -iE 'snapshot.*(remove|gc|garbage)|garbage collection' "$WORK/containerd.log" | tail -n 20 || true
  tb_fail "thinsnapd still holds snapshots after containerd's GC: $remaining"
fi
step "thinsnapd holds no snapshots"

containerd_stop
daemon_stop
pool_destroy_and_check 1
step "ctr_e2e: PASS"
