# Rebinds VF2 and VF3 of PF2 to vfio-pci with the kernel's sequence (unbind,
# driver_override, drivers_probe, clear the override), as DPDK pools need:
# the netdev goes away and /dev/vfio/<group> appears.
. /fastpath-vm/lib.sh

explain "A DPDK pod gets the VF as /dev/vfio/<group>, not as a netdev."
for i in 2 3; do
    addr=$(state_get "pf2_vf$i")
    group=$(state_get "pf2_vf${i}_group")
    bind_driver "$addr" vfio-pci
    wait_for "/dev/vfio/$group" 10 test -c "/dev/vfio/$group"
    assert_eq "netdev of $addr under vfio-pci" "" "$(vf_netdev "$addr")"
done
fp_list
pf=$(state_get pf2)
for i in 2 3; do
    v=".pfs[] | select(.pciAddress == \"$pf\") | .vfs[] | select(.index == $i)"
    assert_eq "PF2 VF$i driver in fastpath list" vfio-pci "$(jqr "$v.driver")"
    assert_eq "PF2 VF$i netdev in fastpath list" null "$(jqr "$v.netdev")"
    assert_eq "PF2 VF$i iommuGroup in fastpath list" "$(state_get "pf2_vf${i}_group")" "$(jqr "$v.iommuGroup")"
done
say "PF2 VF2, VF3 on vfio-pci: /dev/vfio/$(state_get pf2_vf2_group), /dev/vfio/$(state_get pf2_vf3_group)"
