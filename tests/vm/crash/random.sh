#!/usr/bin/env bash
# Randomised crash test: several clients run Prepare/write/Commit/View/Remove concurrently while
# thinsnapd is killed with SIGKILL at a random instant (possibly during its start-up
# reconciliation); then it restarts and everything is verified. Runs inside the test VM:
#   tests/vm/run -- tests/vm/crash/random.sh <thinsnapctl> <thinsnapd> [ITERATIONS] [CLIENTS]
#
# Every client journals each call and its outcome. A call that failed may have taken effect or
# not (the kill may have cut the reply), so the journal gives each key a set of allowed states;
# after the restart every key must be in one of them (and a failed Commit must have happened
# exactly once: key active and name absent, or the reverse), no unknown key may exist, and
# verify_state (lib.sh) checks (a)-(d) with the content of every snapshot whose data is known,
# including the seeded committed layers. pool_cycle then thin_checks the metadata (e), and the
# next iteration's operations on the same pool are the retry (f).
set -euo pipefail

CTL=$(readlink -f "${1:?usage: $0 <thinsnapctl> <thinsnapd> [ITERATIONS] [CLIENTS]}")
DAEMON=$(readlink -f "${2:?usage: $0 <thinsnapctl> <thinsnapd> [ITERATIONS] [CLIENTS]}")
ITERATIONS=${3:-20}
CLIENTS=${4:-4}
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

crash_init crashrand
pool_create 2G 64M
start_daemon_ok
seed
verify_state "seeded"
declare -A SEED_KIND=() SEED_SUM=()
for k in "${!KIND[@]}"; do SEED_KIND[$k]=${KIND[$k]}; done
for k in "${!SUM[@]}"; do SEED_SUM[$k]=${SUM[$k]}; done
pool_cycle seed

# client C IT: random operations until $WORK/stop exists; journal lines
#   prepare ok|failed KEY PARENT / write KEY SUM / commit ok|failed KEY NAME /
#   view ok|failed KEY PARENT / rm ok|failed KEY / FAIL message
client() {
  local c=$1 it=$2 j=0 key name parent dev sum
  local mnt=$WORK/mnt.$c journal=$WORK/journal.$it.$c
  local committed=(c1 c2)
  mkdir -p "$mnt"
  : >"$journal"
  # Calls start once the daemon serves, so that a failed call means one cut by the kill.
  until [ -e "$WORK/stop" ] || ctl ls >/dev/null 2>&1; do sleep 0.1; done
  while [ ! -e "$WORK/stop" ]; do
    j=$((j + 1))
    key=a$it.$c.$j
    parent=${committed[RANDOM % ${#committed[@]}]}
    if [ $((RANDOM % 4)) -lt 3 ]; then
      if ! ctl prepare "$key" "$parent" >/dev/null 2>&1; then
        echo "prepare failed $key $parent" >>"$journal"
        sleep 0.2
        continue
      fi
      echo "prepare ok $key $parent" >>"$journal"
      # A prepared device stays active whatever happens to the daemon afterwards.
      dev=$(device_of "$key" 2>/dev/null) || continue
      if ! mount "$dev" "$mnt"; then
        echo "FAIL mount $dev of prepared $key" >>"$journal"
        return
      fi
      echo "$key" >"$mnt/tag-$key"
      head -c 64K /dev/urandom >"$mnt/blob-$key"
      sum=$(tree_sum "$mnt")
      umount "$mnt" || { echo "FAIL umount $dev" >>"$journal"; return; }
      echo "write $key $sum" >>"$journal"
      name=n$key
      if ! ctl commit "$name" "$key" 2>/dev/null; then
        echo "commit failed $key $name" >>"$journal"
        continue
      fi
      echo "commit ok $key $name" >>"$journal"
      committed+=("$name")
      if [ $((RANDOM % 3)) = 0 ]; then
        if ctl rm "$name" 2>/dev/null; then
          echo "rm ok $name" >>"$journal"
          unset 'committed[-1]'
        else
          echo "rm failed $name" >>"$journal"
        fi
      fi
    else
      key=v$key
      if ! ctl view "$key" "$parent" >/dev/null 2>&1; then
        echo "view failed $key $parent" >>"$journal"
        sleep 0.2
        continue
      fi
      echo "view ok $key $parent" >>"$journal"
      if [ $((RANDOM % 2)) = 0 ]; then
        if ctl rm "$key" 2>/dev/null; then
          echo "rm ok $key" >>"$journal"
        else
          echo "rm failed $key" >>"$journal"
        fi
      fi
    fi
  done
}

# The actual state of every key ("absent" if the daemon does not list it).
declare -A ACTUAL=()
load_actual() {
  ACTUAL=()
  local name kind
  local listing
  listing=$(ctl ls --json | jq -r '.[] | "\(.name) \(.kind)"') || fail "ls"
  # (A here-string, not a process substitution: the guest has no /dev/fd.)
  while read -r name kind; do
    [ -z "$name" ] || ACTUAL[$name]=$kind
  done <<<"$listing"
}
state_of() { echo "${ACTUAL[$1]:-absent}"; }

# check_journals IT: replays the clients' journals into allowed states, compares them with the
# daemon's listing, and rebuilds the model (KIND, SUM) from what is there.
OPS_OK=0
OPS_FAILED=0
check_journals() {
  local it=$1 c op res key arg
  declare -A allow=() ksum=() pair=() vparent=()
  for c in $(seq 1 "$CLIENTS"); do
    local journal=$WORK/journal.$it.$c
    grep -q '^FAIL' "$journal" && fail "iteration $it client $c: $(grep '^FAIL' "$journal")"
    while read -r op res key arg; do
      case "$op $res" in
        "prepare ok") allow[$key]=" active " ;;
        "prepare failed") allow[$key]=" absent active " ;;
        "write "*) ksum[$res]=$key ;;  # "write KEY SUM"
        "commit ok") allow[$key]=" absent " allow[$arg]=" committed " ksum[$arg]=${ksum[$key]} ;;
        "commit failed")
          allow[$key]=" active absent " allow[$arg]=" absent committed " ksum[$arg]=${ksum[$key]}
          pair[$arg]=$key
          ;;
        "view ok") allow[$key]=" view " vparent[$key]=$arg ;;
        "view failed") allow[$key]=" absent view " vparent[$key]=$arg ;;
        "rm ok") allow[$key]=" absent " ;;
        "rm failed") allow[$key]="${allow[$key]}absent " ;;
        *) fail "journal $journal: bad line: $op $res $key $arg" ;;
      esac
      case "$res" in ok) OPS_OK=$((OPS_OK + 1)) ;; failed) OPS_FAILED=$((OPS_FAILED + 1)) ;; esac
    done <"$journal"
  done
  load_actual
  local name state
  for name in "${!ACTUAL[@]}"; do
    [ -n "${allow[$name]:-}" ] || [ -n "${SEED_KIND[$name]:-}" ] ||
      fail "iteration $it: unknown snapshot $name (${ACTUAL[$name]})"
  done
  for name in "${!allow[@]}"; do
    state=$(state_of "$name")
    [[ "${allow[$name]}" == *" $state "* ]] ||
      fail "iteration $it: $name is $state, allowed:${allow[$name]}"
  done
  for name in "${!pair[@]}"; do
    if { [ "$(state_of "$name")" = absent ] && [ "$(state_of "${pair[$name]}")" = absent ]; } ||
      { [ "$(state_of "$name")" != absent ] && [ "$(state_of "${pair[$name]}")" != absent ]; }; then
      fail "iteration $it: interrupted commit of ${pair[$name]} as $name happened $(
        [ "$(state_of "$name")" = absent ] && echo never || echo twice)"
    fi
  done
  # The model: seeds plus what is there, with every content that is known.
  KIND=() SUM=()
  for name in "${!ACTUAL[@]}"; do KIND[$name]=${ACTUAL[$name]}; done
  for name in "${!SEED_SUM[@]}"; do SUM[$name]=${SEED_SUM[$name]}; done
  for name in "${!ksum[@]}"; do
    [ "$(state_of "$name")" = absent ] || [ -z "${ksum[$name]}" ] || SUM[$name]=${ksum[$name]}
  done
  for name in "${!vparent[@]}"; do
    local p=${vparent[$name]}
    if [ "$(state_of "$name")" != absent ] && [ -n "${SEED_SUM[$p]:-${ksum[$p]:-}}" ]; then
      SUM[$name]=${SEED_SUM[$p]:-${ksum[$p]}}
    fi
  done
}

# Removes every snapshot but the seeds, children first.
remove_non_seeds() {
  local round name left
  for round in $(seq 1 20); do
    load_actual
    left=0
    for name in "${!ACTUAL[@]}"; do
      [ -z "${SEED_KIND[$name]:-}" ] || continue
      left=1
      ctl rm "$name" 2>/dev/null || true  # a parent goes in a later round
    done
    [ "$left" = 1 ] || break
  done
  load_actual
  [ "${#ACTUAL[@]}" = "${#SEED_KIND[@]}" ] || fail "could not remove: ${!ACTUAL[*]}"
  KIND=() SUM=()
  for name in "${!SEED_KIND[@]}"; do KIND[$name]=${SEED_KIND[$name]}; done
  for name in "${!SEED_SUM[@]}"; do SUM[$name]=${SEED_SUM[$name]}; done
}

KILLS_STARTUP=0
KILLS_SERVING=0
start_s=$SECONDS
for it in $(seq 1 "$ITERATIONS"); do
  rm -f "$WORK/stop"
  DAEMON_STARTS=$((DAEMON_STARTS + 1))
  DLOG=$WORK/daemon.$DAEMON_STARTS.log
  rm -f "$SOCK"
  "$DAEMON" --config "$CONF" --root "$ROOT" --socket "$SOCK" --pool "$POOL" >"$DLOG" 2>&1 &
  DPID=$!
  pids=()
  for c in $(seq 1 "$CLIENTS"); do
    client "$c" "$it" &
    pids+=($!)
  done
  # One kill in four lands in the first 3 s (start-up reconciliation under TCG), the rest while
  # the clients run.
  if [ $((RANDOM % 4)) = 0 ]; then kill_ms=$((RANDOM % 3000)); else kill_ms=$((3000 + RANDOM % 15000)); fi
  sleep "$((kill_ms / 1000)).$(printf '%03d' $((kill_ms % 1000)))"
  alive "$DPID" || fail "iteration $it: thinsnapd died before the kill: $(tail -n 5 "$DLOG")"
  kill -9 "$DPID"
  rc=0
  wait "$DPID" || rc=$?
  DPID=
  [ "$rc" = 137 ] || fail "iteration $it: thinsnapd exited $rc"
  if grep -q 'reconcile' "$DLOG" && [ -S "$SOCK" ]; then
    KILLS_SERVING=$((KILLS_SERVING + 1))
    when=serving
  else
    KILLS_STARTUP=$((KILLS_STARTUP + 1))
    when=start-up
  fi
  touch "$WORK/stop"
  for p in "${pids[@]}"; do wait "$p" || fail "iteration $it: client exited $?"; done

  start_daemon_ok
  check_journals "$it"
  say "iteration $it: killed after ${kill_ms} ms ($when); restart: $(reconcile_line); ${#KIND[@]} snapshots"
  verify_state "iteration $it"
  remove_non_seeds
  pool_cycle "iteration $it"
done

echo
echo "crash: randomised: $ITERATIONS iterations x $CLIENTS clients in $((SECONDS - start_s)) s;" \
  "kills during start-up: $KILLS_STARTUP, while serving: $KILLS_SERVING;" \
  "client calls: $OPS_OK succeeded, $OPS_FAILED failed (cut by the kill, or after it)"
echo "crash: PASS"
