# Creates 4 VFs on each PF through sysfs (0 first, then N: the kernel refuses
# N -> M directly) and checks fastpath sees them: igbvf driver, a netdev, an
# IOMMU group of its own, the right PF and index.
. /fastpath-vm/lib.sh

for n in 1 2; do
    pf=$(state_get "pf$n")
    write_sysfs "/sys/bus/pci/devices/$pf/sriov_numvfs" 0
    write_sysfs "/sys/bus/pci/devices/$pf/sriov_numvfs" 4
done
vf_netdevs_ready() {
    for n in 1 2; do
        pf=$(state_get "pf$n")
        for i in 0 1 2 3; do
            [ -e "/sys/bus/pci/devices/$pf/virtfn$i" ] || return 1
            [ -n "$(vf_netdev "$(vf_addr "$pf" "$i")")" ] || return 1
        done
    done
}
wait_for "8 VFs with igbvf netdevs" 30 vf_netdevs_ready

fp_list
all_groups=
for n in 1 2; do
    pf=$(state_get "pf$n")
    q=".pfs[] | select(.pciAddress == \"$pf\")"
    assert_eq "PF$n numVfs" 4 "$(jqr "$q.numVfs")"
    assert_eq "PF$n VF indexes" "0 1 2 3" "$(jqr "[$q.vfs[].index] | map(tostring) | join(\" \")")"
    for i in 0 1 2 3; do
        addr=$(vf_addr "$pf" "$i")
        v="$q.vfs[] | select(.index == $i)"
        assert_eq "PF$n VF$i address" "$addr" "$(jqr "$v.pciAddress")"
        assert_eq "PF$n VF$i pf" "$pf" "$(jqr "$v.pf")"
        assert_eq "PF$n VF$i driver" igbvf "$(jqr "$v.driver")"
        assert_eq "PF$n VF$i vendor:device" 8086:10ca "$(jqr "$v.ids | \"\(.vendor):\(.device)\"")"
        assert_eq "PF$n VF$i netdev" "$(vf_netdev "$addr")" "$(jqr "$v.netdev.name")"
        group=$(jqr "$v.iommuGroup")
        assert_match "PF$n VF$i iommuGroup" '^[0-9]+$' "$group"
        assert_eq "PF$n VF$i iommu_group link" "$group" "$(basename "$(readlink "/sys/bus/pci/devices/$addr/iommu_group")")"
        assert_eq "devices in IOMMU group $group" "$addr" "$(ls "/sys/kernel/iommu_groups/$group/devices")"
        case " $all_groups " in *" $group "*) fail "IOMMU group $group shared by two VFs" ;; esac
        all_groups="$all_groups $group"
        state_set "pf${n}_vf${i}" "$addr"
        state_set "pf${n}_vf${i}_if" "$(vf_netdev "$addr")"
        state_set "pf${n}_vf${i}_group" "$group"
    done
    say "PF$n: 4 VFs $(jqr "[$q.vfs[] | \"\(.pciAddress)=\(.netdev.name)/g\(.iommuGroup)\"] | join(\" \")")"
done
