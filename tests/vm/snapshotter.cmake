# The Snapshotter over a real dm-thin pool (provisioned with thinsnapctl).
find_package(GTest REQUIRED)
add_executable(snapshotter_vm_test ${CMAKE_CURRENT_LIST_DIR}/snapshotter_vm_test.cc)
target_link_libraries(snapshotter_vm_test PRIVATE thinsnap_core GTest::gtest GTest::gtest_main)
target_compile_definitions(snapshotter_vm_test PRIVATE THINSNAPCTL="$<TARGET_FILE:thinsnapctl>")
add_dependencies(snapshotter_vm_test thinsnapctl)
thinsnap_add_vm_test(NAME snapshotter_vm COMMAND $<TARGET_FILE:snapshotter_vm_test> TIMEOUT 1500)
