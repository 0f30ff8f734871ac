# shellcheck shell=bash
# Shared pieces of the in-VM containerd test scripts (sourced, not run): a
# loop-backed dm-thin pool in guest tmpfs, a thinsnapd serving it, a
# containerd 1.6 using it as proxy snapshotter "thinsnap", and their teardown.
#
# Test scripts may drive dmsetup directly; product code never does.
#
# Usage:
#   source tests/e2e/testbed.sh
#   testbed_init NAME BUILD_DIR   # work dir in /tmp, EXIT trap, paths below
#   pool_create DATA_SIZE META_SIZE
#   daemon_start
#   ...                           # $THINSNAP_SOCK serves the pool
#   containerd_require_tools      # containerd, ctr, runc and the shim are installed
#   containerd_start [TOML...]    # extra config appended; ctr_ talks to it at $CD_SOCK
#   containerd_stop
#   daemon_stop                   # fails if thinsnapd does not exit cleanly
#   pool_destroy_and_check N      # teardown; thin_check; exactly N thin devices left
#   step MSG                      # logs MSG with the seconds since testbed_init
#
# On exit the trap stops containerd (printing the tail of its log if the
# script failed), then runs the functions in TB_EXIT_HOOKS (each given the
# exit status), then stops thinsnapd and removes the pool.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1

tb_log() { echo "[$(date +%T)] $*"; }
tb_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Sets WORK, POOL_NAME, THINSNAPD, THINSNAP_SOCK, THINSNAP_ROOT and an EXIT
# trap that stops whatever is still running and tears the pool down.
testbed_init() {
  local name=$1 build=$2
  [ "$(id -u)" -eq 0 ] || tb_fail "must run as root (inside the VM: tests/vm/run -- $0)"
  BUILD=$(readlink -f "$build")
  THINSNAPD=$BUILD/src/daemon/thinsnapd
  [ -x "$THINSNAPD" ] || tb_fail "$THINSNAPD not built"
  WORK=$(mktemp -d "/tmp/thinsnap-$name.XXXXXX")
  POOL_NAME=thinsnap-$name-$$
  THINSNAP_ROOT=$WORK/thinsnap-root
  THINSNAP_SOCK=$WORK/thinsnap.sock
  DAEMON_PID=
  DAEMON_ARGS=()
  DATA_LOOP=
  META_LOOP=
  CD_SOCK=$WORK/containerd/containerd.sock
  CONTAINERD_PID=
  TB_EXIT_HOOKS=()
  TB_START=$(date +%s)
  trap testbed_cleanup EXIT
}

step() { tb_log "[$(($(date +%s) - TB_START))s] $*"; }

pool_create() {
  local data_size=$1 meta_size=$2
  truncate -s "$data_size" "$WORK/data.img"
  truncate -s "$meta_size" "$WORK/meta.img"
  # A stale superblock would make the pool (and thin_check) read garbage.
  dd if=/dev/zero of="$WORK/meta.img" bs=4096 count=1 conv=notrunc status=none
  DATA_LOOP=$(losetup --find --show "$WORK/data.img")
  META_LOOP=$(losetup --find --show "$WORK/meta.img")
  local sectors
  sectors=$(blockdev --getsz "$DATA_LOOP")
  dmsetup create "$POOL_NAME" --table \
    "0 $sectors thin-pool $META_LOOP $DATA_LOOP 128 32768 2 skip_block_zeroing error_if_no_space"
  tb_log "pool $POOL_NAME: data $DATA_LOOP ($data_size) meta $META_LOOP ($meta_size)"
}

# Extra thinsnapd arguments (e.g. --config FILE) come from the DAEMON_ARGS array.
daemon_start() {
  mkdir -p "$THINSNAP_ROOT"
  "$THINSNAPD" --root "$THINSNAP_ROOT" --socket "$THINSNAP_SOCK" --pool "$POOL_NAME" \
    "${DAEMON_ARGS[@]}" >>"$WORK/thinsnapd.log" 2>&1 &
  DAEMON_PID=$!
  local _
  for _ in $(seq 600); do
    [ -S "$THINSNAP_SOCK" ] && break
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      wait "$DAEMON_PID" || true
      DAEMON_PID=
      cat "$WORK/thinsnapd.log" >&2
      tb_fail "thinsnapd exited during start-up"
    fi
    sleep 0.1
  done
  [ -S "$THINSNAP_SOCK" ] || tb_fail "thinsnapd did not create $THINSNAP_SOCK within 60 s"
  tb_log "thinsnapd pid $DAEMON_PID serving $THINSNAP_SOCK"
}

# Stops thinsnapd with SIGTERM; a daemon that does not exit cleanly fails the test.
daemon_stop() {
  [ -n "$DAEMON_PID" ] || return 0
  local pid=$DAEMON_PID rc=0
  DAEMON_PID=
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  tb_log "thinsnapd exited with status $rc"
  if [ "$rc" -ne 0 ]; then
    tail -n 50 "$WORK/thinsnapd.log" >&2
    tb_fail "thinsnapd exited with status $rc after SIGTERM"
  fi
}

# Thin devices (dm names) that map onto our pool.
pool_thin_devices() {
  local pool_devno
  pool_devno=$(dmsetup info -c --noheadings -o major,minor --separator : "$POOL_NAME")
  dmsetup table --target thin 2>/dev/null |
    awk -v p="$pool_devno" '$4 == "thin" && $5 == p { sub(/:$/, "", $1); print $1 }'
}

# Removes the pool's device-mapper devices. Active thin devices left behind
# by thinsnapd are listed and removed first.
pool_remove_dm() {
  if [ -n "$POOL_NAME" ] && dmsetup info "$POOL_NAME" >/dev/null 2>&1; then
    local dev
    for dev in $(pool_thin_devices); do
      tb_log "thin device still active after thinsnapd exit: $dev"
      dmsetup remove --retry "$dev"
    done
    dmsetup remove --retry "$POOL_NAME"
  fi
}

pool_detach_loops() {
  local loop
  for loop in "$DATA_LOOP" "$META_LOOP"; do
    [ -n "$loop" ] && losetup -d "$loop"
  done
  DATA_LOOP=
  META_LOOP=
}

# Tears the pool down and verifies its metadata: thin_check must pass and the
# pool must hold exactly EXPECTED thin devices. The checks read the metadata
# loop device (thin_check opens with O_DIRECT, which tmpfs files refuse).
pool_destroy_and_check() {
  local expected=$1 devices count
  pool_remove_dm
  thin_check "$META_LOOP" || tb_fail "thin_check failed on the pool metadata"
  devices=$(thin_ls --no-headers --format DEV,MAPPED_BYTES,EXCLUSIVE_BYTES "$META_LOOP")
  pool_detach_loops
  count=$(printf '%s\n' "$devices" | grep -c '[0-9]' || true)
  tb_log "thin_check: ok; thin devices in the pool: $count"
  printf '%s\n' "$devices" | sed 's/^/  thin_ls: /'
  [ "$count" -eq "$expected" ] || tb_fail "pool holds $count thin devices, want $expected"
}

# --- containerd with thinsnapd as its proxy snapshotter "thinsnap" ---

containerd_require_tools() {
  local tool
  for tool in containerd ctr runc containerd-shim-runc-v2; do
    command -v "$tool" >/dev/null || tb_fail "$tool not installed (tools/install-deps)"
  done
}

ctr_() { ctr -a "$CD_SOCK" -n default "$@"; }

# containerd_start [TOML...]: each argument is appended to the configuration.
# Its log ($WORK/containerd.log) is at CONTAINERD_LOG_LEVEL (default info).
# shellcheck disable=SC2120 # callers pass extra TOML or nothing
containerd_start() {
  mkdir -p "$WORK/containerd"
  {
    cat <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]

[grpc]
  address = "$CD_SOCK"

[proxy_plugins.thinsnap]
  type = "snapshot"
  address = "$THINSNAP_SOCK"
EOF
    local extra
    for extra in "$@"; do
      printf '\n%s\n' "$extra"
    done
  } >"$WORK/containerd.toml"
  containerd --config "$WORK/containerd.toml" --log-level "${CONTAINERD_LOG_LEVEL:-info}" \
    >"$WORK/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  local _
  for _ in $(seq 300); do
    ctr -a "$CD_SOCK" version >/dev/null 2>&1 && break
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { tail -n 40 "$WORK/containerd.log" >&2; tb_fail "containerd exited during start-up"; }
    sleep 0.2
  done
  local plugins
  plugins=$(ctr_ plugins ls) || tb_fail "ctr plugins ls"
  grep -qE '^io.containerd.snapshotter.v1 +thinsnap .* ok *$' <<<"$plugins" ||
    { echo "$plugins" >&2; tb_fail "containerd did not load the thinsnap proxy snapshotter"; }
  tb_log "containerd $(containerd --version | awk '{print $3}') pid $CONTAINERD_PID"
}

containerd_stop() {
  [ -n "$CONTAINERD_PID" ] || return 0
  local pid=$CONTAINERD_PID
  CONTAINERD_PID=
  kill -TERM "$pid"
  wait "$pid" || true # containerd exits non-zero on SIGTERM by design
}

# containerd goes before the hooks, thinsnapd and the pool.
testbed_cleanup() {
  local rc=$?
  set +e
  if [ -n "$CONTAINERD_PID" ]; then
    containerd_stop
    if [ "$rc" -ne 0 ]; then
      echo "--- containerd log (tail) ---"
      tail -n 60 "$WORK/containerd.log"
    fi
  fi
  local hook
  for hook in "${TB_EXIT_HOOKS[@]}"; do "$hook" "$rc"; done
  if [ -n "$DAEMON_PID" ]; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    echo "--- thinsnapd log (tail) ---"
    tail -n 80 "$WORK/thinsnapd.log"
  fi
  if [ -n "$DATA_LOOP" ]; then
    pool_remove_dm
    pool_detach_loops
  fi
  exit "$rc"
}
