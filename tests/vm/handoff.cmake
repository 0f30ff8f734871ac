# handoff_vm (issue 16): nested VMs consume thinsnap's devices as Kata (q35, virtio-blk-pci
# hot-plugged over QMP on a PCIe root port) and Firecracker (microvm, virtio-blk-device on
# virtio-mmio, cold-plugged) do: the guest mounts the Mount, checks the image's file and writes its
# own, which the host then finds in a child of the committed snapshot; ext2 and ext3 snapshots of two
# more pools ride along on the microvm; the hot-plugged one's max-size label shows in the guest's df;
# and a snapshot Removed while a VM holds it attached stays intact until it is detached
# (tests/vm/handoff/handoff.sh). The nested VMs run under TCG inside the TCG test VM: 3 to 7
# minutes in all, with the host's load. Needs thinsnapctl, thinsnapd and thinsnap_churn (vm-lib.sh
# checks for all three).
thinsnap_add_vm_test(NAME handoff_vm
                     COMMAND bash ${CMAKE_SOURCE_DIR}/tests/vm/handoff/handoff.sh ${CMAKE_BINARY_DIR}
                     TIMEOUT 900)
