# Registry, client-SDK and image-footprint tests (tests/e2e/registry, tests/e2e/sdk): a real
# three-layer Debian image, built on the host, pushed to Debian's docker-registry inside the VM
# and pulled by containerd 1.6 into thinsnap. The Go helpers are built here rather than in
# tests/e2e because they need the GOPATH-mode Go environment of tests/conformance.

# Where build-image.sh keeps the debootstrap tree and the image; the guest sees it read-only, so
# it must not be under /tmp, /run or /var/tmp.
set(THINSNAP_IMAGE_CACHE /var/cache/thinsnap-images CACHE PATH
    "Host directory for the registry tests' debootstrap tree and OCI image")
set(registry_dir ${CMAKE_SOURCE_DIR}/tests/e2e/registry)

set(treecmp_bin ${CMAKE_BINARY_DIR}/tests/e2e/registry/treecmp)
add_custom_command(
  OUTPUT ${treecmp_bin}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/go/path ${CMAKE_BINARY_DIR}/go/cache
  COMMAND ${CMAKE_COMMAND} -E env ${THINSNAP_GO_ENV} ${GO_EXECUTABLE} build -o ${treecmp_bin} .
  WORKING_DIRECTORY ${registry_dir}/treecmp
  DEPENDS ${registry_dir}/treecmp/main.go
  COMMENT "Building treecmp (go build)"
  VERBATIM)
add_custom_target(treecmp_bin ALL DEPENDS ${treecmp_bin})

# On the host, before any VM test that needs it: debootstrap (cached) and the OCI image (cached).
add_test(NAME registry_image
         COMMAND ${registry_dir}/build-image.sh ${treecmp_bin} ${THINSNAP_IMAGE_CACHE})
set_tests_properties(registry_image PROPERTIES FIXTURES_SETUP registry_image LABELS "containerd"
                     TIMEOUT 900)

# skopeo push, ctr images pull --plain-http, ctr run, path-by-path comparison, GC.
thinsnap_add_vm_test(NAME registry_pull
                     COMMAND ${registry_dir}/pull-test.sh ${CMAKE_BINARY_DIR} ${THINSNAP_IMAGE_CACHE}
                     TIMEOUT 900 MEM 3072 LABELS containerd)
set_tests_properties(registry_pull PROPERTIES FIXTURES_REQUIRED registry_image)

# containerd's Go client SDK: WithPullSnapshotter, WithSnapshotter, WithNewSnapshot with the
# max-size label, the Kata mount shape, df in a task, and nothing left afterwards.
set(sdk_dir ${CMAKE_SOURCE_DIR}/tests/e2e/sdk)
set(sdk_test_bin ${CMAKE_BINARY_DIR}/tests/e2e/sdk/sdk.test)
add_custom_command(
  OUTPUT ${sdk_test_bin}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/go/path ${CMAKE_BINARY_DIR}/go/cache
  COMMAND ${CMAKE_COMMAND} -E env ${THINSNAP_GO_ENV} ${GO_EXECUTABLE} test -c -o ${sdk_test_bin} .
  WORKING_DIRECTORY ${sdk_dir}
  DEPENDS ${sdk_dir}/sdk_test.go
  COMMENT "Building the containerd client SDK test (go test -c)"
  VERBATIM)
add_custom_target(sdk_test_bin ALL DEPENDS ${sdk_test_bin})
thinsnap_add_vm_test(NAME sdk_e2e COMMAND ${sdk_dir}/run-in-vm.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 900 LABELS containerd)

# Pull time and image footprint (issue 8 part 2, issue 9 part 3): thinsnap vs overlayfs on ext4,
# and the three-way run with containerd's devmapper as well, in one VM. Both take over five
# minutes under TCG (each pull is two to three minutes of containerd unpacking), so both are in
# test-long. Figures are printed, not judged.
thinsnap_add_vm_test(NAME bench_pull
                     COMMAND ${registry_dir}/pull-bench.sh ${CMAKE_BINARY_DIR} ${THINSNAP_IMAGE_CACHE}
                             thinsnap overlayfs
                     TIMEOUT 1200 MEM 4096 LABELS bench containerd long)
thinsnap_add_vm_test(NAME bench_pull_3way
                     COMMAND ${registry_dir}/pull-bench.sh ${CMAKE_BINARY_DIR} ${THINSNAP_IMAGE_CACHE}
                             thinsnap overlayfs devmapper
                     TIMEOUT 1800 MEM 4096 LABELS bench containerd long)
set_tests_properties(bench_pull bench_pull_3way PROPERTIES FIXTURES_REQUIRED registry_image)
