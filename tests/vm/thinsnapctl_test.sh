#!/usr/bin/env bash
# thinsnapctl pool administration against real dm-thin. Runs inside the test VM:
#   tests/vm/run -- tests/vm/thinsnapctl_test.sh <build-dir>/tools/thinsnapctl
#
# Covers: loop pool create/status/destroy/activate (metadata survives a destroy that
# keeps the files), refusals (bad sizes and bounds, taken names, existing pool
# directories, active thin devices, a failure half-way through creation), each of which
# must exit non-zero and leave loops, dm devices and files exactly as they were; and
# LVM thin pools on a loop-backed volume group.
set -euo pipefail

ctl=$(readlink -f "${1:?usage: $0 <path to thinsnapctl>}")
[ -x "$ctl" ] || { echo "FAIL: $ctl is not executable"; exit 1; }
[ -e /dev/mapper/control ] || { echo "FAIL: no device-mapper here; run through tests/vm/run"; exit 1; }

work=$(mktemp -d /tmp/thinsnapctl-test.XXXXXX)
lvm_loop=
cleanup() {
  set +e
  if [ -n "$lvm_loop" ]; then
    vgchange "${lvm_cfg[@]}" -an tvg >/dev/null 2>&1
    vgremove "${lvm_cfg[@]}" -f tvg >/dev/null 2>&1
    losetup -d "$lvm_loop"
  fi
  dmsetup remove_all >/dev/null 2>&1
  for l in $(losetup -a -O NAME -n 2>/dev/null); do losetup -d "$l"; done
  umount "$work/small" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

checks=0
fail() {
  echo "FAIL: $*"
  exit 1
}
ok() {
  checks=$((checks + 1))
  echo "ok $checks - $*"
}

# Everything a refused command must leave untouched.
state() {
  losetup -a -O NAME,BACK-FILE -n | sort
  dmsetup table 2>&1 | sort
  find "$work" -printf '%p %s\n' | sort
}

# expect_fail "<message regex>" cmd...: the command must exit non-zero, say something
# matching the regex on stderr, and change nothing.
expect_fail() {
  local pattern=$1
  shift
  local before after
  before=$(state)
  if "$@" >"$work.out" 2>"$work.err"; then
    cat "$work.out" "$work.err"
    fail "succeeded but should not have: $*"
  fi
  grep -Eq -- "$pattern" "$work.err" || { cat "$work.err"; fail "stderr of '$*' does not match /$pattern/"; }
  after=$(state)
  if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") || true
    fail "'$*' changed the system"
  fi
  local args="$*"
  ok "refused: ${args#"$ctl "}: $(head -n 1 "$work.err")"
}

pool=thinsnap-pool
p1=$work/p1

# --- refusals before anything exists ---
expect_fail "unknown unit" "$ctl" pool create --loop --dir "$p1" --data-size 12X --meta-size 16M
expect_fail "whole number" "$ctl" pool create --loop --dir "$p1" --data-size -5G --meta-size 16M
expect_fail "fractions are not supported" "$ctl" pool create --loop --dir "$p1" --data-size 1.5G --meta-size 16M
expect_fail "too large" "$ctl" pool create --loop --dir "$p1" --data-size 99999999999T --meta-size 16M
expect_fail "below the minimum" "$ctl" pool create --loop --dir "$p1" --data-size 1M --meta-size 16M
expect_fail "between 2MiB and 16GiB" "$ctl" pool create --loop --dir "$p1" --data-size 1G --meta-size 1M
expect_fail "between 2MiB and 16GiB" "$ctl" pool create --loop --dir "$p1" --data-size 1G --meta-size 17G
expect_fail "multiple of 64KiB" "$ctl" pool create --loop --dir "$p1" --data-size 1G --meta-size 16M --block-size 96KiB
expect_fail "multiple of 64KiB" "$ctl" pool create --loop --dir "$p1" --data-size 1G --meta-size 16M --block-size 32K
expect_fail "multiple of 64KiB" "$ctl" pool create --loop --dir "$p1" --data-size 4G --meta-size 16M --block-size 2G
expect_fail "multiple of the block size" "$ctl" pool create --loop --dir "$p1" --data-size 100M --meta-size 16M --block-size 64M
expect_fail "dir" "$ctl" pool create --loop --data-size 1G --meta-size 16M
expect_fail "excludes" "$ctl" pool create --loop --lvm --dir "$p1" --data-size 1G --meta-size 16M
expect_fail "--loop or --lvm" "$ctl" pool create --dir "$p1" --data-size 1G --meta-size 16M
expect_fail "NotFound|not found|no device" "$ctl" pool status --name nosuchpool
expect_fail "no device-mapper device" "$ctl" pool destroy --name nosuchpool
expect_fail "no pool descriptor" "$ctl" pool destroy --dir "$work/nowhere"
expect_fail "no pool descriptor" "$ctl" pool activate --dir "$work/nowhere"

# A device-mapper name that is already taken.
dmsetup create taken --table "0 8 error"
expect_fail "already exists" "$ctl" pool create --loop --dir "$p1" --name taken --data-size 1G --meta-size 16M
dmsetup remove taken

# A failure after files and loops exist: the metadata lives on a tmpfs too small for
# the kernel to format it, so creating the pool fails and everything must roll back.
mkdir "$work/small"
mount -t tmpfs -o size=8k tmpfs "$work/small"
expect_fail "creating thin pool" "$ctl" pool create --loop --dir "$work/small" --name smallpool --data-size 64M --meta-size 4M
umount "$work/small"
rmdir "$work/small"

# --- create, status ---
out=$("$ctl" pool create --loop --dir "$p1" --data-size 512M --meta-size 16M)
echo "$out"
[ -b /dev/mapper/$pool ] || fail "no /dev/mapper/$pool"
[ "$(losetup -a -O BACK-FILE -n | grep -c "$p1/")" = 2 ] || fail "expected two loops on $p1"
[ -f "$p1/pool.toml" ] && [ -f "$p1/data.img" ] && [ -f "$p1/meta.img" ] || fail "pool files missing"
[ "$(stat -c %s "$p1/data.img")" = $((512 << 20)) ] || fail "data.img size"
[ "$(stat -c %b "$p1/data.img")" -lt 1024 ] || fail "data.img is not sparse"
dmsetup table $pool | grep -Eq "^0 1048576 thin-pool [0-9]+:[0-9]+ [0-9]+:[0-9]+ 128 32768 2 skip_block_zeroing error_if_no_space ?$" ||
  fail "unexpected pool table: $(dmsetup table $pool)"
ok "pool create --loop: $(dmsetup table $pool)"

"$ctl" pool status
json=$("$ctl" pool status --json)
echo "$json" | jq -e '.data.total_blocks == 8192 and .data.used_blocks == 0 and .block_size == 65536
  and .data.total_bytes == 536870912 and .metadata.total_blocks == 4096
  and .metadata.used_bytes == .metadata.used_blocks * 4096 and .mode == "rw"
  and .no_space_policy == "error_if_no_space" and .needs_check == false
  and .transaction_id == 0 and (has("held_metadata_root") | not)' >/dev/null ||
  fail "pool status --json: $json"
dmsetup message $pool 0 reserve_metadata_snap
"$ctl" pool status | grep -Eq "^held metadata root: [0-9]+$" || fail "held root not shown"
"$ctl" pool status --json | jq -e '.held_metadata_root > 0' >/dev/null || fail "held root not in JSON"
dmsetup message $pool 0 release_metadata_snap
ok "pool status (text and JSON, held metadata root)"

expect_fail "already exists" "$ctl" pool create --loop --dir "$p1" --name other --data-size 1G --meta-size 16M
expect_fail "already exists" "$ctl" pool create --loop --dir "$work/p2" --data-size 1G --meta-size 16M
expect_fail "already active" "$ctl" pool activate --dir "$p1"
expect_fail "not " "$ctl" pool destroy --dir "$p1" --name someotherpool

# --- a thin device with data on it ---
pool_dev=$(dmsetup info -c --noheadings -o major,minor $pool | tr -d ' ')
dmsetup message $pool 0 "create_thin 1"
dmsetup create thin1 --table "0 262144 thin $pool_dev 1"
mkfs.ext4 -q -E nodiscard /dev/mapper/thin1
mkdir "$work/mnt"
mount /dev/mapper/thin1 "$work/mnt"
echo "survives a re-activation" >"$work/mnt/hello"
umount "$work/mnt"
expect_fail "active thin device.*thin1.*--force" "$ctl" pool destroy --dir "$p1"
dmsetup remove thin1

# --- destroy keeping the files, then activate: the metadata and data come back ---
"$ctl" pool destroy --dir "$p1"
[ ! -e /dev/mapper/$pool ] || fail "pool still present after destroy"
[ -z "$(losetup -a)" ] || fail "loops left after destroy: $(losetup -a)"
[ -f "$p1/data.img" ] && [ -f "$p1/meta.img" ] && [ -f "$p1/pool.toml" ] || fail "files deleted without --delete-files"
ok "pool destroy --dir keeps the files"
# thin_check opens with O_DIRECT, which tmpfs files refuse; check through a loop.
check_loop=$(losetup -f --show "$p1/meta.img")
thin_check "$check_loop" || fail "thin_check on the released metadata"
losetup -d "$check_loop"
ok "thin_check passes after destroy"

# A loop left attached to a pool file blocks activation (two caches of one file);
# destroy --dir detaches it.
stray=$(losetup -f --show "$p1/data.img")
expect_fail "still attached to $stray" "$ctl" pool activate --dir "$p1"
"$ctl" pool destroy --dir "$p1" | grep -q "detached $stray" || fail "stray loop not detached"
[ -z "$(losetup -a)" ] || fail "loops left: $(losetup -a)"
ok "pool destroy --dir detaches stray loops of an inactive pool"

"$ctl" pool activate --dir "$p1"
pool_dev=$(dmsetup info -c --noheadings -o major,minor $pool | tr -d ' ')
dmsetup create thin1 --table "0 262144 thin $pool_dev 1"
mount -o ro /dev/mapper/thin1 "$work/mnt"
[ "$(cat "$work/mnt/hello")" = "survives a re-activation" ] || fail "data lost across destroy/activate"
umount "$work/mnt"
"$ctl" pool status --json | jq -e '.data.used_blocks > 0' >/dev/null || fail "no used blocks after activate"
ok "pool activate restores the pool with its thin device and data"

# --force removes active thin devices, but not mounted ones.
mount /dev/mapper/thin1 "$work/mnt"
if "$ctl" pool destroy --dir "$p1" --force 2>"$work.err"; then fail "destroyed a pool with a mounted thin device"; fi
grep -q "thin1" "$work.err" || fail "unhelpful error: $(cat "$work.err")"
[ -b /dev/mapper/$pool ] || fail "pool removed although a thin device is mounted"
ok "pool destroy --force refuses a mounted thin device: $(cat "$work.err")"
umount "$work/mnt"
"$ctl" pool destroy --dir "$p1" --force
[ -z "$(dmsetup ls 2>/dev/null | grep -v 'No devices found')" ] || fail "devices left: $(dmsetup ls)"
[ -z "$(losetup -a)" ] || fail "loops left: $(losetup -a)"
ok "pool destroy --force removes thin devices, pool and loops"

# --- destroy by name, with --delete-files ---
"$ctl" pool activate --dir "$p1" >/dev/null
expect_fail "needs --dir" "$ctl" pool destroy --name $pool --delete-files
"$ctl" pool destroy --name $pool
[ -z "$(losetup -a)" ] || fail "loops left after destroy --name: $(losetup -a)"
"$ctl" pool activate --dir "$p1" >/dev/null
"$ctl" pool destroy --dir "$p1" --delete-files
[ ! -e "$p1" ] || fail "$p1 still exists after --delete-files: $(ls -la "$p1")"
ok "pool destroy --name, and --delete-files removes the directory"

# Non-default name and block size.
"$ctl" pool create --loop --dir "$work/p3" --name custom-pool --data-size 1G --meta-size 8M --block-size 1M >/dev/null
dmsetup table custom-pool | grep -Eq " 2048 32768 2 skip_block_zeroing error_if_no_space ?$" || fail "block size 1M: $(dmsetup table custom-pool)"
"$ctl" pool status --name custom-pool --json | jq -e '.block_size == 1048576 and .data.total_blocks == 1024' >/dev/null ||
  fail "custom pool status"
"$ctl" pool destroy --dir "$work/p3" --delete-files >/dev/null
ok "pool with a 1MiB block size and a custom name"

# --- LVM ---
cp -a /etc/lvm "$work/lvm"
export LVM_SYSTEM_DIR=$work/lvm
lvm_cfg=(--config "devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 monitoring=0 }")
truncate -s 1G "$work/pv.img"
lvm_loop=$(losetup -f --show "$work/pv.img")
pvcreate -q "${lvm_cfg[@]}" "$lvm_loop" >/dev/null
vgcreate -q "${lvm_cfg[@]}" tvg "$lvm_loop" >/dev/null

expect_fail "volume group nosuchvg not found" "$ctl" pool create --lvm --vg nosuchvg --size 100M --lvm-no-udev
expect_fail "exactly one|excludes" "$ctl" pool create --lvm --vg tvg --size 100M --percent 10 --lvm-no-udev
expect_fail "--size or --percent" "$ctl" pool create --lvm --vg tvg --lvm-no-udev
expect_fail "vg" "$ctl" pool create --lvm --size 100M --lvm-no-udev

name=$("$ctl" pool create --lvm --vg tvg --size 256M --name tpool --lvm-no-udev)
[ "$name" = tvg-tpool ] || fail "lvm pool name '$name'"
"$ctl" pool status --name tvg-tpool
"$ctl" pool status --name tvg-tpool --json | jq -e '.no_space_policy == "error_if_no_space" and .mode == "rw"' >/dev/null ||
  fail "lvm pool is not error_if_no_space"
ok "pool create --lvm --size: $name, error_if_no_space"

name=$("$ctl" pool create --lvm --vg tvg --percent 50 --name my-pool --lvm-config "global { suffix=1 }" --lvm-no-udev)
[ "$name" = tvg-my--pool ] || fail "lvm pool name '$name' (want tvg-my--pool)"
[ -b "/dev/mapper/$name" ] || fail "no /dev/mapper/$name"
ok "pool create --lvm --percent, dashes doubled: $name"

expect_fail "already exists" "$ctl" pool create --lvm --vg tvg --size 64M --name tpool --lvm-no-udev
expect_fail "not backed by loop devices" "$ctl" pool destroy --name tvg-tpool

echo "PASS: thinsnapctl ($checks checks)"
