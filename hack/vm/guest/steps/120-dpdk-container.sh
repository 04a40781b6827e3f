# The DPDK container's side: with only the device nodes the Allocate
# response listed (/dev/vfio/vfio and /dev/vfio/<group>), vfio-check does
# what a DPDK application does: API version, type1 IOMMU, group viable
# (VFIO_GROUP_GET_STATUS), VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU,
# VFIO_GROUP_GET_DEVICE_FD for the allocated VF.
# demo: yes
. /fastpath-vm/lib.sh

explain "The pod's DPDK app opens the VF through the two device nodes the device plugin mounted."
dpdk=$(state_get pod_dpdk)
container=$(state_get pod_dpdk_container)
group=$(state_get pod_dpdk_group)
assert_eq "container device from Allocate" /dev/vfio/vfio "$container"
run vfio-check --container "$container" --group "$group" "$dpdk"
assert_match "vfio-check $dpdk" "VFIO_GROUP_GET_DEVICE_FD $dpdk: fd [0-9]+, PCI device" "$out"
say "DPDK VF $dpdk usable through $container and $group"
# Opening the device resets the VF (VFIO); igb may give it another admin
# MAC then. Recorded so that step 130 checks DEL against what it found.
view=$(pf_vf_view "$(state_get pod_dpdk_pf_if)" "$(state_get pod_dpdk_idx)")
state_set pod_dpdk_before_del "$view"
say "PF view of the DPDK VF after the container opened it: $view (after ADD: $(state_get pod_dpdk_after_add); before ADD: $(state_get pod_dpdk_before))"
fact opened "the DPDK VF $dpdk through $container and $group, as a DPDK app in the pod does (vfio-check)"
