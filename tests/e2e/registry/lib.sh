# shellcheck shell=bash
# Shared pieces of the registry tests (sourced after tests/e2e/testbed.sh and
# testbed_init): Debian's docker-registry on loopback in the guest, the test
# image pushed into it with skopeo, and a containerd 1.6 with thinsnap as a
# proxy snapshotter. Everything writable lives in $WORK (guest tmpfs).
#
#   registry_start                  # serves http://127.0.0.1:5000, storage in $WORK/registry
#   registry_push SOURCE NAME       # skopeo SOURCE (oci:DIR:TAG, oci-archive:FILE) -> 127.0.0.1:5000/NAME:test, sets REF
#   containerd_start [TOML...]      # extra config appended; ctr_ talks to it
#   containerd_stop
# The caller's EXIT trap must call registry_containerd_cleanup "$rc" before testbed_cleanup.

REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_PID=
CONTAINERD_PID=
CD_SOCK=

ctr_() { ctr -a "$CD_SOCK" -n default "$@"; }

registry_require_tools() {
  local tool
  for tool in docker-registry skopeo containerd ctr runc containerd-shim-runc-v2 curl; do
    command -v "$tool" >/dev/null || tb_fail "$tool not installed (tools/install-deps)"
  done
}

registry_start() {
  # The guest's loopback starts down; the registry and containerd's resolver need it.
  ip link set lo up
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REGISTRY_PID=$!
  local _
  for _ in $(seq 300); do
    curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break
    kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; tb_fail "docker-registry exited during start-up"; }
    sleep 0.2
  done
  curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null || tb_fail "docker-registry did not answer on $REGISTRY_ADDR within 60 s"
  tb_log "docker-registry $(docker-registry --version | awk '{print $3}') pid $REGISTRY_PID on $REGISTRY_ADDR"
}

registry_push() {
  local source=$1 name=$2
  REF=$REGISTRY_ADDR/$name:test
  # skopeo writes only its temporary blobs (TMPDIR, tmpfs); the source may be read-only.
  skopeo --policy /etc/containers/policy.json copy --quiet --dest-tls-verify=false \
    "$source" "docker://$REF" || tb_fail "skopeo copy $source to $REF"
  tb_log "pushed $REF ($(du -sm "$WORK/registry" | cut -f1) MiB in the registry)"
}

# shellcheck disable=SC2120 # callers pass extra TOML or nothing
containerd_start() {
  mkdir -p "$WORK/containerd"
  CD_SOCK=$WORK/containerd/containerd.sock
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
  containerd --config "$WORK/containerd.toml" --log-level info >"$WORK/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  local _
  for _ in $(seq 300); do
    ctr -a "$CD_SOCK" version >/dev/null 2>&1 && break
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { tail -n 40 "$WORK/containerd.log" >&2; tb_fail "containerd exited during start-up"; }
    sleep 0.2
  done
  ctr_ plugins ls | grep -qE '^io.containerd.snapshotter.v1 +thinsnap .* ok *$' ||
    tb_fail "containerd did not load the thinsnap proxy snapshotter"
  tb_log "containerd $(containerd --version | awk '{print $3}') pid $CONTAINERD_PID"
}

containerd_stop() {
  [ -n "$CONTAINERD_PID" ] || return 0
  local pid=$CONTAINERD_PID
  CONTAINERD_PID=
  kill -TERM "$pid"
  wait "$pid" || true # containerd exits non-zero on SIGTERM by design
}

# registry_containerd_cleanup [STATUS]: containerd and the registry go before
# thinsnapd and the pool (testbed_cleanup); with a non-zero STATUS (from an
# EXIT trap) the tail of containerd's log is printed too.
registry_containerd_cleanup() {
  if [ -n "$CONTAINERD_PID" ]; then
    containerd_stop
    if [ "${1:-0}" -ne 0 ]; then
      echo "--- containerd log (tail) ---"
      tail -n 60 "$WORK/containerd.log"
    fi
  fi
  if [ -n "$REGISTRY_PID" ]; then
    kill -TERM "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true # 143: it ends by our SIGTERM
    REGISTRY_PID=
  fi
}
