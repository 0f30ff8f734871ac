# Fault injection (tests/vm/crash/): thinsnapd killed with SIGKILL at every failpoint, then
# restarted and checked (thinsnapctl check, thin ids vs SQLite, content, dm devices, thin_check,
# retry). The randomised run kills it at random instants under concurrent clients.
thinsnap_add_vm_test(NAME crash_points
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/crash/points.sh
                             $<TARGET_FILE:thinsnapctl> $<TARGET_FILE:thinsnapd>
                     TIMEOUT 2400 LABELS crash)
# 30 iterations x 4 clients.
thinsnap_add_vm_test(NAME crash_random
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/crash/random.sh
                             $<TARGET_FILE:thinsnapctl> $<TARGET_FILE:thinsnapd> 6 4
                     TIMEOUT 1800 LABELS crash)
thinsnap_add_vm_test(NAME crash_random_long
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/crash/random.sh
                             $<TARGET_FILE:thinsnapctl> $<TARGET_FILE:thinsnapd> 30 4
                     TIMEOUT 3600 LABELS crash long)
