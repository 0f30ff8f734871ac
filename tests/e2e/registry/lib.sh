# shellcheck shell=bash
# Shared pieces of the registry tests (sourced after tests/e2e/testbed.sh and
# testbed_init): Debian's docker-registry on loopback in the guest and the test
# image pushed into it with skopeo. Everything writable lives in $WORK (guest
# tmpfs); containerd comes from testbed.sh.
#
#   registry_require_tools          # the registry's and containerd's tools are installed
#   registry_start                  # serves http://127.0.0.1:5000, storage in $WORK/registry
#   registry_push SOURCE NAME       # skopeo SOURCE (oci:DIR:TAG, oci-archive:FILE) -> 127.0.0.1:5000/NAME:test, sets REF
#   registry_stop                   # also run by testbed.sh's EXIT trap

REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_PID=

registry_require_tools() {
  containerd_require_tools
  local tool
  for tool in docker-registry skopeo curl; do
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
  TB_EXIT_HOOKS+=(registry_stop)
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

registry_stop() {
  [ -n "$REGISTRY_PID" ] || return 0
  kill -TERM "$REGISTRY_PID" 2>/dev/null || true
  wait "$REGISTRY_PID" 2>/dev/null || true # 143: it ends by our SIGTERM
  REGISTRY_PID=
}
