#!/usr/bin/env bash
# Guest half of the power-cut test (tests/boot/powercut.sh runs it in the VM, once per boot).
#
#   powercut-guest.sh KIND PHASE CYCLE STATE_DIR BUILD_DIR
#     KIND   loop | lvm
#     PHASE  first  (make the pool, boot, import the image, run it, then run the workload)
#            cut    (boot, verify everything acknowledged so far, run the image, then the workload)
#            final  (boot, verify, run the image, let containerd's GC remove everything, thin_check)
#     Every boot runs the image as container c.CYCLE, which writes and fsyncs a file.
#     STATE_DIR  host directory (read-only here): image.tar, and acks: every acknowledged
#                operation of the earlier boots, as the host received them
#
# The machine: /dev/vda (serial thinsnap0, ext4 made by the host) is mounted at /var/lib, so the
# loop pool (/var/lib/thinsnap-pool), thinsnapd's root_dir (/var/lib/thinsnap) and containerd's
# root (/var/lib/containerd) persist; /dev/vdb (thinsnap1, LVM only) is the VG's only PV. /etc is
# writable (links to the host's entries, plus the shipped configs) and /usr/local/sbin holds the
# built binaries, so the units' commands run unchanged (boot-sequence.sh).
#
# Everything goes through containerd (ctr), never around it: containerd's GC removes from its
# snapshotter every snapshot its own metadata does not know, so snapshots made with thinsnapctl
# on a thinsnapd that containerd uses do not survive containerd's next GC. The chains are `ctr
# snapshots prepare/commit/rm` (labelled containerd.io/gc.root by ctr, so GC keeps them).
#
# The workload writes one line per acknowledged operation to the guest log (virtio port
# thinsnap.log; the host sees each line at once), only after the operation returned:
#   ACK import REF END / ACK container ID VALUE END / ACK prepare KEY PARENT END /
#   ACK fsync KEY SHA END / ACK commit NAME KEY SHA END / ACK rm NAME END
# and arms the power cut (THINSNAP-POWERCUT-ARM) when it starts.
set -euo pipefail

kind=${1:?usage}; phase=${2:?usage}; cycle=${3:?usage}; state=$(readlink -f "${4:?usage}")
build=$(readlink -f "${5:?usage}")
src=$(dirname "$(dirname "$(dirname "$(readlink -f "$0")")")")
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DM_DISABLE_UDEV=1
# fd 3 (the guest log) is inherited by lvm, which would warn about it at every call.
export LVM_SUPPRESS_FD_WARNINGS=1
ref=thinsnap.test/e2e:latest
vg=tvg
case "$kind" in
  loop) POOL=thinsnap-pool ;;
  lvm) POOL=$vg-tpool ;;
  *) echo "KIND must be loop or lvm" >&2; exit 2 ;;
esac

fail() {
  echo "powercut-guest: FAIL: $*" >&2
  # Also to the guest log, which the host reads at once.
  { echo "WORKLOAD-FAIL: $*" >&3; } 2>/dev/null || true
  for f in thinsnapd containerd; do
    [ -f "/run/boot-logs/$f.log" ] && { echo "--- $f log (tail) ---" >&2; tail -n 25 "/run/boot-logs/$f.log" >&2; }
  done
  exit 1
}
say() { echo "powercut-guest: [$SECONDS s] $*"; }

# --- the machine -----------------------------------------------------------------------------
[ "$(cat /sys/block/vda/serial 2>/dev/null)" = thinsnap0 ] || fail "/dev/vda is not the persistent disk thinsnap0"
mount /dev/vda /var/lib || fail "mount /dev/vda /var/lib"
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd # bash's <(...); the VM's devtmpfs lacks it
mount -t tmpfs tmpfs /usr/local/sbin
say "persistent disk mounted"
ln -s "$build/src/daemon/thinsnapd" /usr/local/sbin/thinsnapd
ln -s "$build/tools/thinsnapctl" /usr/local/sbin/thinsnapctl
# The host has no /lib/modules for the VM's kernel; the units' `modprobe` reads the unpacked one
# (kmod takes extra options from $MODPROBE_OPTIONS). The modules are loaded already.
export MODPROBE_OPTIONS="-d ${THINSNAP_VM_CACHE:-/var/cache/thinsnap-vm}/kernel-$(uname -r)/root"
# A writable /etc: a tmpfs of links to the host's entries (copying /etc through virtiofs takes
# seconds), with real directories for what the test writes.
mkdir -p /run/etc.host
mount --bind /etc /run/etc.host
mount -t tmpfs tmpfs /etc
ln -s /run/etc.host/* /etc/ # one process: under TCG each one costs a fraction of a second
rm /etc/lvm /etc/containerd
cp -a /run/etc.host/lvm /etc/lvm
mkdir -p /etc/thinsnap /etc/containerd
sed "s/^pool_name = .*/pool_name = \"$POOL\"/" "$src/deploy/config.toml" >/etc/thinsnap/config.toml
# containerd: the shipped proxy_plugins declaration; CRI off (no Kubernetes here, and it is slow).
sed 's/^version = 2$/version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]/' \
  "$src/deploy/containerd-config.toml" >/etc/containerd/config.toml
# No udev in this VM (dm-thin-facts.md, LVM section).
cat >/etc/lvm/lvmlocal.conf <<'LVM'
devices { obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
LVM

port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = thinsnap.log ] && port=/dev/$(basename "$p")
done
[ -n "$port" ] || fail "no virtio port thinsnap.log (tests/vm/run --guest-log)"
exec 3>"$port"
ack() { echo "ACK $* END" >&3; }

BOOT_DEPLOY=$src/deploy BOOT_LOGDIR=/run/boot-logs
# shellcheck source=boot-sequence.sh
source "$src/tests/boot/boot-sequence.sh"
ctl() { thinsnapctl --timeout 120 "$@"; }
ctr_() { ctr -n default "$@"; }
W=/run/powercut
mkdir -p "$W/mnt"

# --- first boot: the pool, made and then deactivated, so that this boot runs the units too ----
if [ "$phase" = first ]; then
  case "$kind" in
    loop)
      thinsnapctl pool create --loop --dir /var/lib/thinsnap-pool --data-size 2G --meta-size 64M >/dev/null
      thinsnapctl pool destroy --dir /var/lib/thinsnap-pool >/dev/null
      ;;
    lvm)
      [ "$(cat /sys/block/vdb/serial 2>/dev/null)" = thinsnap1 ] || fail "/dev/vdb is not thinsnap1"
      pvcreate -q /dev/vdb && vgcreate -q "$vg" /dev/vdb >/dev/null
      thinsnapctl pool create --lvm --vg "$vg" --name tpool --size 1G >/dev/null
      vgchange -q --activate n "$vg" >/dev/null
      ;;
  esac
  say "pool $POOL made and deactivated"
fi

say "boot sequence ($kind)"
boot_sequence "$kind" "$vg"
say "thinsnapd serving $BOOT_SERVING_SECONDS s after the pool unit started; $(grep -Eo 'reconcile( repaired)?: .*' "$BOOT_LOGDIR/thinsnapd.log" | head -n 1 | cut -c1-300)"

# --- verification of everything acknowledged before the cut ----------------------------------
meta_dev() {
  case "$kind" in
    loop) losetup -n -O NAME -j /var/lib/thinsnap-pool/meta.img ;;
    lvm) echo "/dev/mapper/$vg-tpool_tmeta" ;;
  esac
}

pool_thin_ids() {
  local out
  dmsetup message "$POOL" 0 reserve_metadata_snap || fail "reserve_metadata_snap"
  out=$(thin_ls --metadata-snap --no-headers -o DEV "$(meta_dev)") || {
    dmsetup message "$POOL" 0 release_metadata_snap
    fail "thin_ls"
  }
  dmsetup message "$POOL" 0 release_metadata_snap || fail "release_metadata_snap"
  tr -d ' ' <<<"$out" | sed '/^$/d' | sort -n
}

cycle_of() { local x=${1#?.}; echo "${x%%.*}"; }
# want_content KEY: whether to read KEY's content now. Reading costs several ctr calls, so each
# boot reads what the last workload acknowledged plus a random quarter of the older ones; the
# final boot reads everything. Existence and kind are checked for every key at every boot.
content_checks=0
want_content() {
  local c
  c=$(cycle_of "$1")
  if [ "$phase" = final ] || [ "$c" -ge $((cycle - 1)) ] || [ $((RANDOM % 4)) = 0 ]; then
    content_checks=$((content_checks + 1))
    return 0
  fi
  return 1
}
csnap() { ctr_ snapshots --snapshotter thinsnap "$@"; }
# cdevice_of KEY: the device of containerd's snapshot KEY.
cdevice_of() { csnap mounts /mnt "$1" | awk 'NR == 1 { print $4 }'; }

# file_sum KEY FILE KIND: sha256 of FILE inside containerd's snapshot KEY (through a child for a
# committed one: `ctr snapshots prepare` labels it containerd.io/gc.root, while a `ctr snapshots
# view` carries no label and containerd's GC may remove it before it is read).
file_sum() {
  local key=$1 file=$2 kind=$3 dev view= mounts
  if [ "$kind" = Committed ]; then
    view=verify.$cycle.$key
    mounts=$(csnap prepare --mounts "$view" "$key") || fail "ctr snapshots prepare $view $key"
    dev=$(jq -r '.[0].Source' <<<"$mounts")
  else
    dev=$(cdevice_of "$key")
  fi
  [ -b "$dev" ] || fail "device '$dev' of $key is not a block device"
  mount -o ro "$dev" "$W/mnt" || fail "mount -o ro $dev ($key)"
  if [ -f "$W/mnt/$file" ]; then sha256sum <"$W/mnt/$file" | cut -c1-64; else echo missing; fi
  umount "$W/mnt"
  [ -z "$view" ] || csnap rm "$view" || fail "ctr snapshots rm $view"
}

declare -A HAVE=()      # snapshot name -> kind, as thinsnapd lists it
declare -A COMMITTED=() # acked and not removed: name -> 1 (parents for the workload)
verified=0

verify() {
  local acks=$state/acks
  [ -f "$acks" ] || fail "no $acks"
  local out
  out=$(thinsnapctl check --json --root /var/lib/thinsnap --pool "$POOL") || fail "thinsnapctl check: $out"
  jq -e '.clean and .found.clean and (.errors | length == 0)' <<<"$out" >/dev/null ||
    fail "thinsnapctl check is not clean: $out"
  local pool_ids db_ids
  pool_ids=$(pool_thin_ids)
  db_ids=$(sqlite3 -readonly /var/lib/thinsnap/metadata.db \
    'SELECT thin_id FROM snapshots UNION ALL SELECT thin_id FROM base_device
     UNION ALL SELECT thin_id FROM grown_origins' | sort -n)
  [ "$pool_ids" = "$db_ids" ] || fail "pool thin ids [$(echo $pool_ids)] != database [$(echo $db_ids)]"
  say "check clean; $(wc -l <<<"$pool_ids") thin ids in the pool = the database's"

  # thinsnapd holds only containerd's snapshots (namespace/txid/key)...
  local name k
  name=$(ctl ls --json | jq -r '.[].name | select(startswith("default/") | not)')
  [ -z "$name" ] || fail "thinsnapd holds snapshots containerd did not make: $name"
  # ...and containerd's list is what the model is checked against (KEY PARENT KIND).
  while read -r name _ k; do HAVE[$name]=$k; done < <(csnap ls | awk 'NR > 1 { print $1, ($3 == "" ? "-" : $2), ($3 == "" ? $2 : $3) }')

  # The model, from the acks in order.
  declare -A PREP=() FSYNC=() COMMIT=() COMMITKEY=() RM=() CONT=() MAXI=()
  local word op a b c rest image=
  while read -r word op a b c rest; do
    [ "$word" = ACK ] || continue
    case "$op" in
      import) image=$a ;;
      container) CONT[$a]=$b ;;
      prepare) PREP[$a]=1 ;;
      fsync) FSYNC[$a]=$b ;;
      commit) COMMIT[$a]=$c COMMITKEY[$b]=$a ;;
      rm) RM[$a]=1 ;;
      *) fail "unknown ack: $word $op $a $b $c $rest" ;;
    esac
    verified=$((verified + 1))
    if [[ "$a" =~ ^[an]\.([0-9]+)\.([0-9]+)$ ]]; then
      local cy=${BASH_REMATCH[1]} it=${BASH_REMATCH[2]}
      [ "${MAXI[$cy]:-0}" -ge "$it" ] || MAXI[$cy]=$it
    fi
  done <"$acks"
  [ "$image" = "$ref" ] || fail "the image import was never acknowledged"

  # Every acked chain step.
  for k in "${!PREP[@]}"; do
    local n=n.${k#a.}
    if [ -n "${RM[$n]:-}" ]; then
      [ -z "${HAVE[$n]:-}" ] || fail "$n was removed before the cut and is back (${HAVE[$n]})"
      [ -z "${HAVE[$k]:-}" ] || fail "$k was committed and removed before the cut and is back"
    elif [ -n "${COMMIT[$n]:-}" ]; then
      [ -z "${HAVE[$k]:-}" ] || fail "$k was committed as $n before the cut but is still ${HAVE[$k]}"
      if [ -z "${HAVE[$n]:-}" ] && [ "${k##*.}" = "${MAXI[$(cycle_of "$k")]}" ]; then
        continue # the Remove of n was in flight at the cut
      fi
      [ "${HAVE[$n]:-}" = Committed ] || fail "commit $n was acknowledged but $n is ${HAVE[$n]:-absent}"
      if want_content "$k"; then
        [ "$(file_sum "$n" "data.$k" Committed)" = "${COMMIT[$n]}" ] || fail "content of committed $n changed"
      fi
      COMMITTED[$n]=1
    elif [ -n "${FSYNC[$k]:-}" ]; then
      # The commit may have happened with its reply cut: then n holds the content.
      if [ "${HAVE[$k]:-}" = Active ]; then
        [ -z "${HAVE[$n]:-}" ] || fail "both $k and $n exist"
        if want_content "$k"; then
          [ "$(file_sum "$k" "data.$k" Active)" = "${FSYNC[$k]}" ] || fail "fsync'd data.$k lost in active $k"
        fi
      elif [ "${HAVE[$n]:-}" = Committed ]; then
        if want_content "$k"; then
          [ "$(file_sum "$n" "data.$k" Committed)" = "${FSYNC[$k]}" ] || fail "fsync'd data.$k lost in $n"
        fi
      else
        fail "$k (fsync'd data acknowledged) is ${HAVE[$k]:-absent} and $n is ${HAVE[$n]:-absent}"
      fi
    else
      [ "${HAVE[$k]:-}" = Active ] || [ "${HAVE[$n]:-}" = Committed ] ||
        fail "prepare $k was acknowledged but $k is ${HAVE[$k]:-absent}"
    fi
  done
  # Nothing unexplained: a snapshot nobody acked may only be the operation the cut interrupted.
  for name in "${!HAVE[@]}"; do
    case "$name" in
      sha256:*) continue ;; # the image's layers
    esac
    [ -z "${CONT[$name]+x}" ] || continue
    [[ "$name" =~ ^c\.[0-9]+$ ]] && continue # a container whose run the cut interrupted
    [[ "$name" =~ ^verify\. ]] && fail "verification snapshot $name left behind"
    [[ "$name" =~ ^[an]\.([0-9]+)\.([0-9]+)$ ]] || fail "unknown snapshot $name"
    k=a.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
    [ -n "${PREP[$k]:-}" ] && continue
    [ "${BASH_REMATCH[2]}" = $((${MAXI[${BASH_REMATCH[1]}]:-0} + 1)) ] ||
      fail "snapshot $name exists but no operation on it was acknowledged or in flight"
  done
  # Containers that wrote and fsync'd a file.
  local id key
  for id in "${!CONT[@]}"; do
    ctr_ containers info "$id" >/dev/null || fail "container $id (acknowledged) is gone"
    [ "${HAVE[$id]:-}" = Active ] || fail "container $id's snapshot is ${HAVE[$id]:-absent}"
    want_content "$id" || continue
    mount -o ro "$(cdevice_of "$id")" "$W/mnt" || fail "mount $id's snapshot"
    [ "$(cat "$W/mnt/fsynced.txt" 2>/dev/null)" = "${CONT[$id]}" ] ||
      fail "container $id's fsync'd file: want ${CONT[$id]}, got $(cat "$W/mnt/fsynced.txt" 2>&1)"
    umount "$W/mnt"
  done
  # The image imported before the cut is still complete; container (below) runs it.
  ctr_ images check | awk -v r="$ref" '$1 == r && /complete/ { f = 1 } END { exit !f }' ||
    fail "image $ref is not complete after the cut"
  say "verified $verified acknowledged operations (${#COMMIT[@]} commits, ${#RM[@]} removes, ${#FSYNC[@]} fsync'd writes, ${#CONT[@]} containers; $content_checks contents read)"
  echo "VERIFIED-ACKS $verified"
}

# container: runs the image (imported before the cut, never re-imported) as container c.CYCLE,
# which writes a file and fsyncs it; the next boot checks the file. Under TCG a container start
# takes longer than most cut windows, so this runs before the workload arms the cut.
container() {
  local val=v$cycle.$RANDOM$RANDOM got
  got=$(ctr_ run --snapshotter thinsnap "$ref" "c.$cycle" /bin/sh -c \
    "echo $val >/tmp.txt && dd if=/tmp.txt of=/fsynced.txt conv=fsync 2>/dev/null && cat /fsynced.txt") ||
    fail "ctr run of $ref as c.$cycle: $got"
  [ "$got" = "$val" ] || fail "container c.$cycle printed $got"
  ack container "c.$cycle" "$val"
  say "$ref runs: container c.$cycle wrote and fsync'd $val"
}

if [ "$phase" = first ]; then
  ctr_ image import --snapshotter thinsnap "$state/image.tar" >/dev/null || fail "ctr image import"
  ack import "$ref"
  say "imported $ref"
else
  verify
fi
container

# --- final: everything goes, through containerd's GC for containerd's snapshots --------------
if [ "$phase" = final ]; then
  for id in $(ctr_ containers ls -q); do ctr_ containers rm "$id" >/dev/null || fail "ctr containers rm $id"; done
  # The chains (gc.root, so GC keeps them until they go): leaves first, as containerd requires.
  for _ in $(seq 50); do
    names=$(csnap ls | awk 'NR > 1 && $1 ~ /^[an]\./ { print $1 }')
    [ -n "$names" ] || break
    for name in $names; do csnap rm "$name" >/dev/null 2>&1 || true; done
  done
  # The last reference goes with a synchronous GC, which removes every unreferenced snapshot.
  ctr_ images rm --sync "$ref" >/dev/null || fail "ctr images rm --sync"
  left=$(csnap ls | awk 'NR > 1')
  [ -z "$left" ] || fail "containerd still holds snapshots: $left"
  left=$(ctl ls --json | jq -r '.[].name')
  [ -z "$left" ] || fail "thinsnapd still holds snapshots after containerd's GC: $left"
  say "containerd's GC removed every snapshot from thinsnapd"
  boot_stop
  case "$kind" in
    loop)
      thinsnapctl pool destroy --dir /var/lib/thinsnap-pool >/dev/null
      meta=$(losetup -f --show /var/lib/thinsnap-pool/meta.img)
      ;;
    lvm)
      vgchange -q --activate n "$vg" >/dev/null
      # Component activation: the pool's metadata LV alone, read-only.
      lvchange -q --activate y --yes "$vg/tpool_tmeta" >/dev/null || fail "lvchange -ay $vg/tpool_tmeta"
      meta=/dev/mapper/$vg-tpool_tmeta
      ;;
  esac
  thin_check "$meta" || fail "thin_check $meta"
  devices=$(thin_ls --no-headers -o DEV "$meta" | grep -c '[0-9]' || true)
  [ "$devices" = 1 ] || fail "the pool holds $devices thin devices, want only the base device"
  say "thin_check clean; the pool holds only the base device"
  [ "$kind" = loop ] && losetup -d "$meta"
  [ "$kind" = lvm ] && vgchange -q --activate n "$vg" >/dev/null
  umount /var/lib
  echo "POWERCUT-FINAL-OK"
  exit 0
fi

# --- the workload, until the power goes ----------------------------------------------------------
echo THINSNAP-POWERCUT-ARM >&3
say "armed; workload running"
parents=("${!COMMITTED[@]}")
i=0
while :; do
  i=$((i + 1))
  k=a.$cycle.$i n=n.$cycle.$i
  parent=
  [ ${#parents[@]} -eq 0 ] || [ $((RANDOM % 4)) = 0 ] || parent=${parents[RANDOM % ${#parents[@]}]}
  mounts=$(csnap prepare --mounts "$k" $parent) || fail "ctr snapshots prepare $k $parent"
  ack prepare "$k" "${parent:--}"
  dev=$(jq -r '.[0].Source' <<<"$mounts")
  mount "$dev" "$W/mnt" || fail "mount $k ($dev)"
  head -c 64K /dev/urandom >"$W/blob"
  dd if="$W/blob" of="$W/mnt/data.$k" bs=64K conv=fsync status=none || fail "write data.$k"
  ack fsync "$k" "$(sha256sum <"$W/blob" | cut -c1-64)"
  umount "$W/mnt" || fail "umount $k"
  csnap commit "$n" "$k" || fail "ctr snapshots commit $n $k"
  ack commit "$n" "$k" "$(sha256sum <"$W/blob" | cut -c1-64)"
  if [ $((RANDOM % 3)) = 0 ]; then
    csnap rm "$n" || fail "ctr snapshots rm $n"
    ack rm "$n"
  else
    parents+=("$n")
  fi
done
