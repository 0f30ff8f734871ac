#!/bin/sh
# Runs inside the e2e container (busybox sh; the image is built by
# `e2etool mkimage`). Proves that each layer was applied correctly onto the
# thinsnap snapshot chain. Prints CHECK-OK/CHECK-FAIL per item and
# ALL-CHECKS-PASSED at the end; exits non-zero on the first failure.
ok() { echo "CHECK-OK: $*"; }
fail() {
  echo "CHECK-FAIL: $*"
  exit 1
}

root_mount=$(awk '$2 == "/" { print $1, $3 }' /proc/mounts)
case "$root_mount" in
  *" ext4") ok "rootfs is ext4 on a block device: $root_mount" ;;
  *) fail "rootfs mount is '$root_mount', want ext4" ;;
esac

[ "$(readlink /bin/sh)" = busybox ] || fail "layer1 symlink /bin/sh -> $(readlink /bin/sh)"
ok "layer1: /bin/sh -> busybox"

[ ! -e /data/gone.txt ] || fail "layer2 whiteout: /data/gone.txt still exists"
ok "layer2: whiteout removed /data/gone.txt"

[ "$(cat /data/keep.txt)" = layer3 ] || fail "layer3 overwrite: /data/keep.txt = '$(cat /data/keep.txt)'"
ok "layer3: /data/keep.txt = layer3"

# shellcheck disable=SC2012 # busybox has no find -printf; names here are fixed
opq=$(ls -A /opq | tr '\n' ' ')
[ "$opq" = "new1 " ] || fail "layer2 opaque dir: /opq holds '$opq'"
[ "$(cat /opq/new1)" = layer2 ] || fail "layer2 opaque dir: /opq/new1 content"
ok "layer2: opaque /opq holds only new1"

ino_target=$(stat -c %i /links/target.txt)
ino_hard=$(stat -c %i /links/hard)
links=$(stat -c %h /links/hard)
[ "$ino_target" = "$ino_hard" ] || fail "layer2 hard link: inodes $ino_target vs $ino_hard"
[ "$links" = 2 ] || fail "layer2 hard link: link count $links"
ok "layer2: /links/hard is /links/target.txt (inode $ino_hard, 2 links)"

[ "$(readlink /links/rel)" = target.txt ] || fail "layer2 symlink rel -> $(readlink /links/rel)"
[ "$(readlink /links/abs)" = /links/target.txt ] || fail "layer2 symlink abs -> $(readlink /links/abs)"
[ "$(cat /links/rel)" = "link target" ] || fail "layer2 symlink: reading through /links/rel"
[ "$(cat /links/abs)" = "link target" ] || fail "layer2 symlink: reading through /links/abs"
ok "layer2: symlinks rel -> target.txt, abs -> /links/target.txt resolve"

mode=$(stat -c %a /bin/suid)
[ "$mode" = 4755 ] || fail "layer3 setuid: /bin/suid mode $mode"
ok "layer3: /bin/suid mode 4755"

xattr=$(/e2etool getxattr /xattr/file user.thinsnap) || fail "layer3 xattr: getxattr failed"
[ "$xattr" = e2e-xattr-value ] || fail "layer3 xattr: user.thinsnap = '$xattr'"
ok "layer3: /xattr/file user.thinsnap = $xattr"

echo written >/written-by-container || fail "rootfs is not writable"
[ "$(cat /written-by-container)" = written ] || fail "rootfs write did not read back"
ok "rootfs is writable"

echo ALL-CHECKS-PASSED
