# Creates 4 VFs on each PF through sysfs (0 first, then N: the kernel refuses
# N -> M directly) and checks fastpath sees them: igbvf driver, a netdev, an
# IOMMU group of its own, the right PF and index.
. /fastpath-vm/lib.sh

explain "Writing sriov_numvfs makes the igb PF spawn VFs; igbvf binds each, one IOMMU group per VF."

for n in 1 2; do
    pf=$(state_get "pf$n")
    write_sysfs "/sys/bus/pci/devices/$pf/sriov_numvfs" 0
    write_sysfs "/sys/bus/pci/devices/$pf/sriov_numvfs" 4
done
vf_netdevs_ready() {
    for pf in $(state_get pf1) $(state_get pf2); do
        for i in 0 1 2 3; do
            [ -e "/sys/bus/pci/devices/$pf/virtfn$i/net" ] || return 1
            [ -n "$(ls "/sys/bus/pci/devices/$pf/virtfn$i/net")" ] || return 1
        done
    done
}
wait_for "8 VFs with igbvf netdevs" 30 vf_netdevs_ready

fp_list
assert_eq "numVfs of PF1 and PF2" "4 4" "$(jqr '[.pfs | sort_by(.pciAddress) | .[].numVfs] | map(tostring) | join(" ")')"
jqr '.pfs | sort_by(.pciAddress) | .[] | .vfs[]
    | [.pf, .index, .pciAddress, .driver, "\(.ids.vendor):\(.ids.device)", .netdev.name, .iommuGroup]
    | map(tostring) | join(" ")' >"$STATE/vfs"
assert_eq "VFs listed" 8 "$(grep -c . "$STATE/vfs")"
all_groups=
while read -r pf i addr driver ids netdev group; do
    n=1
    [ "$pf" = "$(state_get pf1)" ] || n=2
    [ "$pf" = "$(state_get "pf$n")" ] || fail "VF $addr names PF $pf, which is neither PF1 nor PF2"
    dev=/sys/bus/pci/devices/$addr
    assert_eq "PF$n VF$i address" "$(basename "$(readlink "/sys/bus/pci/devices/$pf/virtfn$i")")" "$addr"
    assert_eq "PF$n VF$i driver" igbvf "$driver"
    assert_eq "PF$n VF$i vendor:device" 8086:10ca "$ids"
    assert_eq "PF$n VF$i netdev" "$(ls "$dev/net")" "$netdev"
    assert_match "PF$n VF$i iommuGroup" '^[0-9]+$' "$group"
    assert_eq "devices in IOMMU group $group" "$addr" "$(ls "/sys/kernel/iommu_groups/$group/devices")"
    case " $all_groups " in *" $group "*) fail "IOMMU group $group shared by two VFs" ;; esac
    all_groups="$all_groups $group"
    state_set "pf${n}_vf${i}" "$addr"
    state_set "pf${n}_vf${i}_if" "$netdev"
    state_set "pf${n}_vf${i}_group" "$group"
done <"$STATE/vfs"
for n in 1 2; do
    say "PF$n: 4 VFs on igbvf:$(awk -v pf="$(state_get "pf$n")" '$1 == pf { printf " %s=%s/group%s", $3, $6, $7 }' "$STATE/vfs")"
done
