# The container side of a DPDK VF: vfio-check opens /dev/vfio/vfio and
# /dev/vfio/<group>, checks the API version and type1 IOMMU, that the group
# is viable, attaches it to the container, sets the IOMMU and gets the
# device fd, as a DPDK application does. A VF still on igbvf must fail.
. /fastpath-vm/lib.sh

explain "What a DPDK app in the pod does with the two device nodes the device plugin mounts."

for i in 2 3; do
    addr=$(state_get "pf2_vf$i")
    group=$(state_get "pf2_vf${i}_group")
    run vfio-check --container /dev/vfio/vfio --group "/dev/vfio/$group" "$addr"
    out=$(vfio-check "$addr" 2>&1) || fail "vfio-check $addr (group from sysfs): $out"
    assert_match "vfio-check $addr" "VFIO_GROUP_GET_DEVICE_FD $addr: fd [0-9]+, PCI device" "$out"
done
kernel_vf=$(state_get pf2_vf0)
must_fail "vfio-check on a VF bound to igbvf" vfio-check "$kernel_vf"
