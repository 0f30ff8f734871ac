# handoff_open_vm (issue 15, item 4): a removed snapshot's device that another process holds open
# read-write without O_EXCL (as qemu does) is neither discarded nor deactivated nor deleted until
# it is closed; then Cleanup finishes the job (tests/churn/handoff.sh; thinsnap_churn is built by
# churn.cmake).
thinsnap_add_vm_test(NAME handoff_open_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/churn/handoff.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 300 LABELS churn)
