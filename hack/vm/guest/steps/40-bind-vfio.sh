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
assert_eq "PF2 VF2, VF3 in fastpath list (driver netdev iommuGroup)" \
    "vfio-pci null $(state_get pf2_vf2_group) vfio-pci null $(state_get pf2_vf3_group)" \
    "$(jqr "[.pfs[] | select(.pciAddress == \"$pf\") | .vfs[] | select(.index >= 2)
        | .driver, .netdev, .iommuGroup] | map(tostring) | join(\" \")")"
say "PF2 VF2, VF3 on vfio-pci: /dev/vfio/$(state_get pf2_vf2_group), /dev/vfio/$(state_get pf2_vf3_group)"
