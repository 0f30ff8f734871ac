# thinsnapd's /metrics scraped by a real Prometheus in the guest; series checked through its
# HTTP API against real operations (tests/vm/metrics_test.sh).
thinsnap_add_vm_test(NAME metrics_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/metrics_test.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 900)

# The overhead of metrics: single Prepares interleaved between a thinsnapd without metrics and
# one serving /metrics (scraped every second), through containerd's proxy client; the two p50s
# are printed side by side (target: within 2%), never judged. About 5 minutes in TCG: make test-long.
thinsnap_add_vm_test(NAME bench_metrics_overhead
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR}
                             metrics -- -ab-samples 200 -warmup 5
                     TIMEOUT 900 LABELS bench long)
