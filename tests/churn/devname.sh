#!/usr/bin/env bash
# devname_reuse_vm (issue 15, item 6): a removed snapshot's device path (its Mounts source) must
# never be handed out again, and Remove racing Commit on one key must end in one consistent
# outcome without leaking a thin id. Runs inside the test VM:
#
#   tests/vm/run -- tests/churn/devname.sh BUILD_DIR [-- THINSNAP_CHURN_ARGS...]
#   THINSNAP_CHURN_ARGS="-many 200" ctest -R devname_reuse_vm           # the same, through ctest
#
# `thinsnap_churn devname` keeps the Mounts answers of a few snapshots, removes them, calls
# Cleanup, prepares 50 more, and checks that no old path exists or is any live snapshot's
# source; then 40 rounds of Commit and Remove at once on a fresh key. Afterwards only the base
# thin id may be left in the pool.
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/churn/vm-lib.sh
source "$here/vm-lib.sh"

vm_init devname_reuse_vm "$@"

vm_pool_create 2G 128M
vm_daemon_start 256M
devname_rc=0
"$churn" devname -socket "$socket" "${vm_args[@]}" || devname_rc=$?
[ "$devname_rc" -eq 0 ] || vm_problem "thinsnap_churn devname exited $devname_rc (see its problems above)"
if vm_daemon_alive "during the test"; then
  vm_check_clean "thinsnapd serving"
fi
vm_daemon_stop
vm_check_clean "thinsnapd stopped"
vm_pool_destroy
vm_finish
