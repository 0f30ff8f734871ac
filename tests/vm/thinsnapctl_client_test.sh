#!/usr/bin/env bash
# thinsnapctl's client commands against a live thinsnapd on real dm-thin. Runs inside the VM:
#   tests/vm/run -- tests/vm/thinsnapctl_client_test.sh <build-dir>
#
# Checks the text and --json output of ls, info, usage, mounts, prepare and view, the tree
# shape, labels, and that failures exit non-zero with the gRPC code name.
set -euo pipefail

build=$(readlink -f "${1:?usage: $0 <build-dir>}")
ctl_bin=$build/tools/thinsnapctl
daemon=$build/src/daemon/thinsnapd
[ -e /dev/mapper/control ] || { echo "FAIL: no device-mapper here; run through tests/vm/run"; exit 1; }

work=$(mktemp -d /tmp/thinsnapctl-client.XXXXXX)
socket=$work/thinsnap.sock
pool=ctl-client-pool
daemon_pid=
cleanup() {
  set +e
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid"
  fi
  "$ctl_bin" pool destroy --dir "$work/pool" --force --delete-files >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

checks=0
fail() {
  echo "FAIL: $*"
  [ -f "$work/thinsnapd.log" ] && tail -n 20 "$work/thinsnapd.log"
  exit 1
}
ok() {
  checks=$((checks + 1))
  echo "ok $checks - $*"
}
ctl() { "$ctl_bin" --socket "$socket" "$@"; }
# expect_error CODE cmd...: fails, and stderr is "thinsnapctl: CODE: ...".
expect_error() {
  local code=$1
  shift
  if ctl "$@" >"$work.out" 2>"$work.err"; then fail "succeeded: $*"; fi
  grep -q "^thinsnapctl: $code: " "$work.err" || fail "'$*' stderr: $(cat "$work.err") (want $code)"
  ok "$* -> $(cat "$work.err")"
}

"$ctl_bin" pool create --loop --dir "$work/pool" --name $pool --data-size 1G --meta-size 32M >/dev/null
expect_error Unavailable ls

"$daemon" --root "$work/root" --socket "$socket" --pool $pool >"$work/thinsnapd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 300); do
  [ -S "$socket" ] && break
  kill -0 $daemon_pid || fail "thinsnapd exited"
  sleep 0.1
done
[ -S "$socket" ] || fail "no socket"

[ "$(ctl ls)" = "KEY  PARENT  KIND" ] || fail "ls of nothing: $(ctl ls)"
[ "$(ctl ls --json)" = "[]" ] || fail "ls --json of nothing: $(ctl ls --json)"
ok "empty ls (text and JSON)"

mounts=$(ctl prepare a --label team=blue --label x=1)
read -r type source options <<<"$mounts"
[ "$type" = ext4 ] && [ -b "$source" ] && [ "$options" = rw ] || fail "prepare output: $mounts"
[ "$(ctl mounts a)" = "$mounts" ] || fail "mounts differs from prepare: $(ctl mounts a)"
ctl mounts a --json | jq -e --arg src "$source" \
  'length == 1 and .[0].type == "ext4" and .[0].source == $src and .[0].options == ["rw"]' >/dev/null ||
  fail "mounts --json: $(ctl mounts a --json)"
ok "prepare --label; prepare prints '<type> <source> <options>'; mounts agrees; mounts --json"

ctl info a --json | jq -e '.labels == {"team": "blue", "x": "1"} and .kind == "active"' >/dev/null ||
  fail "labels of a: $(ctl info a --json)"
mkdir "$work/mnt"
mount -t "$type" -o "$options" "$source" "$work/mnt"
head -c 3M /dev/urandom >"$work/mnt/blob"
umount "$work/mnt"
ctl commit c1 a --label stage=one
ctl prepare b c1 >/dev/null
ctl view v c1 --json | jq -e '.[0].options | index("ro") != null' >/dev/null || fail "view is not ro"
ok "commit, prepare on a parent, view --json is ro"

ctl info c1
ctl info c1 --json | jq -e '.name == "c1" and .parent == "" and .kind == "committed"
  and .labels == {"stage": "one"} and (.created_at | test("^[0-9]{4}-"))' >/dev/null ||
  fail "info --json: $(ctl info c1 --json)"
ctl info b --json | jq -e '.parent == "c1" and .kind == "active"' >/dev/null || fail "info b"
ctl info v | grep -q "^kind: *view$" || fail "info v text: $(ctl info v)"
ok "info (text and JSON, labels, kinds)"

ctl ls
ctl ls --json | jq -e 'map(.name) == ["b", "c1", "v"] and (map(.kind) == ["active", "committed", "view"])' >/dev/null ||
  fail "ls --json: $(ctl ls --json)"
[ "$(ctl ls | sed -n 3p | awk '{print $1, $2}')" = "c1 committed" ] || fail "ls text: $(ctl ls)"
ok "ls (text and JSON)"

tree=$(ctl tree)
echo "$tree"
[ "$tree" = "$(printf 'c1 [committed]\n|-- b [active]\n`-- v [view]')" ] || fail "tree shape"
ok "tree"

ctl usage
ctl usage c1 --json | jq -e '.name == "c1" and .size >= 3145728 and .inodes > 0' >/dev/null ||
  fail "usage c1: $(ctl usage c1 --json)"
ctl usage --json | jq -e '(.snapshots | length) == 3 and .total_size == (.snapshots | map(.size) | add)' >/dev/null ||
  fail "usage --json: $(ctl usage --json)"
ok "usage of one and of all (JSON totals add up)"

expect_error NotFound info nosuch
expect_error NotFound mounts nosuch
expect_error NotFound prepare x nosuchparent
expect_error AlreadyExists prepare b c1
expect_error FailedPrecondition rm c1
if ctl prepare y --label novalue 2>"$work.err"; then fail "label without '=' accepted"; fi
grep -q "not KEY=VALUE" "$work.err" || fail "label error: $(cat "$work.err")"
ok "bad label refused: $(cat "$work.err")"

ctl rm v
ctl rm b
ctl rm c1
[ "$(ctl ls --json)" = "[]" ] || fail "snapshots left: $(ctl ls)"
ok "rm in child-first order leaves nothing"

echo "PASS: thinsnapctl client ($checks checks)"
