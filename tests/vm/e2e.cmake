# containerd-facing VM tests (owned by tests/conformance and tests/e2e).
# Generous limits: both run containerd's Go code and many mkfs/mount cycles
# under TCG on a loaded 2-core machine.

# containerd's snapshots/testsuite (20 cases + Kata mount shape) through the proxy client.
thinsnap_add_vm_test(NAME conformance
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/conformance/run-in-vm.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 1200 LABELS containerd)

# containerd 1.6 + runc: import a 3-layer OCI image, run a container, GC everything.
thinsnap_add_vm_test(NAME ctr_e2e
                     COMMAND ${CMAKE_SOURCE_DIR}/tests/e2e/ctr-scenario.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 1200 LABELS containerd)
