# fastpath finds both emulated igb PFs, SR-IOV capable with 7 VFs each and
# none created yet. Records PF1/PF2 (by PCI address) for later steps.
. /fastpath-vm/lib.sh

pf_count() { ls -d /sys/bus/pci/drivers/igb/0000:* 2>/dev/null | wc -l; }
two_pf_netdevs() { [ "$(pf_count)" -eq 2 ] && [ "$(ls /sys/bus/pci/drivers/igb/0000:*/net 2>/dev/null | grep -c .)" -ge 2 ]; }
wait_for "2 igb PFs with netdevs" 20 two_pf_netdevs

run fastpath list
fp_list
assert_eq "number of PFs" 2 "$(jqr '.pfs | length')"
n=0
for pf in $(jqr '.pfs | sort_by(.pciAddress) | .[].pciAddress'); do
    n=$((n + 1))
    q=".pfs[] | select(.pciAddress == \"$pf\")"
    assert_eq "PF$n $pf driver" igb "$(jqr "$q.driver")"
    assert_eq "PF$n $pf vendor:device" 8086:10c9 "$(jqr "$q.ids | \"\(.vendor):\(.device)\"")"
    assert_eq "PF$n $pf totalVfs" 7 "$(jqr "$q.totalVfs")"
    assert_eq "PF$n $pf numVfs" 0 "$(jqr "$q.numVfs")"
    ifname=$(jqr "$q.netdev.name")
    assert_match "PF$n $pf netdev" '^[a-z0-9]+$' "$ifname"
    assert_eq "PF$n $pf sysfs netdev" "$ifname" "$(ls "/sys/bus/pci/devices/$pf/net")"
    run ip link set "$ifname" up
    state_set "pf$n" "$pf"
    state_set "pf${n}_if" "$ifname"
    say "PF$n: $pf ($ifname), igb, 0/7 VFs"
done
