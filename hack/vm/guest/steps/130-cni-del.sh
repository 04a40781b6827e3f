# DEL gives everything back: the kernel VF returns to the host under its
# host name with its MAC and MTU, and the PF side is as before ADD (MAC,
# vlan 0, spoofchk, trust). A second pod whose netns is deleted before its
# DEL (the VF comes back under its pod-side name): DEL still restores it
# fully. DEL of the DPDK VF succeeds and restores its PF-side settings.
# demo: yes
. /fastpath-vm/lib.sh

explain "CNI DEL restores the VF; even when the pod's netns is already gone."
ns=$(state_get pod_a_ns)
cid=$(state_get pod_a_cid)
uid=$(state_get pod_a_uid)
net=$(state_get pod_net)
dpdk=$(state_get pod_dpdk)

# restored ADDR HOST_IF MAC MTU PF_IF IDX BEFORE: the VF is back as it was.
restored() {
    wait_for "$1's netdev back as $2" 10 test -e "/sys/class/net/$2"
    assert_eq "PCI device behind $2" "$1" "$(basename "$(readlink "/sys/class/net/$2/device")")"
    assert_eq "$2 mac mtu" "$3 $4" "$(cat "/sys/class/net/$2/address") $(cat "/sys/class/net/$2/mtu")"
    assert_eq "PF $5 vf $6 after DEL: mac vlan qos spoofchk trust" "$7" "$(pf_vf_view "$5" "$6")"
}

cni_ok DEL "$STATE/nad-net.json" "$cid" "/run/netns/$ns" net1 pod-a "$uid"
del_s=$cni_s
restored "$net" "$(state_get pod_net_host_if)" "$(state_get pod_net_host_mac)" "$(state_get pod_net_host_mtu)" \
    "$(state_get pod_net_pf_if)" "$(state_get pod_net_idx)" "$(state_get pod_net_before)"
say "pod-a net1 DEL: $net back as $(state_get pod_net_host_if), PF side: $(state_get pod_net_before)"

cni_ok DEL "$STATE/nad-dpdk.json" "$cid" "/run/netns/$ns" net2 pod-a "$uid"
# The CNI set vlan, spoofchk and trust (not the MAC: the NAD has none):
# those go back to their values before ADD; the MAC stays what it was
# before DEL (a VFIO reset in step 120 may have changed it, not the CNI).
after=$(pf_vf_view "$(state_get pod_dpdk_pf_if)" "$(state_get pod_dpdk_idx)")
assert_eq "PF side of the DPDK VF after DEL: vlan qos spoofchk trust" \
    "$(state_get pod_dpdk_before | cut -d' ' -f2-)" "$(echo "$after" | cut -d' ' -f2-)"
assert_eq "PF side of the DPDK VF after DEL: mac (untouched by DEL)" \
    "$(state_get pod_dpdk_before_del | cut -d' ' -f1)" "$(echo "$after" | cut -d' ' -f1)"
assert_eq "driver of the DPDK VF after DEL" vfio-pci "$(pci_driver "$dpdk")"
say "pod-a DPDK DEL: PF side of $dpdk back to: $after"
run ip netns del "$ns"

# Pod B: another kernel VF of the pool; its netns goes away before DEL.
b=
for v in $(jq -r '.results[] | select(.resource == "vm/sriov_net") | .devices[].id' "$STATE/kubelet.json"); do
    [ "$v" != "$net" ] && { b=$v; break; }
done
[ -n "$b" ] || fail "no second net VF"
b_pf=$(basename "$(readlink "/sys/bus/pci/devices/$b/physfn")")
b_pf_if=$(ls "/sys/bus/pci/devices/$b_pf/net")
b_idx=$(vf_index "$b_pf" "$b")
b_if=$(vf_netdev "$b")
b_mac=$(cat "/sys/class/net/$b_if/address")
b_mtu=$(cat "/sys/class/net/$b_if/mtu")
b_before=$(pf_vf_view "$b_pf_if" "$b_idx")
ns_b=fp-pod-b
cid_b=fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210
uid_b=6d1f4e2a-0000-4000-8000-00000000000b
jq --arg d "$b" '. + {deviceID: $d, pciBusID: $d}' /fastpath-vm/files/nad-net.json >"$STATE/nad-net-b.json" ||
    fail "jq: injecting deviceID"
run ip netns add "$ns_b"
cni_ok ADD "$STATE/nad-net-b.json" "$cid_b" "/run/netns/$ns_b" net1 pod-b "$uid_b"
assert_eq "pod-b ADD result interface" net1 "$(jq -r '.interfaces[0].name' "$STATE/cni.out")"
assert_eq "PF $b_pf_if vf $b_idx during pod-b" "02:fa:57:00:10:01 100 0 false true" "$(pf_vf_view "$b_pf_if" "$b_idx")"
run ip netns del "$ns_b"
wait_for "$b back in the host under its pod-side name net1" 10 test -e /sys/class/net/net1
assert_eq "PCI device behind the returned net1" "$b" "$(basename "$(readlink /sys/class/net/net1/device)")"
cni_ok DEL "$STATE/nad-net-b.json" "$cid_b" "/run/netns/$ns_b" net1 pod-b "$uid_b"
restored "$b" "$b_if" "$b_mac" "$b_mtu" "$b_pf_if" "$b_idx" "$b_before"
assert_absent /sys/class/net/net1
say "pod-b: netns deleted first, $b came back as net1; DEL restored it as $b_if, PF side: $b_before"

# A repeated DEL succeeds and changes nothing (the runtime may retry).
cni_ok DEL "$STATE/nad-net-b.json" "$cid_b" "/run/netns/$ns_b" net1 pod-b "$uid_b"
restored "$b" "$b_if" "$b_mac" "$b_mtu" "$b_pf_if" "$b_idx" "$b_before"
fact restored "CNI DEL gave $net back as $(state_get pod_net_host_if) (name, MAC, MTU, PF side) in ${del_s}s; pod-b's netns was deleted first: $b came back as net1, DEL restored it as $b_if"
