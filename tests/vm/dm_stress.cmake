# dm_stress (issue 15): 16 threads drive dm/ on real dm-thin at once: activation, suspend/resume,
# removal (plain, busy, deferred) and pool messages on their own and shared thin ids. Built with
# AddressSanitizer + UBSan around its own copy of the dm/ sources, so the normal build is
# untouched, and run in one VM with and without DM_DISABLE_UDEV (tests/vm/dm_stress.sh).
find_package(CLI11 REQUIRED)
add_executable(dm_stress ${CMAKE_CURRENT_LIST_DIR}/dm_stress.cc
                         ${CMAKE_SOURCE_DIR}/dm/device_mapper.cc ${CMAKE_SOURCE_DIR}/dm/thin.cc)
target_include_directories(dm_stress PRIVATE ${CMAKE_SOURCE_DIR})
target_compile_options(dm_stress PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                         -fno-sanitize-recover=all)
target_link_options(dm_stress PRIVATE -fsanitize=address,undefined)
target_link_libraries(dm_stress PRIVATE thinsnap_base PkgConfig::DEVMAPPER CLI11::CLI11
                      Threads::Threads)
thinsnap_add_vm_test(NAME dm_stress_vm
                     COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/dm_stress.sh $<TARGET_FILE:dm_stress>
                     TIMEOUT 360)
