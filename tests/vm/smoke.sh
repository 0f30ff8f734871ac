#!/usr/bin/env bash
# Smoke test of the VM test bed: real dm-thin works in the guest. Run it through the VM:
#   tests/vm/run -- bash tests/vm/smoke.sh
# Builds a loop-backed thin pool in /tmp, makes a thin volume with ext4 on it, snapshots it while
# active, checks that origin and snapshot hold the right data independently, tears everything down
# and verifies the pool metadata with thin_check. Uses dmsetup (fine in tests; product code talks
# to libdevmapper through dm/).
set -euo pipefail

fail() {
  echo "smoke: FAIL: $*" >&2
  exit 1
}
step() { echo "smoke: $*"; }

[ -c /dev/mapper/control ] || fail "no /dev/mapper/control: not running inside tests/vm/run?"
[ "${DM_DISABLE_UDEV:-}" = 1 ] || fail "DM_DISABLE_UDEV=1 expected (no udev in the guest)"

work=$(mktemp -d /tmp/smoke.XXXXXX)
pool=smoke-pool
origin=smoke-origin
snap=smoke-snap
data_loop=
meta_loop=

# Best-effort teardown on failure, so a failing run still reports its real error.
cleanup() {
  umount "$work/mnt-snap" 2>/dev/null || true
  umount "$work/mnt-origin" 2>/dev/null || true
  for dev in "$snap" "$origin" "$pool"; do
    dmsetup remove "$dev" 2>/dev/null || true
  done
  [ -z "$data_loop" ] || losetup -d "$data_loop" 2>/dev/null || true
  [ -z "$meta_loop" ] || losetup -d "$meta_loop" 2>/dev/null || true
}
trap cleanup EXIT

step "pool: 1 GiB sparse data + 64 MiB metadata on loop devices"
truncate -s 1G "$work/data"
truncate -s 64M "$work/meta"
# A fresh pool must see a zeroed superblock, or it (and thin_check) reads stale data.
dd if=/dev/zero of="$work/meta" bs=4096 count=1 conv=notrunc status=none
data_loop=$(losetup -f --show "$work/data")
meta_loop=$(losetup -f --show "$work/meta")
data_sectors=$(blockdev --getsz "$data_loop")
dmsetup create "$pool" --table \
  "0 $data_sectors thin-pool $meta_loop $data_loop 128 32768 2 skip_block_zeroing error_if_no_space"
[ -b "/dev/mapper/$pool" ] || fail "/dev/mapper/$pool node missing (udev fallback broken?)"

step "thin volume 0: 256 MiB, ext4, write a file"
thin_sectors=$((256 * 2048))
dmsetup message "$pool" 0 "create_thin 0"
dmsetup create "$origin" --table "0 $thin_sectors thin /dev/mapper/$pool 0"
mkfs.ext4 -q -E nodiscard "/dev/mapper/$origin"
mkdir "$work/mnt-origin" "$work/mnt-snap"
mount "/dev/mapper/$origin" "$work/mnt-origin"
echo "before snapshot" >"$work/mnt-origin/file"
head -c 8M /dev/urandom >"$work/mnt-origin/blob"
blob_sum=$(sha256sum <"$work/mnt-origin/blob")

step "snapshot 1 of the active origin (suspend around create_snap)"
sync
dmsetup suspend "$origin"
dmsetup message "$pool" 0 "create_snap 1 0"
dmsetup resume "$origin"
dmsetup create "$snap" --table "0 $thin_sectors thin /dev/mapper/$pool 1"

step "isolation: writes to origin and snapshot stay apart"
echo "after snapshot" >"$work/mnt-origin/file"
rm "$work/mnt-origin/blob"
sync
mount "/dev/mapper/$snap" "$work/mnt-snap"
[ "$(cat "$work/mnt-snap/file")" = "before snapshot" ] || fail "snapshot sees the origin's later write"
[ "$(sha256sum <"$work/mnt-snap/blob")" = "$blob_sum" ] || fail "snapshot blob content differs"
echo "snapshot only" >"$work/mnt-snap/extra"
sync
[ "$(cat "$work/mnt-origin/file")" = "after snapshot" ] || fail "origin lost its own write"
[ ! -e "$work/mnt-origin/blob" ] || fail "origin still has the removed blob"
[ ! -e "$work/mnt-origin/extra" ] || fail "origin sees the snapshot's write"

status=$(dmsetup status "$pool")
step "pool status: $status"
# thin-pool status: <start> <len> thin-pool <transaction id> <used meta>/<total meta> <used data>/...
used_data=$(echo "$status" | awk '{ split($6, a, "/"); print a[1] }')
[ "$used_data" -gt 0 ] || fail "pool reports no used data blocks"

step "teardown and thin_check"
umount "$work/mnt-snap"
umount "$work/mnt-origin"
dmsetup remove "$snap"
dmsetup remove "$origin"
dmsetup remove "$pool"
[ ! -e "/dev/mapper/$pool" ] || fail "stale /dev/mapper/$pool node after remove"
losetup -d "$data_loop"
data_loop=
# The tools open with O_DIRECT, which tmpfs refuses; read the metadata through its loop device.
thin_check "$meta_loop"
thin_ls --no-headers -o DEV,MAPPED_BYTES "$meta_loop" | sort >"$work/thins"
losetup -d "$meta_loop"
meta_loop=
[ "$(awk '{ print $1 }' "$work/thins" | tr '\n' ' ')" = "0 1 " ] ||
  fail "thin_ls lists devices '$(tr '\n' ' ' <"$work/thins")', expected 0 and 1"
step "PASS"
