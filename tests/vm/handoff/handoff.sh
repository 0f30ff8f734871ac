#!/usr/bin/env bash
# handoff_vm (issue 16): a real guest VM consumes thinsnap's devices, as Kata and Firecracker do.
# Runs inside the test VM:
#
#   tests/vm/run -- tests/vm/handoff/handoff.sh BUILD_DIR
#
# thinsnapd runs on a loop pool; an image layer gets a file of known content (image.bin). Two
# nested VMs (qemu, TCG, the test VM's own kernel, busybox; tests/vm/handoff/nested.sh), one after
# the other:
#
#   microvm  (Firecracker's path) with a container's device cold-plugged as virtio-blk-device
#            (virtio-mmio): the guest mounts it with the Mount's type and options, checks image.bin
#            (sha256), writes and fsyncs guest.bin, unmounts; qemu exits; the host Commits the
#            container, Prepares a child and checks guest.bin byte for byte. Every other fs_type the
#            config accepts (ext2, ext3) rides along: a second and third thinsnapd, each on its own
#            small pool with that fs_type, hand one snapshot each to the same guest, which mounts
#            it with its Mount's type, checks the host's file and writes its own, which the host
#            then checks.
#   q35      (Kata's path) with no disk and a PCIe root port:
#     1. hot-plug: a container prepared with a containerd.io/snapshot/max-size label, attached
#        over QMP (blockdev-add host_device with cache.direct, device_add virtio-blk-pci on the
#        root port); the guest's df must show the label's size; checked and written as above,
#        hot-unplugged (device_del, DEVICE_DELETED, blockdev-del), then Commit and a child checked.
#     3. removed while attached: another container attached and mounted in the guest is Removed;
#        Cleanup must answer FailedPrecondition naming its device. The guest goes on writing and,
#        after dropping its caches, reads back what it wrote and image.bin intact. Once it unmounts
#        and the device is detached, Cleanup must succeed and only the base thin id be left.
#
# It prints each VM's boot time and, for each attach, the time from Prepare to the guest's first
# read of a file on the mounted device. Any boot, attach, mount or check that fails fails the test.
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/churn/vm-lib.sh
source "$here/../../churn/vm-lib.sh"
# shellcheck source=tests/vm/handoff/nested.sh
source "$here/nested.sh"

vm_init handoff_vm "${1:?usage: $0 BUILD_DIR}"
nested_init "$work/nested"
vm_pool_create 1G 64M
vm_daemon_start 256M
ctl_rpc=("$ctl" --socket "$socket")

# --- the other file system types: one thinsnapd per type, each on its own small pool -------------
other_fs_types=(ext2 ext3)
declare -A other_pid=()
other_dir() { echo "$work/$1"; }
other_ctl() { "$ctl" --socket "$(other_dir "$1")/thinsnap.sock" "${@:2}"; }
other_stop() {
  local t=$1 pid=${other_pid[$1]:-}
  [ -n "$pid" ] || return 0
  other_pid[$t]=
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || vm_problem "thinsnapd ($t) exited $? on SIGTERM: $(tail -n 5 "$(other_dir "$t")/thinsnapd.log")"
}
vm_on_exit() {
  nested_kill_all
  local t
  for t in "${other_fs_types[@]}"; do
    [ -z "${other_pid[$t]:-}" ] || kill -KILL "${other_pid[$t]}" 2>/dev/null || true
    "$ctl" pool destroy --dir "$(other_dir "$t")/pool" --force >/dev/null 2>&1 || true
  done
}
# other_start TYPE: a pool and a thinsnapd with fs_type TYPE; a root snapshot ctr-TYPE with
# fs.bin written on the host; sets other_source[TYPE] and other_sum[TYPE].
declare -A other_source=() other_sum=()
other_start() {
  local t=$1 dir
  dir=$(other_dir "$t")
  mkdir -p "$dir/pool" "$dir/root"
  "$ctl" pool create --loop --dir "$dir/pool" --data-size 256M --meta-size 16M --name "$pool-$t" \
    >/dev/null || vm_fail "thinsnapctl pool create ($t)"
  printf 'base_size = "64M"\nfs_type = "%s"\nlog_level = "warn"\n' "$t" >"$dir/thinsnapd.toml"
  "$thinsnapd" --config "$dir/thinsnapd.toml" --root "$dir/root" --socket "$dir/thinsnap.sock" \
    --pool "$pool-$t" 2>"$dir/thinsnapd.log" &
  other_pid[$t]=$!
  local _
  for _ in $(seq 600); do
    [ -S "$dir/thinsnap.sock" ] && break
    kill -0 "${other_pid[$t]}" 2>/dev/null || vm_fail "thinsnapd ($t) exited: $(cat "$dir/thinsnapd.log")"
    sleep 0.1
  done
  other_ctl "$t" prepare "ctr-$t" >/dev/null || vm_fail "prepare ctr-$t ($t pool)"
  local json
  json=$(other_ctl "$t" mounts "ctr-$t" --json) || vm_fail "mounts ctr-$t"
  [ "$(jq -r '.[0].type' <<<"$json")" = "$t" ] || vm_fail "mounts ctr-$t: type is not $t: $json"
  other_source[$t]=$(jq -r '.[0].source' <<<"$json")
  mount -t "$t" "${other_source[$t]}" "$work/mnt"
  head -c 64K /dev/urandom >"$work/mnt/fs.bin"
  other_sum[$t]=$(sha256sum <"$work/mnt/fs.bin")
  other_sum[$t]=${other_sum[$t]%% *}
  umount "$work/mnt"
  vm_log "$t: thinsnapd on pool $pool-$t; ctr-$t is ${other_source[$t]}"
}
# other_end TYPE: the host checks what the guest wrote on ctr-TYPE, then removes everything.
other_end() {
  local t=$1 dir got
  dir=$(other_dir "$t")
  mount -t "$t" "${other_source[$t]}" "$work/mnt"
  got=$(sha256sum <"$work/mnt/guest.bin" || true)
  same "$t: guest.bin written by the microvm guest, on the host" "${got%% *}" "$2"
  umount "$work/mnt"
  other_ctl "$t" rm "ctr-$t" || vm_problem "remove ctr-$t"
  other_ctl "$t" cleanup || vm_problem "Cleanup ($t pool)"
  other_stop "$t"
  local out
  out=$("$ctl" check --json --root "$dir/root" --pool "$pool-$t") || true
  jq -e '.clean == true and (.pool_thin_ids | length) == 1' <<<"$out" >/dev/null ||
    vm_problem "$t pool not clean at the end: $out"
  "$ctl" pool destroy --dir "$dir/pool" >/dev/null || vm_problem "pool destroy ($t)"
}

boot_timeout=300
attach_timeout=180
q35_args=(-machine "q35,i8042=off,sata=off,smbus=off" -device "pcie-root-port,id=rp1,bus=pcie.0,chassis=1")
microvm_args=(-machine microvm -global virtio-mmio.force-legacy=false)

# mount_of KEY: m_type, m_source, m_options (comma-joined) of the snapshot's single mount, whose
# source must be a block device (Kata's and Firecracker's condition for handing it to a VM).
mount_of() {
  local json
  json=$("${ctl_rpc[@]}" mounts "$1" --json) || vm_fail "thinsnapctl mounts $1"
  [ "$(jq length <<<"$json")" = 1 ] || vm_fail "mounts $1: not exactly one mount: $json"
  m_type=$(jq -r '.[0].type' <<<"$json")
  m_source=$(jq -r '.[0].source' <<<"$json")
  m_options=$(jq -r '.[0].options | join(",")' <<<"$json")
  m_options=${m_options:-defaults}
  [ -b "$m_source" ] || vm_fail "mounts $1: source $m_source is not a block device"
}

# same WHAT GOT WANT: a byte-for-byte check (by sha256), printed; a mismatch is a problem.
same() {
  if [ -n "$2" ] && [ "$2" = "$3" ]; then
    echo "byte-for-byte: $1: sha256 $2 as expected"
  else
    vm_problem "byte-for-byte: $1: sha256 '${2:-(none)}', expected $3"
  fi
}

# guest_sum PATH: the sha256 the guest printed for PATH ("sum HASH  PATH", from inner-init's sums).
guest_sum() {
  local line
  for line in "${nested_lines[@]}"; do
    if [[ "$line" == "sum "*"  $1" ]]; then
      line=${line#sum }
      echo "${line%%  *}"
      return 0
    fi
  done
}

# dm_open DEV: the open count of a device-mapper device, or "gone".
dm_open() {
  dmsetup info -c --noheadings -o open "$(basename "$1")" 2>/dev/null || echo gone
}

# released WHAT DEV: once the VM has let go of DEV, nobody may hold it open. ("gone" is fine too: a
# removed snapshot's device may already have been reclaimed in the background once closed.)
released() {
  local open
  open=$(dm_open "$2")
  echo "$2 $1: open count $open"
  [ "$open" = 0 ] || [ "$open" = gone ] || vm_problem "$2 is still open (count $open) $1"
}

# guest_attach VM KEY T0: waits in the guest for the disk with serial KEY, mounts it on /mnt/KEY
# with the Mount's type and options and reads the start of image.bin; prints the time since T0
# (the Prepare) and returns it in first_read_ms.
guest_attach() {
  local vm=$1 key=$2
  nested_run "$vm" "$attach_timeout" "d=\$(waitdisk $key $attach_timeout) && mkdir -p /mnt/$key &&
    mount -t $m_type -o $m_options \$d /mnt/$key && head -c 4096 /mnt/$key/image.bin >/dev/null" ||
    nested_fail "$vm" "the guest could not find, mount or read $key's device ($m_source)"
  first_read_ms=$(nested_ms_since "$3")
  vm_log "$vm: first read of $key's device in the guest $(nested_secs "$first_read_ms") s after its Prepare"
}

# guest_check_and_write VM KEY: the guest checks image.bin and writes and fsyncs guest.bin (256 KiB
# from /dev/urandom, kept in /tmp as KEY.bin), then unmounts; guest_written is its sha256. (Small
# files: everything the nested guest does is slow.)
guest_check_and_write() {
  local vm=$1 key=$2
  nested_run "$vm" 120 "sums /mnt/$key/image.bin &&
    dd if=/dev/urandom of=/tmp/$key.bin bs=64k count=4 2>/dev/null &&
    put /tmp/$key.bin /mnt/$key/guest.bin && sums /tmp/$key.bin && umount /mnt/$key" ||
    nested_fail "$vm" "checking image.bin, writing guest.bin or unmounting failed in the guest"
  same "$vm: image.bin read in the guest" "$(guest_sum "/mnt/$key/image.bin")" "$image_sum"
  guest_written=$(guest_sum "/tmp/$key.bin")
  [ -n "$guest_written" ] || nested_fail "$vm" "no checksum of guest.bin from the guest"
}

# host_check_commit KEY: Commits KEY, Prepares a child of it on the host and checks image.bin and
# the guest's guest.bin there; removes both afterwards.
host_check_commit() {
  local key=$1 got
  "${ctl_rpc[@]}" commit "$key-layer" "$key" || vm_fail "commit $key after the guest let go"
  "${ctl_rpc[@]}" prepare "$key-child" "$key-layer" >/dev/null || vm_fail "prepare a child of $key-layer"
  mount_of "$key-child"
  mount -t "$m_type" -o "$m_options" "$m_source" "$work/mnt"
  got=$(sha256sum <"$work/mnt/guest.bin" || true)
  same "$key: guest.bin in a child of the committed snapshot, on the host" "${got%% *}" "$guest_written"
  got=$(sha256sum <"$work/mnt/image.bin" || true)
  same "$key: image.bin in that child, on the host" "${got%% *}" "$image_sum"
  umount "$work/mnt"
  "${ctl_rpc[@]}" rm "$key-child" || vm_problem "remove $key-child"
  "${ctl_rpc[@]}" rm "$key-layer" || vm_problem "remove $key-layer"
}

# qmp_attach VM KEY NODE ID: Kata's hot-plug of the Mount's source: blockdev-add (host_device,
# cache.direct), then device_add virtio-blk-pci on the root port rp1, with serial KEY.
qmp_attach() {
  nested_qmp "$1" blockdev-add "$(jq -nc --arg f "$m_source" --arg n "$3" \
    '{driver: "host_device", filename: $f, "node-name": $n, cache: {direct: true}}')" \
    -- device_add "$(jq -nc --arg n "$3" --arg i "$4" --arg s "$2" \
      '{driver: "virtio-blk-pci", drive: $n, id: $i, bus: "rp1", serial: $s}')" >/dev/null ||
    nested_fail "$1" "QMP blockdev-add + device_add of $m_source failed"
}

# qmp_detach VM KEY NODE ID: device_del, DEVICE_DELETED (the guest has acknowledged the unplug),
# blockdev-del; then the guest must no longer show the disk.
qmp_detach() {
  local t0=$EPOCHREALTIME
  nested_qmp "$1" device_del "{\"id\":\"$4\"}" --event DEVICE_DELETED --match "device=$4" \
    -- blockdev-del "{\"node-name\":\"$3\"}" --timeout 120 >/dev/null ||
    nested_fail "$1" "device_del $4 (no DEVICE_DELETED: the guest did not release the disk?) or blockdev-del $3 failed"
  vm_log "$1: $4 unplugged (DEVICE_DELETED) and $3 deleted after $(nested_secs "$(nested_ms_since "$t0")") s"
  nested_run "$1" 60 "gone $2 30" || nested_fail "$1" "the guest still shows $2's disk after DEVICE_DELETED"
}

# --- the image: one committed layer with image.bin ------------------------------------------------
"${ctl_rpc[@]}" prepare image-layer >/dev/null
mount_of image-layer
mount -t "$m_type" -o "$m_options" "$m_source" "$work/mnt"
head -c 256K /dev/urandom >"$work/image.bin"
cp "$work/image.bin" "$work/mnt/image.bin"
umount "$work/mnt"
"${ctl_rpc[@]}" commit image image-layer
image_sum=$(sha256sum <"$work/image.bin")
image_sum=${image_sum%% *}
vm_log "image: image.bin sha256 $image_sum"

# --- 2. virtio-mmio (Firecracker's path): microvm with the disk cold-plugged ----------------------
# The two nested VMs run one after the other: booting both at once took longer in all (each boot
# then took about twice as long on this 2-CPU test VM).
other_drives=()
for t in "${other_fs_types[@]}"; do
  other_start "$t"
  other_drives+=(-drive "file=${other_source[$t]},format=raw,if=none,id=d-$t,cache=none"
    -device "virtio-blk-device,drive=d-$t,serial=ctr-$t")
done
mmio_t0=$EPOCHREALTIME
"${ctl_rpc[@]}" prepare ctr-mmio image >/dev/null
mount_of ctr-mmio
mmio_source=$m_source
echo "== 2. microvm: ctr-mmio ($mmio_source) cold-plugged as virtio-blk-device (virtio-mmio)," \
  "with ctr-ext2 and ctr-ext3 of the other pools"
# (Its kernel prints "PCI: Fatal: No config space access function found": microvm has no PCI.)
nested_start microvm "${microvm_args[@]}" \
  -drive "file=$mmio_source,format=raw,if=none,id=d1,cache=none" -device virtio-blk-device,drive=d1,serial=ctr-mmio \
  "${other_drives[@]}"
nested_wait_ready microvm "$boot_timeout"
mmio_boot_ms=$nested_boot_ms
guest_attach microvm ctr-mmio "$mmio_t0"
mmio_first_ms=$first_read_ms
guest_check_and_write microvm ctr-mmio
# The other types: mounted with their Mount's type, the host's file checked, one written.
declare -A other_written=()
for t in "${other_fs_types[@]}"; do
  nested_run microvm 120 "d=\$(waitdisk ctr-$t 30) && mkdir -p /mnt/$t && mount -t $t \$d /mnt/$t &&
    sums /mnt/$t/fs.bin && dd if=/dev/urandom of=/tmp/$t.bin bs=64k count=1 2>/dev/null &&
    put /tmp/$t.bin /mnt/$t/guest.bin && sums /tmp/$t.bin && umount /mnt/$t" ||
    nested_fail microvm "mounting, checking or writing ctr-$t ($t) failed in the guest"
  same "microvm: fs.bin on a $t snapshot, read in the guest" "$(guest_sum "/mnt/$t/fs.bin")" "${other_sum[$t]}"
  other_written[$t]=$(guest_sum "/tmp/$t.bin")
done
nested_stop microvm
released "after the microvm's qemu exited" "$mmio_source"
for t in "${other_fs_types[@]}"; do other_end "$t" "${other_written[$t]}"; done
# The q35 VM boots (no disk) while the host checks what the microvm guest wrote.
nested_start q35 "${q35_args[@]}"
host_check_commit ctr-mmio

# --- 1. hot-plug (Kata's path) --------------------------------------------------------------------
echo "== 1. q35: ctr-pci hot-plugged as virtio-blk-pci on PCIe root port rp1"
nested_wait_ready q35 "$boot_timeout"
q35_boot_ms=$nested_boot_ms
pci_t0=$EPOCHREALTIME
# Sized as Kata sizes a pod's rootfs: 1 GiB, against the pool's 256 MiB base.
max_size=$((1024 * 1024 * 1024))
"${ctl_rpc[@]}" prepare ctr-pci image --label "containerd.io/snapshot/max-size=$max_size" >/dev/null
mount_of ctr-pci
pci_source=$m_source
qmp_attach q35 ctr-pci d1 vd1
guest_attach q35 ctr-pci "$pci_t0"
pci_first_ms=$first_read_ms
# df counts the filesystem's size less its own metadata (inode tables, journal): a few percent.
nested_run q35 60 "dfk /mnt/ctr-pci" || nested_fail q35 "df of ctr-pci in the guest failed"
pci_df_kib=
for line in "${nested_lines[@]}"; do
  [[ "$line" == "df "*" /mnt/ctr-pci" ]] && { pci_df_kib=${line#df }; pci_df_kib=${pci_df_kib%% *}; }
done
echo "max-size: ctr-pci labelled $((max_size / 1024)) KiB; df in the guest: ${pci_df_kib:-(none)} KiB"
if [ -z "$pci_df_kib" ] || [ "$pci_df_kib" -gt $((max_size / 1024)) ] ||
  [ "$pci_df_kib" -lt $((max_size * 9 / 10 / 1024)) ]; then
  vm_problem "max-size: the guest's df shows ${pci_df_kib:-nothing} KiB, not about $((max_size / 1024)) KiB"
fi
echo "ctr-pci's device while attached: open count $(dm_open "$pci_source")"
guest_check_and_write q35 ctr-pci
qmp_detach q35 ctr-pci d1 vd1
released "after device_del and blockdev-del" "$pci_source"
host_check_commit ctr-pci

# --- 3. removed while attached --------------------------------------------------------------------
echo "== 3. q35: ctr-gone hot-plugged, mounted in the guest, then Removed"
gone_t0=$EPOCHREALTIME
"${ctl_rpc[@]}" prepare ctr-gone image >/dev/null
mount_of ctr-gone
gone_source=$m_source
gone_name=$(basename "$gone_source")
qmp_attach q35 ctr-gone d2 vd2
guest_attach q35 ctr-gone "$gone_t0"
gone_first_ms=$first_read_ms
nested_run q35 120 "dd if=/dev/urandom of=/tmp/a.bin bs=64k count=4 2>/dev/null &&
  put /tmp/a.bin /mnt/ctr-gone/a.bin" || nested_fail q35 "writing a.bin in the guest failed"

"${ctl_rpc[@]}" rm ctr-gone || vm_problem "Remove of ctr-gone (attached to the guest) failed"
cleanup_rc=0
cleanup_out=$("${ctl_rpc[@]}" cleanup 2>&1) || cleanup_rc=$?
echo "Cleanup while the guest holds ctr-gone: exit $cleanup_rc: ${cleanup_out:-(no output)}"
if [ "$cleanup_rc" -eq 0 ]; then
  vm_problem "Cleanup succeeded silently while ctr-gone's device is attached to a VM"
elif [[ "$cleanup_out" != *FailedPrecondition* && "$cleanup_out" != *FAILED_PRECONDITION* ]] ||
  [[ "$cleanup_out" != *"$gone_name"* ]]; then
  vm_problem "Cleanup while attached did not answer FailedPrecondition naming $gone_name: $cleanup_out"
fi
echo "ctr-gone's device after Remove + Cleanup: $(dmsetup info -c --noheadings -o name,open,attr "$gone_name" 2>&1 || true)"
[ -b "$gone_source" ] || vm_problem "$gone_source vanished while the guest holds it"

# The guest goes on: more written, caches dropped, everything read back.
nested_run q35 180 "dd if=/dev/urandom of=/tmp/b.bin bs=64k count=8 2>/dev/null &&
  put /tmp/b.bin /mnt/ctr-gone/b.bin && echo 3 >/proc/sys/vm/drop_caches &&
  sums /tmp/a.bin /mnt/ctr-gone/a.bin /tmp/b.bin /mnt/ctr-gone/b.bin /mnt/ctr-gone/image.bin &&
  umount /mnt/ctr-gone" || nested_fail q35 "writing, reading back or unmounting ctr-gone after its Remove failed"
same "q35: a.bin (written before the Remove) read back in the guest after drop_caches" \
  "$(guest_sum /mnt/ctr-gone/a.bin)" "$(guest_sum /tmp/a.bin)"
same "q35: b.bin (written after the Remove) read back in the guest after drop_caches" \
  "$(guest_sum /mnt/ctr-gone/b.bin)" "$(guest_sum /tmp/b.bin)"
same "q35: image.bin on the removed snapshot, in the guest after drop_caches" \
  "$(guest_sum /mnt/ctr-gone/image.bin)" "$image_sum"
qmp_detach q35 ctr-gone d2 vd2
released "after device_del and blockdev-del" "$gone_source"
cleanup_rc=0
cleanup_out=$("${ctl_rpc[@]}" cleanup 2>&1) || cleanup_rc=$?
echo "Cleanup after the guest let go of ctr-gone: exit $cleanup_rc: ${cleanup_out:-(no output)}"
[ "$cleanup_rc" -eq 0 ] || vm_problem "Cleanup after ctr-gone was detached failed: $cleanup_out"
if dmsetup info "$gone_name" >/dev/null 2>&1 || [ -e "$gone_source" ]; then
  vm_problem "$gone_name is still there after that Cleanup"
fi
nested_stop q35

echo "== speed (nested TCG: qemu under TCG inside the TCG test VM)"
echo "speed: microvm boot (qemu start to /init) $(nested_secs "$mmio_boot_ms") s;" \
  "Prepare to first guest read $(nested_secs "$mmio_first_ms") s (cold-plugged: includes the boot)"
echo "speed: q35 boot (qemu start to /init) $(nested_secs "$q35_boot_ms") s;" \
  "Prepare to first guest read $(nested_secs "$pci_first_ms") s (ctr-pci)," \
  "$(nested_secs "$gone_first_ms") s (ctr-gone) (hot-plugged into the running VM)"

vm_end "after the hand-offs" image
