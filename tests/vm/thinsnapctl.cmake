# thinsnapctl pool administration on real dm-thin: loop and LVM pools, refusals that must change
# nothing, destroy/activate round trips (tests/vm/thinsnapctl_test.sh).
thinsnap_add_vm_test(NAME thinsnapctl_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/thinsnapctl_test.sh
                             $<TARGET_FILE:thinsnapctl>
                     TIMEOUT 600)
