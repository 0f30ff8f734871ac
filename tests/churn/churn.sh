#!/usr/bin/env bash
# churn_vm (issue 15, item 3): containers coming and going on real dm-thin, through containerd's
# proxy client, with the reclaim backlog and the pool's data in use sampled every second.
# Runs inside the test VM:
#
#   tests/vm/run -- tests/churn/churn.sh BUILD_DIR [-- THINSNAP_CHURN_ARGS...]
#   THINSNAP_CHURN_ARGS="-clients 32 -duration 90s" ctest -R churn_vm   # the same, through ctest
#
# A 4 GiB loop pool, thinsnapd on it with /metrics; `thinsnap_churn churn` builds 3 images of
# 5 committed layers, runs 16 clients for 60 s (Prepare on a tip, mount, write 4 MiB, fsync,
# unmount; a View every 4th loop; a Commit every 5th), removes the images and calls Cleanup
# once, then prints its figures. Fails on any client error, a Cleanup error or one over 30 s,
# thinsnapd dying, any thin id besides the base left, or the data file's allocation not back
# within 5% + 8 MiB of what it was before the images were built (after the base device).
set -euo pipefail
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=tests/churn/vm-lib.sh
source "$here/vm-lib.sh"

vm_init churn_vm "$@"

vm_pool_create 4G 256M
# The kernel's own floor for a reclaim, on the same pool in the same VM run, before thinsnapd
# starts: a device that wrote 4 MiB discards them, is removed and deleted (dm_floor_bench).
"$(dirname "$ctl")/../tests/bench/dm_floor_bench" --pool "$pool" --samples 12 --parallel 1 --rounds 1 \
  --out "$work/floor.txt" | grep -E "reclaim" || vm_fail "dm_floor_bench failed"
floor_ms=$(sed -n 's/^reclaim_4mib_ms=//p' "$work/floor.txt")
vm_daemon_start 512M
du_before=$(du -k "$data_file" | cut -f1)
vm_log "data file $data_file: $du_before KiB allocated with the base device alone"

churn_rc=0
"$churn" churn -socket "$socket" -metrics "$metrics_url" -pool "$pool" -mount-dir "$work/mnt" "${vm_args[@]}" |
  tee "$work/churn.out" || churn_rc=$?
[ "$churn_rc" -eq 0 ] || vm_problem "thinsnap_churn churn exited $churn_rc (see its problems above)"
if vm_daemon_alive "during the churn"; then
  vm_check_clean "thinsnapd serving"
  # Where the daemon's time went: every pool operation's count and mean, from its own /metrics.
  echo "pool operations (count, mean ms):"
  curl -fsS "$metrics_url" | awk '
    /^thinsnap_dm_operation_duration_seconds_(sum|count)\{/ {
      match($0, /operation="[^"]*"/); op = substr($0, RSTART + 11, RLENGTH - 12)
      if ($0 ~ /_sum/) sum[op] = $2; else count[op] = $2
    }
    END { for (op in count) if (count[op] > 0) printf "  %-22s %8d %9.1f\n", op, count[op], 1000 * sum[op] / count[op] }' |
    sort
fi

# The drain beside its floor: removed containers reclaimed per second by the final Cleanup,
# against 0.5x the raw floor's rate (target, printed, not judged).
drain=$(sed -n 's/^drain rate in final Cleanup *\([0-9.]*\) devices.*/\1/p' "$work/churn.out")
if [ -n "$drain" ] && [ -n "$floor_ms" ]; then
  awk -v d="$drain" -v f="$floor_ms" 'BEGIN {
    r = 1000 / f
    printf "drain vs floor               %.1f devices/s against a raw floor of %.1f devices/s (%.1f ms each): %.2fx   target >= 0.5x: %s\n", d, r, f, d / r, (d / r >= 0.5 ? "met" : "MISSED") }'
fi

du_after=$(du -k "$data_file" | cut -f1)
du_limit=$((du_before + du_before / 20 + 8192))
echo "du of the data file          before $du_before KiB, after $du_after KiB (limit $du_limit KiB = before + 5% + 8 MiB)"
[ "$du_after" -le "$du_limit" ] ||
  vm_problem "the data file holds $du_after KiB after the final Cleanup, over $du_limit KiB"

vm_daemon_stop
vm_check_clean "thinsnapd stopped"
vm_pool_destroy
vm_finish
