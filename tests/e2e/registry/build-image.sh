#!/usr/bin/env bash
# Builds, on the HOST, the OCI image the registry tests push and pull: real
# Debian content (debootstrap --variant=minbase bookworm from deb.debian.org)
# in three layers that exercise whiteouts of files and of directories, opaque
# directories, hard links (within a layer and across a whiteout), setuid and
# setgid files, foreign owners, a file replacing a directory and a 32 MiB
# file. Alongside it goes the manifest (tests/e2e/registry/treecmp) of the
# tree the image must unpack into, which is built by applying the same
# changes to a copy of the source tree, independently of any unpacker.
#
#   tests/e2e/registry/build-image.sh TREECMP CACHE_DIR
#
# Results are cached in CACHE_DIR (the guest sees the host root read-only):
#   debootstrap-bookworm-minbase-v1/  the debootstrap tree (downloaded once)
#   image-vN/oci/                     OCI layout, tag "test"
#   image-vN/expected.manifest        treecmp manifest of the unpacked image
#   image-vN/run.expected             what /opt/thinsnap/bin/hello prints
# N is image_version in image.env: bump it whenever the layers below change.
# Needs root (debootstrap; layer trees with root-owned and foreign-owned
# files), umoci, and network access to deb.debian.org for the first build.
# The OCI layout was checked once against `umoci unpack`, an independent
# unpacker: its tree matched expected.manifest path for path.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/e2e/registry/image.env
source "$here/image.env"
suite=bookworm
mirror=http://deb.debian.org/debian

log() { echo "[$(date +%T)] build-image: $*"; }
fail() {
  echo "FAIL: build-image: $*" >&2
  exit 1
}

[ $# -eq 2 ] || fail "usage: $0 TREECMP CACHE_DIR"
treecmp=$(readlink -f "$1")
cache=$(readlink -m "$2")
[ -x "$treecmp" ] || fail "$treecmp not built (target treecmp_bin)"
[ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap and the layer trees keep root-owned files)"
for tool in debootstrap umoci tar sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps)"
done
case "$cache/" in
  /tmp/* | /run/* | /var/tmp/*) fail "$cache is hidden by tmpfs in the test VM; use e.g. /var/cache/thinsnap-images" ;;
esac
mkdir -p "$cache"

# One builder at a time (ctest may start the tests that need the image together).
exec 9>"$cache/.lock"
flock 9

image=$(image_dir "$cache")
if [ -e "$image.done" ]; then
  log "cached: $image"
  exit 0
fi

base=$cache/debootstrap-$suite-minbase-v1
if [ ! -e "$base.done" ]; then
  rm -rf "$base" "$base.partial"
  log "debootstrap --variant=minbase $suite from $mirror (about 2 minutes)"
  debootstrap --variant=minbase "$suite" "$base.partial" "$mirror" >"$base.log" 2>&1 ||
    { tail -n 20 "$base.log" >&2; fail "debootstrap failed (log: $base.log)"; }
  mv "$base.partial" "$base"
  touch "$base.done"
fi

rm -rf "$image" "$image.partial"
work=$image.partial
mkdir -p "$work"
l1=$work/layer1 l2=$work/layer2 l3=$work/layer3 want=$work/expected

# tar_layer DIR OUT: one uncompressed layer, entries sorted, numeric owners,
# hard links within DIR kept as links (GNU tar records them by inode).
tar_layer() {
  tar -C "$1" --sort=name --numeric-owner --format=pax --pax-option=delete=atime,delete=ctime \
    --xattrs --xattrs-include='*' -cf "$2" .
}

# --- layer 1: the Debian tree, as a distribution's base image would ship it --------------------
log "layer 1: debootstrap tree"
cp -a "$base" "$l1"
# Device nodes are the runtime's job; downloaded .debs and apt lists are not
# shipped by Debian's own images either. Like Debian's bookworm-slim images,
# drop locales, manual pages, info and documentation except the copyright
# files: that keeps the image realistic while halving what the TCG-emulated
# test VM must unpack.
find "$l1/dev" -mindepth 1 -delete
find "$l1/var/cache/apt/archives" -name '*.deb' -delete
find "$l1/var/lib/apt/lists" -mindepth 1 -maxdepth 1 -type f -delete
find "$l1/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$l1/usr/share/man" "$l1/usr/share/info" -mindepth 1 -delete
find "$l1/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$l1/usr/share/doc" -mindepth 1 -type d -empty -delete
cp -a "$l1" "$want"

# --- layer 2: whiteouts, an opaque directory, hard links, setuid, owners, a large file ---------
log "layer 2: whiteouts, opaque dir, hard links, setuid/setgid, owners, 32 MiB file"
mkdir -p "$l2"
# whiteout ARGS: a whiteout in DIR for every PATH, and the same removal in the expected tree.
whiteout() {
  local layer=$1 path
  shift
  for path in "$@"; do
    [ -e "$want/$path" ] || [ -L "$want/$path" ] || fail "whiteout of $path: not in the tree"
    mkdir -p "$layer/$(dirname "$path")"
    : >"$layer/$(dirname "$path")/.wh.$(basename "$path")"
    rm -rf "${want:?}/$path"
  done
}
# opaque LAYER DIR: the directory's lower content is hidden; the layer then adds entries.
opaque() {
  local layer=$1 path=$2
  [ -d "$want/$path" ] || fail "opaque $path: not a directory in the tree"
  mkdir -p "$layer/$path"
  : >"$layer/$path/.wh..wh..opq"
  find "$want/$path" -mindepth 1 -delete
}
# A file (perl5.36.0 is a hard link to perl in layer 1: the whiteout leaves
# perl with one link), a whole directory tree, and a symlink.
whiteout "$l2" usr/bin/perl5.36.0 usr/share/zoneinfo/America etc/rc0.d/K01hwclock.sh usr/sbin/rmt
opaque "$l2" etc/apt/apt.conf.d
printf 'APT::Install-Recommends "false";\n' >"$l2/etc/apt/apt.conf.d/99thinsnap"
chmod 0644 "$l2/etc/apt/apt.conf.d/99thinsnap"
mkdir -p "$l2/opt/thinsnap/bin" "$l2/opt/thinsnap/links" "$l2/opt/thinsnap/replaced/sub" "$l2/etc"
# An overwritten file.
printf 'thinsnap-registry-test\n' >"$l2/etc/hostname"
# Hard links within the layer: three names for one inode, plus a pair.
seq 1 20000 >"$l2/opt/thinsnap/links/data"
ln "$l2/opt/thinsnap/links/data" "$l2/opt/thinsnap/links/data.1"
ln "$l2/opt/thinsnap/links/data" "$l2/opt/thinsnap/links/data.2"
printf 'pair\n' >"$l2/opt/thinsnap/links/pair.a"
ln "$l2/opt/thinsnap/links/pair.a" "$l2/opt/thinsnap/links/pair.b"
# setuid and setgid programs from the image's own binaries.
cp "$base/usr/bin/true" "$l2/opt/thinsnap/bin/suid-true"
chmod 4755 "$l2/opt/thinsnap/bin/suid-true"
cp "$base/usr/bin/true" "$l2/opt/thinsnap/bin/sgid-true"
chgrp 42 "$l2/opt/thinsnap/bin/sgid-true"
chmod 2755 "$l2/opt/thinsnap/bin/sgid-true"
# Foreign owners and a sticky directory.
mkdir -p "$l2/opt/thinsnap/owned/sticky"
printf 'owned\n' >"$l2/opt/thinsnap/owned/file"
chown -R 1234:5678 "$l2/opt/thinsnap/owned"
chmod 1777 "$l2/opt/thinsnap/owned/sticky"
printf 'will become a file\n' >"$l2/opt/thinsnap/replaced/sub/inner"
ln -s ../links/data "$l2/opt/thinsnap/bin/data-link"
# 32 MiB of incompressible data, as a real image's big binaries or models are.
head -c $((32 << 20)) /dev/urandom >"$l2/opt/thinsnap/large.bin"
chmod 0644 "$l2/opt/thinsnap/large.bin"
cp -a "$l2/." "$want/"
find "$want" -name '.wh.*' -delete

# --- layer 3: whiteouts of layer-2 paths, an opaque dir over layer 1, a file over a dir --------
log "layer 3: whiteouts over layer 2, opaque usr/share/doc, file replacing a directory"
mkdir -p "$l3"
# A hard link of layer 2 goes away: data keeps two names.
whiteout "$l3" opt/thinsnap/links/data.2 opt/thinsnap/owned/file
opaque "$l3" usr/share/doc
printf 'Documentation removed from this image.\n' >"$l3/usr/share/doc/README"
# A directory (with content, in layer 2) replaced by a regular file.
mkdir -p "$l3/opt/thinsnap/bin" "$l3/etc"
rm -rf "${want:?}/opt/thinsnap/replaced"
printf 'now a file\n' >"$l3/opt/thinsnap/replaced"
# The program the tests run from the image.
cat >"$l3/opt/thinsnap/bin/hello" <<'EOF'
#!/bin/sh
set -e
echo "hello from layer 3 on $(. /etc/os-release && echo "$PRETTY_NAME")"
sha256sum /opt/thinsnap/large.bin
cat /opt/thinsnap/replaced
EOF
chmod 0755 "$l3/opt/thinsnap/bin/hello"
printf 'layer 3\n' >"$l3/etc/thinsnap-release"
cp -a "$l3/." "$want/"
find "$want" -name '.wh.*' -delete

for n in 1 2 3; do
  tar_layer "$work/layer$n" "$work/layer$n.tar"
done

# --- the OCI image -----------------------------------------------------------------------------
log "OCI layout (umoci)"
umoci init --layout "$work/oci"
umoci new --image "$work/oci:test"
for n in 1 2 3; do
  umoci raw add-layer --image "$work/oci:test" "$work/layer$n.tar"
done
umoci config --image "$work/oci:test" --config.cmd /opt/thinsnap/bin/hello \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --author thinsnap-tests --os linux --architecture amd64
umoci gc --layout "$work/oci"

"$treecmp" manifest "$want" >"$work/expected.manifest"
{
  # shellcheck disable=SC1091 # the image's own os-release
  echo "hello from layer 3 on $(. "$want/etc/os-release" && echo "$PRETTY_NAME")"
  echo "$(sha256sum <"$want/opt/thinsnap/large.bin" | cut -d' ' -f1)  /opt/thinsnap/large.bin"
  cat "$want/opt/thinsnap/replaced"
} >"$work/run.expected"

paths=$(wc -l <"$work/expected.manifest")
files=$(grep -c '	file	' "$work/expected.manifest" || true)
log "expected tree: $paths paths ($files regular files), $(du -sm "$want" | cut -f1) MiB"
for n in 1 2 3; do
  log "layer $n: $(tar -tf "$work/layer$n.tar" | wc -l) entries," \
    "$(($(stat -c %s "$work/layer$n.tar") >> 20)) MiB," \
    "$(tar -tf "$work/layer$n.tar" | grep -c '\.wh\.' || true) whiteouts"
done
rm -rf "$l1" "$l2" "$l3" "$want" "$work"/layer?.tar
mv "$work" "$image"
touch "$image.done"
log "done: $image"
