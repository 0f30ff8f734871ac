# Pool space on real dm-thin (tests/vm/space): idle snapshots write nothing for every fs_type,
# removed snapshots give their blocks back to the loop pool's data file, also after a crash
# between Remove and the reclaim, and discard_unused_blocks = false turns that off.
thinsnap_add_vm_test(NAME space_vm
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/vm/space/space-test.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 900 MEM 3072)
