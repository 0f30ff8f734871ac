# DmPool against real dm-thin: built on the host, run in the VM (included by CMakeLists.txt here).
find_package(GTest REQUIRED)
add_executable(dm_pool_vm_test ${CMAKE_CURRENT_LIST_DIR}/dm_pool_vm_test.cc)
# libdevmapper directly too: one test makes the half-created device a crash leaves.
target_link_libraries(dm_pool_vm_test PRIVATE thinsnap_core thinsnap_dm PkgConfig::DEVMAPPER
                      GTest::gtest GTest::gtest_main)
thinsnap_add_vm_test(NAME dm_pool_vm COMMAND $<TARGET_FILE:dm_pool_vm_test> TIMEOUT 600)
