#!/usr/bin/env bash
# Pull time and image footprint, side by side in one VM run: the three-layer
# Debian image of build-image.sh, pushed to docker-registry on the guest's
# loopback, pulled by one containerd 1.6 (`ctr images pull --plain-http`)
# into
#   thinsnap   thinsnapd on a `thinsnapctl pool create --loop` pool;
#   overlayfs  containerd's overlayfs snapshotter, its root_path on a fresh
#              ext4 filesystem (default mkfs options) on a loop device;
#   devmapper  containerd's devmapper snapshotter on a pool made the same
#              way as thinsnap's, base_image_size as thinsnap's base_size.
# Space is what the pull added: pool data used (dmsetup status, before and
# after) for the block snapshotters, ext4 used bytes (df) for overlayfs.
# Between pulls the image is removed with --sync, so containerd's GC drops its
# content and every pull fetches from the registry again.
#
#   tests/vm/run --mem 4096 -- tests/e2e/registry/pull-bench.sh BUILD_DIR CACHE_DIR SNAPSHOTTER...
#
# A benchmark: the figures are printed beside their target, never judged; it
# fails only if an operation fails.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/testbed.sh
source "$here/../testbed.sh"
# shellcheck source=tests/e2e/registry/lib.sh
source "$here/lib.sh"
# shellcheck source=tests/e2e/registry/image.env
source "$here/image.env"

[ $# -ge 3 ] || tb_fail "usage: $0 BUILD_DIR CACHE_DIR SNAPSHOTTER... (thinsnap overlayfs devmapper)"
testbed_init pullbench "$1"
image=$(image_dir "$(readlink -f "$2")")
shift 2
snapshotters=("$@")
for s in "${snapshotters[@]}"; do
  case "$s" in thinsnap | overlayfs | devmapper) ;; *) tb_fail "unknown snapshotter $s" ;; esac
done
ctl=$BUILD/tools/thinsnapctl
[ -x "$ctl" ] || tb_fail "$ctl not built"
[ -f "$image/oci/index.json" ] || tb_fail "no image in $image (tests/e2e/registry/build-image.sh makes it on the host)"
registry_require_tools

# Same base size for thinsnap (its default base_size) and devmapper (base_image_size).
base_size=$((10 << 30))
pool_dirs=()
ovl_loop=
# Run by testbed.sh's EXIT trap, after containerd has stopped.
pull_bench_teardown() {
  if [ -n "$DAEMON_PID" ]; then
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID"
    DAEMON_PID=
  fi
  mountpoint -q "$WORK/ovl" && umount "$WORK/ovl"
  [ -n "$ovl_loop" ] && losetup -d "$ovl_loop"
  local dir
  for dir in "${pool_dirs[@]}"; do
    "$ctl" pool destroy --force --dir "$dir" >/dev/null 2>&1
  done
}
TB_EXIT_HOOKS+=(pull_bench_teardown)

loop_pool() {
  local dir=$1 name=$2
  pool_dirs+=("$dir")
  "$ctl" pool create --loop --dir "$dir" --data-size 8GiB --meta-size 256MiB --name "$name" >/dev/null ||
    tb_fail "thinsnapctl pool create $name"
}

# pool_used_bytes NAME: data blocks in use times the pool's data block size.
pool_used_bytes() {
  local used block
  used=$(dmsetup status "$1" | awk '{ split($6, a, "/"); print a[1] }')
  block=$(dmsetup table "$1" | awk '{ print $6 }')
  echo $((used * block * 512))
}
ext4_used_bytes() { df -B1 --output=used "$1" | tail -n 1 | tr -d ' '; }

space() {
  case "$1" in
    thinsnap) pool_used_bytes "$POOL_NAME" ;;
    devmapper) pool_used_bytes "$dm_pool" ;;
    overlayfs) ext4_used_bytes "$WORK/ovl" ;;
  esac
}

extra_config=()
want() {
  local s
  for s in "${snapshotters[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# --- the three back ends ------------------------------------------------------------------------
# thinsnap always runs: containerd_start checks its proxy plugin.
POOL_NAME=pullbench-ts-$$
loop_pool "$WORK/ts-pool" "$POOL_NAME"
daemon_start
if want overlayfs; then
  truncate -s 8G "$WORK/ovl.img"
  mkfs.ext4 -q "$WORK/ovl.img"
  ovl_loop=$(losetup --find --show "$WORK/ovl.img")
  mkdir -p "$WORK/ovl"
  mount -t ext4 "$ovl_loop" "$WORK/ovl"
  extra_config+=("[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]
  root_path = \"$WORK/ovl/root\"")
fi
if want devmapper; then
  dm_pool=pullbench-dm-$$
  loop_pool "$WORK/dm-pool" "$dm_pool"
  extra_config+=("[plugins.\"io.containerd.snapshotter.v1.devmapper\"]
  pool_name = \"$dm_pool\"
  root_path = \"$WORK/devmapper\"
  base_image_size = \"$((base_size >> 30))GB\"")
fi
registry_start
registry_push "oci:$image/oci:test" thinsnap/debian
containerd_start "${extra_config[@]}"
for s in "${snapshotters[@]}"; do
  [ "$s" = thinsnap ] && continue
  ctr_ plugins ls | grep -qE "^io.containerd.snapshotter.v1 +$s .* ok *\$" ||
    tb_fail "containerd did not load its $s snapshotter"
done

declare -A pull_ms before after
for s in "${snapshotters[@]}"; do
  sync
  before[$s]=$(space "$s")
  tb_log "pull into $s"
  t0=$(date +%s%N)
  ctr_ images pull --plain-http --snapshotter "$s" "$REF" >"$WORK/pull-$s.log" 2>&1 ||
    { tail -n 20 "$WORK/pull-$s.log" >&2; tb_fail "ctr images pull --snapshotter $s"; }
  pull_ms[$s]=$((($(date +%s%N) - t0) / 1000000))
  sync
  after[$s]=$(space "$s")
  tb_log "$s: ${pull_ms[$s]} ms, $(((after[$s] - before[$s]) >> 20)) MiB"
  ctr_ images rm --sync "$REF" >/dev/null
done

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo
echo "=== image pull: $(wc -l <"$image/expected.manifest") paths, $(du -sm "$WORK/registry" | cut -f1) MiB in the registry; $(nproc) CPUs ==="
printf '%-10s %10s %14s %14s %14s  %s\n' snapshotter pull_s before_MiB after_MiB image_MiB "(space: what the pull added)"
for s in "${snapshotters[@]}"; do
  case "$s" in overlayfs) how="ext4 used (df)" ;; *) how="pool data used (dmsetup status)" ;; esac
  printf '%-10s %10s %14s %14s %14s  %s\n' "$s" "$(awk -v m="${pull_ms[$s]}" 'BEGIN { printf "%.1f", m / 1000 }')" \
    "$(mib "${before[$s]}")" "$(mib "${after[$s]}")" "$(mib $((after[$s] - before[$s])))" "$how"
done
if want overlayfs; then
  ovl=$((after[overlayfs] - before[overlayfs]))
  for s in thinsnap devmapper; do
    want "$s" || continue
    echo "footprint $s/overlayfs: $(awk -v a=$((after[$s] - before[$s])) -v b="$ovl" 'BEGIN { printf "%.2f", a / b }')" \
      "$([ "$s" = thinsnap ] && echo "(target <= 1.10, issue 8)")"
  done
fi

containerd_stop
registry_stop
daemon_stop
tb_log "pull bench: done"
