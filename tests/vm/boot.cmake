# The boot sequence as shipped (deploy/*.service) and power cuts (tests/boot/).

# systemd-analyze verify on the units; on the host, no VM. Fails if systemd-analyze is missing.
add_test(NAME boot_units_verify
         COMMAND ${CMAKE_SOURCE_DIR}/tests/boot/verify-units.sh ${CMAKE_BINARY_DIR})
set_tests_properties(boot_units_verify PROPERTIES LABELS boot TIMEOUT 120)

# Power cuts: the host boots the VM again and again on the same persistent disk images and kills
# qemu with SIGKILL at random instants under a containerd + thinsnapctl workload; every boot runs
# the units' commands and checks everything acknowledged before the cut. These start their own
# VMs (several boots each), so they are plain tests rather than thinsnap_add_vm_test.
function(thinsnap_add_powercut_test name kind cuts timeout labels)
  add_test(NAME ${name}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/boot/powercut.sh ${CMAKE_BINARY_DIR} ${kind} ${cuts}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES LABELS "vm;boot;containerd;${labels}"
                       TIMEOUT ${timeout} PROCESSORS 2)
endfunction()
# make test: 5 cuts in all, both pool kinds.
thinsnap_add_powercut_test(powercut_loop loop 3 1500 "")
thinsnap_add_powercut_test(powercut_lvm lvm 2 1200 "")
# make test-long: 50 cuts in all.
thinsnap_add_powercut_test(powercut_loop_long loop 25 7200 long)
thinsnap_add_powercut_test(powercut_lvm_long lvm 25 7200 long)

# Boot-to-serving time with 1,000 snapshots, half of them with an active device.
thinsnap_add_vm_test(NAME bench_boot
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/boot/boot-bench.sh ${CMAKE_BINARY_DIR} 1000 3
                     TIMEOUT 2400 LABELS bench long)
