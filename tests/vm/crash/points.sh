#!/usr/bin/env bash
# Fault injection at every failpoint: thinsnapd dies of SIGKILL exactly there, and restarting it
# (or `thinsnapctl check --repair` / `gc`) must leave nothing lost and nothing leaked. Runs inside
# the test VM:
#   tests/vm/run -- tests/vm/crash/points.sh <thinsnapctl> <thinsnapd>
#
# Each run: start thinsnapd with THINSNAP_FAILPOINTS=<point>=kill, trigger the operation through
# it, and require SIGKILL (exit 137). A read-only `thinsnapctl check` of the crashed state must
# report exactly the half-done operation. After the repair, verify_state (lib.sh) checks (a) a
# clean check, (b) pool thin ids == database ids, (c) the snapshots and their content, (d) the
# active dm devices; then the operation is retried and must succeed with its data (f), and
# pool_cycle tears the pool down and thin_checks its metadata (e). The base-device points run on fresh pools first;
# the others share one pool seeded with committed layers, an active snapshot and a view.
set -euo pipefail

CTL=$(readlink -f "${1:?usage: $0 <thinsnapctl> <thinsnapd>}")
DAEMON=$(readlink -f "${2:?usage: $0 <thinsnapctl> <thinsnapd>}")
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

crash_init crashpool
start_s=$(date +%s)
RUNS=0
RESULTS=()

# check_crashed LABEL C D S I: a read-only check of the crashed state (daemon down) must report
# exactly C unfinished creates, D unfinished deletes, S stray devices and I inactive devices, and
# nothing else; exit 0 only if all are zero.
check_crashed() {
  local label=$1 c=$2 d=$3 s=$4 i=$5 out rc=0 want_rc=1
  [ "$c$d$s$i" = 0000 ] && want_rc=0
  out=$("$CTL" check --json --root "$ROOT" --pool "$POOL" 2>"$WORK/check.err") || rc=$?
  [ "$rc" = "$want_rc" ] || fail "$label: check of the crashed state exited $rc, want $want_rc: $out"
  jq -e --argjson c "$c" --argjson d "$d" --argjson s "$s" --argjson i "$i" '
    .found.unfinished_creates == $c and .found.unfinished_deletes == $d
    and (.found.stray_devices | length) == $s and (.found.inactive_devices | length) == $i
    and (.found.orphan_ids | length) == 0 and (.found.lost | length) == 0
    and (.found.problems | length) == 0 and (.errors | length) == 0' <<<"$out" >/dev/null ||
    fail "$label: check of the crashed state: $out"
  FOUND=$(jq -c '.found | del(.clean) | with_entries(select(.value != 0 and .value != []))' <<<"$out")
}

# repair_with LABEL REPAIRER EXPECT_REPAIR: brings the daemon back after a crash. REPAIRER daemon:
# its start-up must log a repair (or agreement, if nothing was half done); check / gc: that
# command repairs (exit 0, clean afterwards) and the daemon then finds nothing to do.
repair_with() {
  local label=$1 repairer=$2 expect_repair=$3 out rc=0
  case "$repairer" in
    daemon) ;;
    check | gc)
      local cmd=(check --repair)
      [ "$repairer" = gc ] && cmd=(gc)
      out=$("$CTL" "${cmd[@]}" --json --root "$ROOT" --pool "$POOL" 2>"$WORK/check.err") || rc=$?
      [ "$rc" = 0 ] || fail "$label: ${cmd[*]} exited $rc: $out $(cat "$WORK/check.err")"
      jq -e '.clean and .remaining.clean' <<<"$out" >/dev/null || fail "$label: ${cmd[*]}: $out"
      expect_repair=no
      ;;
  esac
  start_daemon_ok
  local line
  line=$(reconcile_line)
  if [ "$expect_repair" = yes ]; then
    [[ "$line" == "reconcile repaired: "* ]] || fail "$label: start-up did not repair: '$line'"
  else
    [ "$line" = "reconcile: metadata and pool agree" ] || fail "$label: start-up: '$line'"
  fi
  RECONCILED=$line
}

record() { RESULTS+=("$(printf '%-34s %-8s %s' "$1" "$2" "$3")"); }

# --- base device: killed while thinsnapd creates it at its first start ---
run_base_point() {
  local fp=$1 n=$((RUNS += 1)) strays=0
  [ "$fp" = base.after_format ] && strays=1  # the base is still active for mkfs
  pool_create
  if start_daemon "$fp=kill"; then fail "$fp: thinsnapd started although its base failpoint kills"; fi
  expect_killed "$fp"
  check_crashed "$fp" 1 0 "$strays" 0
  repair_with "$fp" daemon yes
  verify_state "$fp: after restart"
  # Retry: the base now exists and a root snapshot formatted from it works.
  ctl prepare "b$n" >/dev/null || fail "$fp: prepare of a root snapshot"
  KIND[b$n]=active
  write_content "b$n" "b$n"
  ctl commit "bc$n" "b$n" || fail "$fp: commit"
  unset "KIND[b$n]"
  KIND[bc$n]=committed SUM[bc$n]=${SUM[b$n]}
  unset "SUM[b$n]"
  [ "$(read_sum "bc$n")" = "${SUM[bc$n]}" ] || fail "$fp: content of bc$n"
  ctl rm "bc$n" || fail "$fp: rm"
  unset "KIND[bc$n]" "SUM[bc$n]"
  pool_cycle "$fp"
  "$CTL" pool destroy --dir "$POOLDIR" --delete-files >/dev/null || fail "$fp: pool destroy"
  rm -rf "$ROOT"
  record "$fp" start "found $FOUND; $RECONCILED; retried prepare+commit"
}

for fp in base.after_intent base.after_create base.after_format; do
  run_base_point "$fp"
  say "ok: $fp"
done

# --- every other point on one seeded pool ---
pool_create
start_daemon_ok
seed
verify_state "seeded"
say "seeded: ${!KIND[*]}"
pool_cycle seed

# max_size_label N: a max-size above the 256 MiB base, another for every run, so that each sized
# Prepare grows its origin afresh instead of snapshotting one grown by an earlier run.
max_size_label() { echo "containerd.io/snapshot/max-size=$(((256 + 4 * $1) << 20))"; }

# run_point POINT OP C D S I [REPAIRER]: OP is prepare, prepare-sized (with a max-size label),
# view, commit or rm; C D S I what the crashed state must show (check_crashed).
run_point() {
  local fp=$1 op=$2 c=$3 d=$4 s=$5 i=$6 repairer=${7:-daemon} n=$((RUNS += 1)) key
  local label="$fp/$op" expect_repair=yes
  [ "$repairer" = daemon ] || label+=" ($repairer)"
  [ "$c$d$s$i" = 0000 ] && expect_repair=no
  case "$op" in
    prepare | prepare-sized | view) key=k$n ;;
    commit) key=w$n ;;
    rm) key=r$n ;;
  esac
  if [ "$op" = commit ] || [ "$op" = rm ]; then
    # The snapshot to commit or remove is made without the failpoint: some points (the pool's)
    # lie on the create path too.
    start_daemon_ok
    ctl prepare "$key" c2 >/dev/null || fail "$label: prepare $key"
    KIND[$key]=active
    write_content "$key" "$key"
    stop_daemon
  fi
  start_daemon_ok "$fp=kill"
  case "$op" in
    prepare | view)
      if ctl "$op" "$key" c2 >/dev/null 2>"$WORK/client.err"; then fail "$label: $op succeeded"; fi
      ;;
    prepare-sized)
      if ctl prepare "$key" c2 --label "$(max_size_label "$n")" >/dev/null 2>"$WORK/client.err"; then
        fail "$label: $op succeeded"
      fi
      ;;
    commit)
      if ctl commit "n$n" "$key" 2>"$WORK/client.err"; then fail "$label: commit succeeded"; fi
      ;;
    rm)
      # remove.after_intent lies inside the request. The rest of a removal runs in the
      # background reclaimer, after the client has had its answer: there the rm succeeds and the
      # daemon dies a moment later.
      if ctl rm "$key" 2>"$WORK/client.err" && [ "$fp" = remove.after_intent ]; then
        fail "$label: rm succeeded"
      fi
      # Every point of the remove path lies after the row was dropped.
      unset "KIND[$key]" "SUM[$key]"
      ;;
  esac
  expect_killed "$label (the client got: $(cat "$WORK/client.err"))"
  check_crashed "$label" "$c" "$d" "$s" "$i"
  repair_with "$label" "$repairer" "$expect_repair"
  verify_state "$label: after restart"

  local retried
  case "$op" in
    prepare | view)
      ctl "$op" "$key" c2 >/dev/null || fail "$label: retried $op failed"
      if [ "$op" = prepare ]; then
        KIND[$key]=active
        write_content "$key" "$key"
      else
        KIND[$key]=view SUM[$key]=${SUM[c2]}
      fi
      retried="$op $key"
      ;;
    prepare-sized)
      ctl prepare "$key" c2 --label "$(max_size_label "$n")" >/dev/null ||
        fail "$label: retried $op failed"
      KIND[$key]=active
      write_content "$key" "$key"
      local bytes want_bytes
      bytes=$(blockdev --getsize64 "$(device_of "$key")")
      want_bytes=$(((256 + 4 * n) << 20))
      [ "$bytes" = "$want_bytes" ] || fail "$label: $key's device has $bytes bytes, want $want_bytes"
      retried="$op $key ($bytes bytes)"
      ;;
    commit)
      ctl commit "n$n" "$key" || fail "$label: retried commit failed"
      KIND[n$n]=committed SUM[n$n]=${SUM[$key]}
      unset "KIND[$key]" "SUM[$key]"
      key=n$n
      retried="commit n$n"
      ;;
    rm)
      local err
      if err=$(ctl rm "$key" 2>&1); then fail "$label: $key still removable after the crash"; fi
      grep -q NotFound <<<"$err" || fail "$label: rm again: $err"
      ctl prepare "$key" c2 >/dev/null || fail "$label: prepare $key again"
      KIND[$key]=active
      write_content "$key" "$key"
      retried="rm (NotFound), prepare+rm $key"
      ;;
  esac
  # The full verification runs after the next crash; here the retried snapshot must hold its data.
  [ "$(read_sum "$key")" = "${SUM[$key]}" ] || fail "$label: content of retried $key"
  ctl rm "$key" || fail "$label: rm $key"
  unset "KIND[$key]" "SUM[$key]"
  pool_cycle "$label"
  record "$label" "$op" "found $FOUND; $RECONCILED; retried $retried"
  say "ok: $label"
}

#         point                          op      C D S I
run_point create.after_intent            prepare 1 0 0 0
run_point create.after_snap              prepare 1 0 0 0
run_point create.after_activate          prepare 1 0 1 0
run_point create.after_intent            view    1 0 0 0
run_point create.after_snap              view    1 0 0 0
run_point create.after_activate          view    1 0 1 0
# A sized Prepare first grows its origin once (grown_origins.h): the grown device's create
# intent comes on top of the snapshot's own; after the grow it is still active.
run_point grow.after_intent              prepare-sized 2 0 0 0
run_point grow.after_snap                prepare-sized 2 0 0 0
run_point grow.after_grow                prepare-sized 2 0 1 0
# Killed while the trim holds a metadata snapshot: the next reserve (the reconciler's) drops it.
run_point commit.after_metadata_read     commit  0 0 0 0
run_point commit.before_deactivate       commit  0 0 0 0
run_point commit.after_deactivate        commit  0 0 0 1
run_point remove.after_intent            rm      0 1 1 0
# The reclaim deactivates first (never an open device), then reads what the device wrote itself
# from a metadata snapshot, discards that through a private activation, and deletes.
run_point remove.after_deactivate        rm      0 1 0 0
run_point reclaim.after_metadata_read    rm      0 1 0 0
run_point reclaim.after_own_ranges          rm      0 1 0 0
run_point reclaim.after_partial_discard  rm      0 1 0 0
run_point reclaim.after_discard          rm      0 1 0 0
run_point remove.after_delete            rm      0 1 0 0
# The same repairs done on demand instead of by start-up.
run_point create.after_activate          prepare 1 0 1 0 check
run_point commit.after_deactivate        commit  0 0 0 1 check
run_point remove.after_intent            rm      0 1 1 0 gc
run_point create.after_snap              view    1 0 0 0 gc

# --- thinsnapctl check itself: refusals, usage errors, and snapshots that lost their device ---
start_daemon_ok
for cmd in "check --repair" gc; do
  rc=0
  # shellcheck disable=SC2086
  "$CTL" $cmd --root "$ROOT" --pool "$POOL" >/dev/null 2>"$WORK/check.err" || rc=$?
  [ "$rc" = 1 ] && grep -q "thinsnapd is running" "$WORK/check.err" ||
    fail "$cmd with thinsnapd running: exit $rc, $(cat "$WORK/check.err")"
done
rc=0
"$CTL" check --root "$ROOT" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "check without --pool exited $rc, want 2"
rc=0
"$CTL" check --root "$WORK/nowhere" --pool "$POOL" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "check of a root without metadata exited $rc, want 2"
[ ! -e "$WORK/nowhere" ] || fail "check created $WORK/nowhere"
"$CTL" check --root "$ROOT" --pool "$POOL" >"$WORK/check.out" || fail "check: $(cat "$WORK/check.out")"
grep -qx "check: clean" "$WORK/check.out" || fail "check (text): $(cat "$WORK/check.out")"
say "ok: check refuses repairs while thinsnapd runs; usage errors exit 2; text output"

ctl prepare lost1 c2 >/dev/null || fail "prepare lost1"
stop_daemon
lost_id=$(db "SELECT thin_id FROM snapshots WHERE key = 'lost1'")
dmsetup remove "$POOL-thin-$lost_id"
dmsetup message "$POOL" 0 "delete $lost_id"
rc=0
out=$("$CTL" check --json --root "$ROOT" --pool "$POOL" 2>/dev/null) || rc=$?
[ "$rc" = 1 ] && jq -e '.found.lost == ["lost1"]' <<<"$out" >/dev/null ||
  fail "check of a snapshot without device: exit $rc: $out"
if start_daemon; then fail "thinsnapd started with a snapshot whose device is gone"; fi
rc=0
wait "$DPID" || rc=$?
DPID=
[ "$rc" = 1 ] && grep -q "have no thin device" "$DLOG" || fail "thinsnapd: exit $rc: $(cat "$DLOG")"
rc=0
out=$("$CTL" gc --json --root "$ROOT" --pool "$POOL" 2>/dev/null) || rc=$?
[ "$rc" = 1 ] && jq -e '.remaining.lost == ["lost1"] and .dropped == []' <<<"$out" >/dev/null ||
  fail "gc must not drop lost snapshots: exit $rc: $out"
out=$("$CTL" check --repair --json --root "$ROOT" --pool "$POOL") ||
  fail "check --repair of a lost snapshot: $out"
jq -e '.dropped == ["lost1"] and .remaining.clean' <<<"$out" >/dev/null || fail "check --repair: $out"
start_daemon_ok
verify_state "after dropping a lost snapshot"
say "ok: lost snapshot reported by check, refused by thinsnapd, kept by gc, dropped by check --repair"
pool_cycle final

echo
echo "crash: per-point results ($RUNS runs, $DAEMON_STARTS daemon starts, $(($(date +%s) - start_s)) s):"
printf '  %s\n' "${RESULTS[@]}"
echo "crash: PASS"
