# thinsnapctl pool administration on real dm-thin: loop and LVM pools, refusals that must change
# nothing, destroy/activate round trips (tests/vm/thinsnapctl_test.sh).
thinsnap_add_vm_test(NAME thinsnapctl_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/thinsnapctl_test.sh
                             $<TARGET_FILE:thinsnapctl>
                     TIMEOUT 600)

# thinsnapctl's client commands (text, --json, gRPC error codes) against a live thinsnapd.
thinsnap_add_vm_test(NAME thinsnapctl_client_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/thinsnapctl_client_test.sh
                             ${CMAKE_BINARY_DIR}
                     TIMEOUT 600)

# `make demo` end to end (inside the VM the demo finds dm-thin and runs directly).
thinsnap_add_vm_test(NAME demo_vm COMMAND ${CMAKE_SOURCE_DIR}/tools/demo ${CMAKE_BINARY_DIR}
                     TIMEOUT 600)
