# Registry, client-SDK and image-footprint tests (tests/e2e/registry, tests/e2e/sdk): a real
# three-layer Debian image, built on the host, pushed to Debian's docker-registry inside the VM
# and pulled by containerd 1.6 into thinsnap. The Go helpers are built here rather than in
# tests/e2e because they need the GOPATH-mode Go environment of tests/conformance.

# Where build-image.sh keeps the debootstrap tree and the image; the guest sees it read-only, so
# it must not be under /tmp, /run or /var/tmp.
set(THINSNAP_IMAGE_CACHE /var/cache/thinsnap-images CACHE PATH
    "Host directory for the registry tests' debootstrap tree and OCI image")
set(registry_dir ${CMAKE_SOURCE_DIR}/tests/e2e/registry)
# Keep in step with `version` in build-image.sh.
set(registry_image ${THINSNAP_IMAGE_CACHE}/image-v2)

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
                     COMMAND ${registry_dir}/pull-test.sh ${CMAKE_BINARY_DIR} ${registry_image}
                     TIMEOUT 900 MEM 3072 LABELS containerd)
set_tests_properties(registry_pull PROPERTIES FIXTURES_REQUIRED registry_image)
