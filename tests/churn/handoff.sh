#!/usr/bin/env bash
# handoff_open_vm (issue 15, item 4): a removed snapshot whose device another process still holds
# open (read-write, without O_EXCL, as qemu holds a VM's disk) must be left alone: not discarded,
# not deactivated, not deleted, until that process lets go. Runs inside the test VM:
#
#   tests/vm/run -- tests/churn/handoff.sh BUILD_DIR
#
# A container on a small image gets a file of known content; this shell then opens its device
# (the Mounts source) O_RDWR on fd 3 and keeps it; the snapshot is removed and Cleanup called
# (it may answer that a device is busy: printed, not judged). Still holding it: caches dropped,
# the whole device copied through fd 3 must pass e2fsck -n and hold the file (debugfs); 1 MiB
# written through fd 3 must read back. Then fd 3 is closed, and a second Cleanup must succeed,
# the device be gone and only the base thin id be left.
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/churn/vm-lib.sh
source "$here/vm-lib.sh"

vm_init handoff_open_vm "$@"
held=
vm_on_exit() {
  if [ -n "$held" ]; then exec 3>&-; fi
}

vm_pool_create 1G 64M
vm_daemon_start 256M
ctl_rpc=("$ctl" --socket "$socket")

# mount_source KEY: the device of the snapshot's single mount (`thinsnapctl mounts`).
mount_source() {
  local out type source options
  # (No process substitution: the guest has no /dev/fd.)
  out=$("${ctl_rpc[@]}" mounts "$1") || vm_fail "thinsnapctl mounts $1"
  read -r type source options <<<"$out"
  if [ "$type" != ext4 ] || [ ! -b "$source" ]; then
    vm_fail "mounts $1: unexpected '$type $source $options'"
  fi
  echo "$source"
}

# The image: one committed layer.
"${ctl_rpc[@]}" prepare image-layer >/dev/null
layer_dev=$(mount_source image-layer)
mount -t ext4 -o rw "$layer_dev" "$work/mnt"
echo "image layer" >"$work/mnt/image.txt"
umount "$work/mnt"
"${ctl_rpc[@]}" commit image image-layer

# The container, with 3 MiB of known content.
"${ctl_rpc[@]}" prepare ctr image >/dev/null
dev=$(mount_source ctr)
dm_name=$(basename "$dev")
mount -t ext4 -o rw "$dev" "$work/mnt"
head -c 3M /dev/urandom >"$work/payload.bin"
cp "$work/payload.bin" "$work/mnt/payload.bin"
sync -f "$work/mnt/payload.bin"
umount "$work/mnt"
payload_sum=$(sha256sum <"$work/payload.bin")
vm_log "container ctr: device $dev ($((0x$(stat -L -c %t "$dev"))):$((0x$(stat -L -c %T "$dev"))))"

# Held open read-write, no O_EXCL, by this shell (the holder), as qemu would.
exec 3<>"$dev"
held=1
vm_log "holding $dev open on fd 3 of pid $$"

"${ctl_rpc[@]}" rm ctr
cleanup_rc=0
cleanup_out=$("${ctl_rpc[@]}" cleanup 2>&1) || cleanup_rc=$?
echo "first Cleanup (device held): exit $cleanup_rc: ${cleanup_out:-(no output)}"
# The reclaimer also works in the background after Remove: give it time to do whatever it does.
sleep 3
echo "device state while held: $(dmsetup info -c --noheadings -o name,open,attr "$dm_name" 2>&1 || true)"
echo "pending deletes (metrics): $(curl -sf "$metrics_url" | awk '$1 == "thinsnap_pending_delete_intents" {print $2}')"
grep -m 10 -E 'reclaim|thin id' "$work/thinsnapd.log" || true

echo 3 >/proc/sys/vm/drop_caches
"$churn" fdio -fd 3 -read 0 -len 0 -out "$work/copy.img"
fsck_rc=0
fsck_out=$(e2fsck -fn "$work/copy.img" 2>&1) || fsck_rc=$?
if [ "$fsck_rc" -eq 0 ]; then
  echo "e2fsck -fn of the held device's copy: clean"
else
  head -n 15 <<<"$fsck_out"
  vm_problem "e2fsck -fn of the held device's content exited $fsck_rc: the filesystem under the opener is damaged"
fi
got_sum=$(debugfs -R "cat /payload.bin" "$work/copy.img" 2>/dev/null | sha256sum)
if [ "$got_sum" = "$payload_sum" ]; then
  echo "payload.bin read back from the held device: intact"
else
  vm_problem "payload.bin on the held device differs from what was written (sha256 ${got_sum%% *} vs ${payload_sum%% *})"
  echo "the held device's $(stat -c %s "$work/copy.img") bytes hold $(tr -d '\0' <"$work/copy.img" | wc -c) non-zero bytes"
fi

# More written through the held descriptor, at the device's last MiB, read back after a cache drop.
size=$(stat -c %s "$work/copy.img")
offset=$((size - (1 << 20)))
head -c 1M /dev/urandom >"$work/more.bin"
if "$churn" fdio -fd 3 -write "$offset" -in "$work/more.bin"; then
  echo 3 >/proc/sys/vm/drop_caches
  "$churn" fdio -fd 3 -read "$offset" -len $((1 << 20)) -out "$work/more.out"
  if cmp -s "$work/more.bin" "$work/more.out"; then
    echo "1 MiB written through the held fd at $offset reads back intact"
  else
    vm_problem "1 MiB written through the held fd at $offset reads back different"
  fi
else
  vm_problem "writing through the held fd failed"
fi
rm -f "$work/copy.img"

exec 3>&-
held=
vm_log "closed fd 3"
cleanup_rc=0
cleanup_out=$("${ctl_rpc[@]}" cleanup 2>&1) || cleanup_rc=$?
echo "second Cleanup (device closed): exit $cleanup_rc: ${cleanup_out:-(no output)}"
[ "$cleanup_rc" -eq 0 ] || vm_problem "Cleanup after the holder closed the device failed: $cleanup_out"
if dmsetup info "$dm_name" >/dev/null 2>&1 || [ -e "$dev" ]; then
  vm_problem "device $dm_name is still there after the second Cleanup: $(dmsetup info -c --noheadings "$dm_name" 2>&1)"
fi
vm_end "after the handoff" image
