#!/usr/bin/env bash
# Soak test of thinsnapd on real dm-thin. Runs inside the test VM:
#   tests/vm/run -- tests/soak/run-in-vm.sh BUILD_DIR THINSNAP_SOAK
#
# Provisions a loop-backed pool, starts thinsnapd on it (tests/churn/vm-lib.sh), runs
# thinsnap_soak (THINSNAP_SOAK_CLIENTS concurrent clients, default 32, for THINSNAP_SOAK_SECONDS,
# default 60), then checks that nothing leaked and that everything is consistent:
#   - the soak itself: no unexpected gRPC code, no call past its deadline, List empty at the end;
#   - thinsnapd is still alive afterwards, logged no error and stops cleanly (exit 0) on SIGTERM;
#   - `thinsnapctl check --json` is clean while it serves and after it stopped, the pool holds
#     only the base thin id and the metadata accounts for exactly the same ids;
#   - no thin device is left active;
#   - thin_check passes on the metadata after the pool is torn down.
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/churn/vm-lib.sh
source "$here/../churn/vm-lib.sh"

vm_init soak_vm "${1:?usage: $0 BUILD_DIR THINSNAP_SOAK}"
soak=$(readlink -f "${2:?usage: $0 BUILD_DIR THINSNAP_SOAK}")
[ -x "$soak" ] || vm_fail "$soak not built (target thinsnap_soak)"
seconds=${THINSNAP_SOAK_SECONDS:-60}
clients=${THINSNAP_SOAK_CLIENTS:-32}

# 4 GiB of (sparse) data and 256 MiB of metadata: far from the 10% free-space floor even with
# every client's snapshots live, so ResourceExhausted is never legitimate here.
vm_pool_create 4G 256M
vm_daemon_start 512M

soak_status=0
"$soak" --socket "$socket" --clients "$clients" --duration "$seconds" --deadline 60 || soak_status=$?
if vm_daemon_alive "during the soak"; then
  if [ "$soak_status" -ne 0 ]; then
    tail -n 50 "$work/thinsnapd.log"
    vm_problem "thinsnap_soak exited $soak_status"
  fi
  # Removals finish in the background; Cleanup returns once they are done.
  "$ctl" --socket "$socket" cleanup || vm_problem "thinsnapctl cleanup"
  vm_check_clean "thinsnapd serving"
fi
vm_daemon_stop
vm_check_clean "thinsnapd stopped"
if grep -Eq '\[(error|critical)\]' "$work/thinsnapd.log"; then
  grep -E '\[(error|critical)\]' "$work/thinsnapd.log" | head -n 20
  vm_problem "thinsnapd logged errors"
fi
vm_pool_destroy
vm_finish
