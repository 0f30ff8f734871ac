# shellcheck shell=bash
# Shared helpers of the crash tests (sourced by points.sh and random.sh; runs inside the test VM).
#
# The caller sets CTL and DAEMON (absolute paths) and calls crash_init <pool name>. A test keeps a
# model of what the daemon must hold:
#   KIND[key] = active | view | committed
#   SUM[key]  = checksum of the files in the snapshot (for the snapshots whose content is known)
# and verify_state checks the real system against it:
#   (a) `thinsnapctl check --json` (read-only, daemon running) is clean;
#   (b) the pool's thin ids (thin_ls on a metadata snapshot) equal the database's (SQLite read
#       directly: every snapshot plus the base device), the database holds no intent and no
#       unfinished snapshot, and there are exactly |model| + 1 ids;
#   (c) the daemon lists exactly the model's keys and kinds, and every known content is intact
#       (committed snapshots are read through a fresh View);
#   (d) the pool's active dm devices are exactly those of the active and view snapshots.
# pool_cycle covers (e): stop the daemon, tear the pool down, thin_check its metadata through a
# loop device, and bring the pool back.

unset THINSNAP_FAILPOINTS  # only the daemons we start with a failpoint get one

declare -A KIND=()
declare -A SUM=()
DPID=
DLOG=
DAEMON_STARTS=0

fail() {
  echo "crash: FAIL: $*" >&2
  if [ -n "${DLOG:-}" ] && [ -f "$DLOG" ]; then
    echo "crash: --- last daemon log ($DLOG) ---" >&2
    tail -n 30 "$DLOG" >&2
  fi
  exit 1
}
say() { echo "crash: [$SECONDS s] $*"; }

# crash_init POOL: fresh work directory and names; the pool itself is made by pool_create.
crash_init() {
  [ -e /dev/mapper/control ] || fail "no device-mapper here; run through tests/vm/run"
  [ -x "$CTL" ] || fail "$CTL is not executable"
  [ -x "$DAEMON" ] || fail "$DAEMON is not executable"
  POOL=$1
  WORK=$(mktemp -d "/tmp/crash-$POOL.XXXXXX")
  POOLDIR=$WORK/pool
  ROOT=$WORK/root
  SOCK=$WORK/thinsnapd.sock
  CONF=$WORK/thinsnapd.toml
  MNT=$WORK/mnt
  mkdir -p "$MNT"
  # Small devices: mkfs and fsck of the base are quick under TCG; 5% keeps Prepare allowed on the
  # small test pools however much the tests write.
  printf 'base_size = "256MiB"\nmin_free_space_percent = 5.0\n' >"$CONF"
  trap crash_cleanup EXIT
}

crash_cleanup() {
  set +e
  [ -z "$DPID" ] || kill -9 "$DPID" 2>/dev/null
  for m in $(awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null
  done
  dmsetup remove_all >/dev/null 2>&1
  for l in $(losetup -a -O NAME -n 2>/dev/null); do losetup -d "$l" 2>/dev/null; done
}

# A killed child stays a zombie until waited for, and kill -0 still reaches it.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}

ctl() { "$CTL" --socket "$SOCK" --timeout 120 "$@"; }

pool_create() {
  local data=${1:-1G} meta=${2:-64M}
  "$CTL" pool create --loop --dir "$POOLDIR" --data-size "$data" --meta-size "$meta" \
    --name "$POOL" >/dev/null || fail "pool create"
}

meta_loop() {
  local l
  l=$(losetup -n -O NAME -j "$POOLDIR/meta.img")
  [ -n "$l" ] || fail "no loop device on $POOLDIR/meta.img"
  echo "$l"
}

# --- the daemon ---

# start_daemon [FAILPOINTS]: starts thinsnapd and waits until it serves. Returns 1 (with DPID
# still set) if it exits first, e.g. killed by a failpoint during start-up.
start_daemon() {
  local fp=${1:-}
  DAEMON_STARTS=$((DAEMON_STARTS + 1))
  DLOG=$WORK/daemon.$DAEMON_STARTS.log
  rm -f "$SOCK"
  if [ -n "$fp" ]; then
    env THINSNAP_FAILPOINTS="$fp" "$DAEMON" --config "$CONF" --root "$ROOT" --socket "$SOCK" \
      --pool "$POOL" >"$DLOG" 2>&1 &
  else
    "$DAEMON" --config "$CONF" --root "$ROOT" --socket "$SOCK" --pool "$POOL" >"$DLOG" 2>&1 &
  fi
  DPID=$!
  say "thinsnapd started${fp:+ with $fp}"
  local i
  for i in $(seq 1 1200); do
    alive "$DPID" || return 1
    if [ -S "$SOCK" ] && "$CTL" --socket "$SOCK" --timeout 10 ls >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "thinsnapd did not serve within 120 s: $(ps -o pid,stat,wchan:30,args -p "$DPID")"
}

start_daemon_ok() { start_daemon "$@" || fail "thinsnapd exited during start-up: $(tail -n 3 "$DLOG")"; }

stop_daemon() {
  kill -TERM "$DPID"
  local rc=0
  wait "$DPID" || rc=$?
  DPID=
  [ "$rc" = 0 ] || fail "thinsnapd exited $rc on SIGTERM"
}

# expect_killed WHAT: the daemon must die of SIGKILL (a failpoint's), within 60 s.
expect_killed() {
  local i
  for i in $(seq 1 600); do
    alive "$DPID" || break
    sleep 0.1
  done
  alive "$DPID" && fail "$1: thinsnapd still running; the failpoint was not hit"
  local rc=0
  wait "$DPID" || rc=$?
  DPID=
  [ "$rc" = 137 ] || fail "$1: thinsnapd exited $rc, expected 137 (SIGKILL)"
}

# The one line the daemon logs about its start-up reconciliation.
reconcile_line() { grep -Eo 'reconcile( repaired)?: .*' "$DLOG" | head -n 1; }

# --- content ---

tree_sum() {
  (cd "$1" && find . -path ./lost+found -prune -o -type f -print0 | sort -z |
    xargs -0 -r sha256sum) | sha256sum | cut -c1-16
}

device_of() { ctl mounts "$1" | awk 'NR == 1 { print $2 }'; }

# write_content KEY TAG: mounts active KEY, adds files, unmounts; records SUM[KEY].
write_content() {
  local key=$1 tag=$2 dev
  dev=$(device_of "$key")
  [ -b "$dev" ] || fail "device $dev of $key is not a block device"
  mount "$dev" "$MNT" || fail "mount $dev ($key)"
  echo "$tag" >"$MNT/tag-$tag"
  head -c 192K /dev/urandom >"$MNT/blob-$tag"
  SUM[$key]=$(tree_sum "$MNT")
  umount "$MNT" || fail "umount $dev ($key)"
}

# read_sum KEY: checksum of KEY's files, read-only (a View for a committed snapshot).
read_sum() {
  local key=$1 dev view=
  if [ "${KIND[$key]}" = committed ]; then
    view="verify-view-$RANDOM$RANDOM"
    ctl view "$view" "$key" >/dev/null || fail "view of $key for reading"
    dev=$(device_of "$view")
  else
    dev=$(device_of "$key")
  fi
  mount -o ro "$dev" "$MNT" || fail "mount -o ro $dev ($key)"
  tree_sum "$MNT"
  umount "$MNT" || fail "umount $dev"
  [ -z "$view" ] || ctl rm "$view" || fail "rm $view"
}

# --- verification against the model ---

pool_thin_ids() {
  local loop out
  loop=$(meta_loop)
  dmsetup message "$POOL" 0 reserve_metadata_snap || fail "reserve_metadata_snap"
  out=$(thin_ls --metadata-snap --no-headers -o DEV "$loop") || {
    dmsetup message "$POOL" 0 release_metadata_snap
    fail "thin_ls on $loop"
  }
  dmsetup message "$POOL" 0 release_metadata_snap || fail "release_metadata_snap"
  tr -d ' ' <<<"$out" | sed '/^$/d' | sort -n
}

db() { sqlite3 -readonly "$ROOT/metadata.db" "$1"; }

active_devices() { dmsetup ls | awk -v p="$POOL-thin-" 'index($1, p) == 1 { print $1 }' | sort; }

verify_state() {
  local label=$1 out rc=0 key
  say "verify: $label"
  # (a)
  out=$("$CTL" check --json --root "$ROOT" --pool "$POOL" 2>"$WORK/check.err") || rc=$?
  [ "$rc" = 0 ] || fail "$label: thinsnapctl check exited $rc: $out $(cat "$WORK/check.err")"
  jq -e '.clean and .found.clean and (.errors | length == 0)' <<<"$out" >/dev/null ||
    fail "$label: check is not clean: $out"
  # (c) keys and kinds
  local want got
  want=$(for key in "${!KIND[@]}"; do echo "$key ${KIND[$key]}"; done | sort)
  got=$(ctl ls --json | jq -r '.[] | "\(.name) \(.kind)"' | sort)
  [ "$want" = "$got" ] || fail "$label: snapshots differ from the model: want [$want] got [$got]"
  # (b)
  local pool_ids db_ids
  pool_ids=$(pool_thin_ids)
  db_ids=$(db 'SELECT thin_id FROM snapshots UNION ALL SELECT thin_id FROM base_device
    UNION ALL SELECT thin_id FROM grown_origins' | sort -n)
  [ "$pool_ids" = "$db_ids" ] || fail "$label: pool thin ids [$(echo $pool_ids)] != database [$(echo $db_ids)]"
  local grown
  grown=$(db 'SELECT count(*) FROM grown_origins')
  [ "$(wc -l <<<"$db_ids")" = $((${#KIND[@]} + 1 + grown)) ] ||
    fail "$label: $(wc -l <<<"$db_ids") thin ids for ${#KIND[@]} snapshots + base + $grown grown origin(s)"
  [ "$(db 'SELECT (SELECT count(*) FROM intents) || "/" || (SELECT count(*) FROM snapshots WHERE ready = 0)')" = 0/0 ] ||
    fail "$label: intents or unfinished snapshots left: $(db 'SELECT * FROM intents')"
  [ "$(jq -r '.pool_thin_ids[]' <<<"$out" | sort -n)" = "$pool_ids" ] ||
    fail "$label: check's pool_thin_ids differ from thin_ls: $out"
  # (d)
  want=$(for key in "${!KIND[@]}"; do
    [ "${KIND[$key]}" = committed ] || basename "$(device_of "$key")"
  done | sort)
  got=$(active_devices)
  [ "$want" = "$got" ] || fail "$label: active devices [$(echo $got)], expected [$(echo $want)]"
  # (c) content
  for key in "${!SUM[@]}"; do
    [ "$(read_sum "$key")" = "${SUM[$key]}" ] || fail "$label: content of $key changed"
  done
  [ "$(active_devices)" = "$want" ] || fail "$label: reading content left devices active: $(active_devices)"
}

# pool_cycle LABEL: (e) with the daemon running: stop it, tear down the pool (its thin devices
# too), thin_check the metadata through a loop device, re-activate the pool. The daemon stays
# stopped; its next start re-activates the active and view devices.
pool_cycle() {
  say "pool cycle: $1"
  stop_daemon
  "$CTL" pool destroy --dir "$POOLDIR" --force >/dev/null || fail "$1: pool destroy"
  local loop
  loop=$(losetup -f --show "$POOLDIR/meta.img") || fail "$1: losetup"
  thin_check "$loop" >"$WORK/thin_check.out" 2>&1 || {
    losetup -d "$loop"
    fail "$1: thin_check: $(cat "$WORK/thin_check.out")"
  }
  losetup -d "$loop"
  "$CTL" pool activate --dir "$POOLDIR" >/dev/null || fail "$1: pool activate"
}

# seed: two committed layers with content (c1, c2 on c1), an active snapshot with content (act)
# and a view of c1 (v), made by a daemon without failpoints.
seed() {
  ctl prepare s1 >/dev/null || fail "seed prepare s1"
  KIND[s1]=active
  write_content s1 one
  ctl commit c1 s1 || fail "seed commit c1"
  unset 'KIND[s1]'
  KIND[c1]=committed SUM[c1]=${SUM[s1]}
  unset 'SUM[s1]'
  ctl prepare s2 c1 >/dev/null || fail "seed prepare s2"
  KIND[s2]=active
  write_content s2 two
  ctl commit c2 s2 || fail "seed commit c2"
  unset 'KIND[s2]'
  KIND[c2]=committed SUM[c2]=${SUM[s2]}
  unset 'SUM[s2]'
  ctl prepare act c2 >/dev/null || fail "seed prepare act"
  KIND[act]=active
  write_content act act
  ctl view v c1 >/dev/null || fail "seed view v"
  KIND[v]=view SUM[v]=${SUM[c1]}
}
