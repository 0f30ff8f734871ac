#!/usr/bin/env bash
# containerd's Go client SDK end to end (tests/e2e/sdk/sdk_test.go) against
# containerd 1.6 with thinsnapd as its proxy snapshotter "thinsnap". The
# e2etool busybox image (3 layers) is pushed to Debian's docker-registry on
# the guest's loopback; the SDK pulls it with WithPullSnapshotter, creates a
# container with WithSnapshotter and WithNewSnapshot carrying the
# containerd.io/snapshot/max-size label, checks the Kata mount shape, runs a
# task that prints df of / and a file of the image, and deletes everything.
# Needs root and device-mapper, i.e. the test VM:
#
#   tests/vm/run --timeout 900 -- tests/e2e/sdk/run-in-vm.sh BUILD_DIR
#
# Afterwards thinsnapd must hold no snapshot, exit cleanly, and the pool must
# pass thin_check holding only the base device.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/testbed.sh
source "$here/../testbed.sh"
# shellcheck source=tests/e2e/registry/lib.sh
source "$here/../registry/lib.sh"

[ $# -eq 1 ] || tb_fail "usage: $0 BUILD_DIR"
testbed_init sdk "$1"
sdktest=$BUILD/tests/e2e/sdk/sdk.test
e2etool=$BUILD/tests/e2e/e2etool
ctl=$BUILD/tools/thinsnapctl
for bin in "$sdktest" "$e2etool" "$ctl"; do
  [ -x "$bin" ] || tb_fail "$bin not built (targets sdk_test_bin e2etool_bin thinsnapctl)"
done
registry_require_tools

# Thin provisioning: the 16 GiB the container asks for need no real space.
pool_create 4G 128M
daemon_start
registry_start
"$e2etool" mkimage -o "$WORK/image.tar" -busybox /bin/busybox -ref thinsnap.test/sdk:test
registry_push "oci-archive:$WORK/image.tar" thinsnap/busybox
containerd_start # no extra configuration

step "Go client SDK against containerd: $REF"
rc=0
(cd "$WORK" && "$sdktest" -test.v -test.timeout 15m -containerd.address "$CD_SOCK" -image "$REF" \
  -base-size $((10 << 30)) -max-size $((16 << 30))) 2>&1 | tee "$WORK/sdk.log" || rc=$?
[ "$rc" -eq 0 ] || tb_fail "the SDK test failed (status $rc)"

step "what thinsnapd holds afterwards (thinsnapctl ls, e2etool snapshots):"
listed=$("$ctl" --socket "$THINSNAP_SOCK" ls)
echo "${listed:-(nothing)}"
remaining=$("$e2etool" snapshots "$THINSNAP_SOCK")
[ -z "$remaining" ] || tb_fail "thinsnapd still holds snapshots: $remaining"

containerd_stop
registry_stop
daemon_stop
pool_destroy_and_check 1
step "sdk_e2e: PASS"
