# fastpath finds both emulated igb PFs, SR-IOV capable with 7 VFs each and
# none created yet. Records PF1/PF2 (by PCI address) for later steps.
# demo: yes
. /fastpath-vm/lib.sh

explain "fastpath list reads sysfs only: PCI functions with sriov_totalvfs are PFs."

pf_count() { ls -d /sys/bus/pci/drivers/igb/0000:* 2>/dev/null | wc -l; }
two_pf_netdevs() { [ "$(pf_count)" -eq 2 ] && [ "$(ls /sys/bus/pci/drivers/igb/0000:*/net 2>/dev/null | grep -c .)" -ge 2 ]; }
wait_for "2 igb PFs with netdevs" 20 two_pf_netdevs

fp_list
# One jq run for all fields (a jq start costs about a second under TCG).
jqr '.pfs | sort_by(.pciAddress) | .[]
    | [.pciAddress, .driver, "\(.ids.vendor):\(.ids.device)", .totalVfs, .numVfs, .netdev.name]
    | map(tostring) | join(" ")' >"$STATE/pfs"
assert_eq "number of PFs" 2 "$(grep -c . "$STATE/pfs")"
n=0
while read -r pf driver ids total num ifname; do
    n=$((n + 1))
    assert_eq "PF$n $pf driver" igb "$driver"
    assert_eq "PF$n $pf vendor:device" 8086:10c9 "$ids"
    assert_eq "PF$n $pf totalVfs" 7 "$total"
    assert_eq "PF$n $pf numVfs" 0 "$num"
    assert_eq "PF$n $pf netdev" "$(ls "/sys/bus/pci/devices/$pf/net")" "$ifname"
    state_set "pf$n" "$pf"
    state_set "pf${n}_if" "$ifname"
    say "PF$n: $pf ($ifname), igb, 0/7 VFs"
done <"$STATE/pfs"
for n in 1 2; do run ip link set "$(state_get "pf${n}_if")" up; done
