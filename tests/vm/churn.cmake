# churn_vm (issue 15, item 3): 16 clients preparing, mounting, writing and removing containers on
# 3 images for 60 s through containerd's proxy client, with the reclaim backlog and the pool's
# data in use sampled every second (tests/churn/churn.sh). Fails on any client error, a Cleanup
# over 30 s, thinsnapd dying, a leaked thin id, or the data file not shrinking back.
#
# thinsnap_churn (tests/churn/*.go) also drives handoff_open_vm and devname_reuse_vm
# (handoff_open.cmake, devname_reuse.cmake). Built here rather than in tests/churn because it
# needs the GOPATH-mode Go environment that tests/conformance defines (as proxybench does).
set(thinsnap_churn_dir ${CMAKE_SOURCE_DIR}/tests/churn)
set(thinsnap_churn_bin ${CMAKE_BINARY_DIR}/tests/churn/thinsnap_churn)
file(GLOB thinsnap_churn_sources CONFIGURE_DEPENDS ${thinsnap_churn_dir}/*.go)
add_custom_command(
  OUTPUT ${thinsnap_churn_bin}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/go/path ${CMAKE_BINARY_DIR}/go/cache
  COMMAND ${CMAKE_COMMAND} -E env ${THINSNAP_GO_ENV} ${GO_EXECUTABLE} build -o ${thinsnap_churn_bin} .
  WORKING_DIRECTORY ${thinsnap_churn_dir}
  DEPENDS ${thinsnap_churn_sources}
  COMMENT "Building thinsnap_churn (go build)"
  VERBATIM)
add_custom_target(thinsnap_churn_bin ALL DEPENDS ${thinsnap_churn_bin})

# 4 GiB of guest memory: the pool's data file lives on the guest's tmpfs (half of it), and a
# reclaim that falls behind should fail the test on its own terms, not by filling that tmpfs.
thinsnap_add_vm_test(NAME churn_vm
                     COMMAND bash ${thinsnap_churn_dir}/churn.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 600 MEM 4096 LABELS churn)
