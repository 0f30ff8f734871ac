# shellcheck shell=bash
# Runs thinsnap's boot sequence the way systemd would from the shipped units (sourced, not run):
# the commands come from the unit files themselves, so a change to deploy/ is what gets tested.
#
#   boot_sequence loop                # deploy/thinsnap-pool.service, thinsnapd, containerd
#   boot_sequence lvm VG              # deploy/thinsnap-vg@.service (instance VG), thinsnapd, containerd
#   boot_sequence loop "" nocontainerd # the same without containerd
#
# For a oneshot unit: ConditionPathExists= is honoured, then every ExecStartPre= and ExecStart=
# runs in order ("-" prefix: failure ignored; %i/%I: the instance). For the Type=notify units
# (thinsnapd, and Debian's own /lib/systemd/system/containerd.service): StateDirectory= and
# RuntimeDirectory= are created, ExecStart= runs in the background with $NOTIFY_SOCKET pointing at
# tests/boot/notify-listener.py, and the next unit starts only after READY=1 arrives, as
# systemd orders `After=`/`Before=`. The order itself is checked against the units' After=/Before=.
# Sets THINSNAPD_PID and CONTAINERD_PID, and BOOT_POOL_MS / BOOT_THINSNAPD_MS (how long the pool
# unit took, and thinsnapd from its start to READY=1); boot_stop stops them (containerd first).
#
# Needs: BOOT_DEPLOY (the deploy/ directory), BOOT_LOGDIR (writable), and the binaries where the
# units expect them (/usr/local/sbin/thinsnapd, /usr/local/sbin/thinsnapctl).

THINSNAPD_PID=
CONTAINERD_PID=
BOOT_CONTAINERD_UNIT=${BOOT_CONTAINERD_UNIT:-/lib/systemd/system/containerd.service}

boot_fail() {
  echo "boot-sequence: FAIL: $*" >&2
  exit 1
}
boot_log() { echo "boot-sequence: [$(date +%T)] $*"; }

# unit_values FILE KEY: the values of KEY= in FILE, in order.
unit_values() {
  sed -n "s/^$2=//p" "$1"
}

# unit_exec LINE INSTANCE: runs one Exec line, split into words (the units use no quoting).
unit_exec() {
  local line=$1 instance=$2 ignore=0
  case "$line" in
    -*) ignore=1 line=${line#-} ;;
    [@:+!]*) boot_fail "Exec prefix ${line:0:1} is not supported by this runner: $line" ;;
  esac
  case "$line" in
    *\"* | *\'* | *\$* | *\\*) boot_fail "Exec line needs shell-style parsing, which this runner does not do: $line" ;;
  esac
  line=${line//%I/$instance}
  line=${line//%i/$instance}
  local -a argv
  read -r -a argv <<<"$line"
  boot_log "exec: ${argv[*]}"
  if ! "${argv[@]}"; then
    [ "$ignore" = 1 ] || return 1
    boot_log "(failure ignored: '-' prefix)"
  fi
}

# unit_oneshot FILE [INSTANCE]
unit_oneshot() {
  local file=$1 instance=${2:-} cond line
  cond=$(unit_values "$file" ConditionPathExists)
  if [ -n "$cond" ] && [ ! -e "$cond" ]; then
    boot_log "$(basename "$file"): skipped, $cond does not exist"
    return 0
  fi
  while IFS= read -r line; do
    unit_exec "$line" "$instance" || boot_fail "$(basename "$file"): ExecStartPre failed: $line"
  done < <(unit_values "$file" ExecStartPre)
  while IFS= read -r line; do
    unit_exec "$line" "$instance" || boot_fail "$(basename "$file"): ExecStart failed: $line"
  done < <(unit_values "$file" ExecStart)
}

# unit_notify FILE PIDVAR: starts a Type=notify unit and waits for READY=1.
unit_notify() {
  local file=$1 pidvar=$2 name dir line
  name=$(basename "$file" .service)
  [ "$(unit_values "$file" Type)" = notify ] || boot_fail "$name: expected Type=notify"
  while IFS= read -r line; do
    unit_exec "$line" "" || boot_fail "$name: ExecStartPre failed: $line"
  done < <(unit_values "$file" ExecStartPre)
  for dir in $(unit_values "$file" StateDirectory); do
    mkdir -p "/var/lib/$dir" && chmod "$(unit_values "$file" StateDirectoryMode | head -n1)" "/var/lib/$dir"
  done
  for dir in $(unit_values "$file" RuntimeDirectory); do
    mkdir -p "/run/$dir" && chmod "$(unit_values "$file" RuntimeDirectoryMode | head -n1)" "/run/$dir"
  done
  local notify_sock=$BOOT_LOGDIR/$name.notify notify_out=$BOOT_LOGDIR/$name.notified
  rm -f "$notify_sock" "$notify_out"
  python3 "$BOOT_HERE/notify-listener.py" "$notify_sock" "$notify_out" &
  local listener=$!
  BOOT_LISTENERS+=("$listener")
  local _
  for _ in $(seq 100); do
    grep -q '^LISTENING=1$' "$notify_out" 2>/dev/null && break
    sleep 0.05
  done
  grep -q '^LISTENING=1$' "$notify_out" || boot_fail "$name: notify listener did not start"
  local -a argv
  line=$(unit_values "$file" ExecStart)
  read -r -a argv <<<"$line"
  boot_log "exec (Type=notify): ${argv[*]}"
  NOTIFY_SOCKET=$notify_sock "${argv[@]}" >"$BOOT_LOGDIR/$name.log" 2>&1 &
  local pid=$!
  printf -v "$pidvar" %s "$pid"
  local start=$SECONDS
  until grep -q '^READY=1$' "$notify_out"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$BOOT_LOGDIR/$name.log" >&2
      boot_fail "$name exited before READY=1"
    fi
    [ $((SECONDS - start)) -lt 300 ] || boot_fail "$name: no READY=1 within 300 s"
    sleep 0.05
  done
  boot_log "$name: READY=1 after $((SECONDS - start)) s ($(grep '^STATUS=' "$notify_out" | tail -n1))"
}

# The order this runner follows must be the one the units declare.
boot_check_order() {
  local pool_unit=$1 d=$BOOT_DEPLOY
  grep -q '^Before=thinsnapd.service$' "$pool_unit" || boot_fail "$pool_unit is not ordered Before=thinsnapd.service"
  grep -Eq '^After=.*thinsnap-pool.service' "$d/thinsnapd.service" || boot_fail "thinsnapd.service is not After=thinsnap-pool.service"
  grep -q '^Before=containerd.service$' "$d/thinsnapd.service" || boot_fail "thinsnapd.service is not Before=containerd.service"
}

boot_sequence() {
  local kind=$1 vg=${2:-} with_containerd=${3:-containerd} pool_unit
  BOOT_LISTENERS=()
  mkdir -p "$BOOT_LOGDIR"
  case "$kind" in
    loop) pool_unit=$BOOT_DEPLOY/thinsnap-pool.service ;;
    lvm) pool_unit=$BOOT_DEPLOY/thinsnap-vg@.service ;;
    *) boot_fail "boot_sequence loop | lvm VG" ;;
  esac
  boot_check_order "$pool_unit"
  local t0 t1
  t0=$(date +%s%N)
  unit_oneshot "$pool_unit" "$vg"
  t1=$(date +%s%N)
  unit_notify "$BOOT_DEPLOY/thinsnapd.service" THINSNAPD_PID
  # Milliseconds: the pool unit, then thinsnapd from its start to READY=1.
  BOOT_POOL_MS=$(((t1 - t0) / 1000000))
  BOOT_THINSNAPD_MS=$((($(date +%s%N) - t1) / 1000000))
  BOOT_SERVING_SECONDS=$(((BOOT_POOL_MS + BOOT_THINSNAPD_MS) / 1000))
  [ "$with_containerd" = nocontainerd ] || unit_notify "$BOOT_CONTAINERD_UNIT" CONTAINERD_PID
}

# boot_stop: containerd, then thinsnapd (which must exit 0 on SIGTERM), then the listeners.
boot_stop() {
  local rc=0 pid
  if [ -n "$CONTAINERD_PID" ]; then
    kill -TERM "$CONTAINERD_PID"
    wait "$CONTAINERD_PID" || true # containerd exits non-zero on SIGTERM by design
    CONTAINERD_PID=
  fi
  if [ -n "$THINSNAPD_PID" ]; then
    kill -TERM "$THINSNAPD_PID"
    wait "$THINSNAPD_PID" || rc=$?
    THINSNAPD_PID=
    [ "$rc" = 0 ] || boot_fail "thinsnapd exited $rc on SIGTERM: $(tail -n 5 "$BOOT_LOGDIR/thinsnapd.log")"
    grep -q '^STOPPING=1$' "$BOOT_LOGDIR/thinsnapd.notified" || boot_fail "thinsnapd sent no STOPPING=1"
  fi
  for pid in "${BOOT_LISTENERS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BOOT_LISTENERS=()
}

BOOT_HERE=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
