# devname_reuse_vm (issue 15, item 6): a removed snapshot's device path never becomes another
# snapshot's mount source, and Remove racing Commit on one key ends in one consistent outcome
# (tests/churn/devname.sh; thinsnap_churn is built by churn.cmake).
thinsnap_add_vm_test(NAME devname_reuse_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/churn/devname.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 400 LABELS churn)
