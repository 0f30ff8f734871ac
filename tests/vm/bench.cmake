# proxybench (tests/bench/proxybench): snapshotter latency and concurrency through containerd's
# snapshots/proxy client, in the VM. Built here rather than in tests/bench because it needs the
# GOPATH-mode Go environment that tests/conformance defines, which CMake processes after
# tests/bench. The figures are printed, never judged: the ctests fail only if an operation does.
set(proxybench_dir ${CMAKE_SOURCE_DIR}/tests/bench/proxybench)
set(proxybench_bin ${CMAKE_BINARY_DIR}/tests/bench/proxybench/proxybench)
add_custom_command(
  OUTPUT ${proxybench_bin}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/go/path ${CMAKE_BINARY_DIR}/go/cache
  COMMAND ${CMAKE_COMMAND} -E env ${THINSNAP_GO_ENV} ${GO_EXECUTABLE} build -o ${proxybench_bin} .
  WORKING_DIRECTORY ${proxybench_dir}
  DEPENDS ${proxybench_dir}/main.go ${proxybench_dir}/scale.go ${proxybench_dir}/layers.go
  COMMENT "Building proxybench (go build)"
  VERBATIM)
add_custom_target(proxybench_bin ALL DEPENDS ${proxybench_bin})

# thinsnapd on a thinsnapctl loop pool.
thinsnap_add_vm_test(NAME bench_proxy
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR} thinsnap
                     TIMEOUT 900 LABELS bench)
# containerd's devmapper snapshotter on the same kind of pool, for comparison. It is about ten
# times slower, so it runs fewer cycles and rounds. It formats every root snapshot in full
# (lazy_itable_init=0, lazy_journal_init=0) and, in the guest, leaves removed devices behind in
# state Removing, so its pool's data file on the guest's tmpfs (half the VM's memory) fills up:
# hence a 256 MiB base image and 4 GiB of memory.
thinsnap_add_vm_test(NAME bench_proxy_devmapper
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR}
                             devmapper -- -cycles 10 -warmup 1 -rounds 2
                             -devmapper-base-size 256MB
                     TIMEOUT 1200 MEM 4096 LABELS bench containerd long)
# Remove (and Prepare/Commit) with discard_unused_blocks on and off, one after the other in one VM:
# what giving space back costs (issue 8). In test-long: it is a comparison, not a check.
thinsnap_add_vm_test(NAME bench_proxy_discard
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR} discard
                     TIMEOUT 1200 LABELS bench long)
# Prepare with and without the containerd.io/snapshot/max-size label (issue 9): the growth's cost.
thinsnap_add_vm_test(NAME bench_proxy_max_size
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR} max-size
                     TIMEOUT 1500 LABELS bench long)
# 10,000 snapshots in one pool (issue 12): start-up, List, Prepare p50 empty vs full, and removing
# them all, each printed beside its target. About 14 minutes under TCG on an idle machine.
thinsnap_add_vm_test(NAME bench_scale
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR} scale
                     TIMEOUT 3600 LABELS bench long)
# List at 10,000 through the same client on the host, over the fake pool (issue 17): the server's
# and the client's share of bench_scale's List figure in about a minute, without the VM.
add_test(NAME bench_list_host COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/list-on-host.sh
                                      ${CMAKE_BINARY_DIR})
set_tests_properties(bench_list_host PROPERTIES LABELS bench TIMEOUT 600)
# containerd's snapshots/testsuite 128LayersMount scenario on thinsnapd and on containerd's
# devmapper snapshotter in one VM run, both through the proxy client (issue 17 item 1): prints
# "thinsnap X s, devmapper Y s, ratio R (target <= 0.1)". 4 GiB of memory: devmapper formats its
# 10 GiB base image in full, into a pool file on the guest's tmpfs.
thinsnap_add_vm_test(NAME bench_layers
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/bench/run-in-vm.sh ${CMAKE_BINARY_DIR} layers
                     TIMEOUT 1800 MEM 4096 LABELS bench containerd long)
