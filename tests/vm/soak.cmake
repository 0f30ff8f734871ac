# Soak: 32 concurrent gRPC clients against thinsnapd on real dm-thin for 60 s, then leak and
# consistency checks (tests/soak/run-in-vm.sh).
find_package(CLI11 REQUIRED)
add_executable(thinsnap_soak ${CMAKE_SOURCE_DIR}/tests/soak/soak.cc)
target_link_libraries(thinsnap_soak PRIVATE thinsnap_proto CLI11::CLI11 Threads::Threads)
# 16 clients in make test (label soak); the 32-client run stays in make test-long.
thinsnap_add_vm_test(NAME soak_vm
                     COMMAND env THINSNAP_SOAK_CLIENTS=16
                             bash ${CMAKE_SOURCE_DIR}/tests/soak/run-in-vm.sh ${CMAKE_BINARY_DIR}
                             $<TARGET_FILE:thinsnap_soak>
                     TIMEOUT 900 CPUS 2 LABELS soak)
thinsnap_add_vm_test(NAME soak_vm_32
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/soak/run-in-vm.sh ${CMAKE_BINARY_DIR}
                             $<TARGET_FILE:thinsnap_soak>
                     TIMEOUT 1200 CPUS 2 LABELS soak long)
