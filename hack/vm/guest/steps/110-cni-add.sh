# The runtime's side: a pod netns, then the fastpath CNI executed exactly as
# Multus executes a delegate (deviceID and pciBusID injected from the
# Allocate, Multus's CNI_ARGS, CNI_PATH with host-local). The kernel VF must
# be in the netns as net1 with the NAD's MAC, MTU and IP, and the PF must
# show the VF's vlan, spoofchk off, trust on and MAC. The DPDK VF goes
# through the same CNI: PF-side settings and IPAM only, result with pciID.
# demo: yes
. /fastpath-vm/lib.sh

explain "What Multus does for a pod with two SR-IOV networks: one CNI ADD per network."
net=$(state_get pod_net)
dpdk=$(state_get pod_dpdk)
ns=fp-pod-a
cid=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
uid=6d1f4e2a-0000-4000-8000-00000000000a
state_set pod_a_ns "$ns"
state_set pod_a_cid "$cid"
state_set pod_a_uid "$uid"

# Where each VF is and how it looks before the pod: DEL must restore this.
for kind in net dpdk; do
    addr=$(state_get "pod_$kind")
    pf_addr=$(basename "$(readlink "/sys/bus/pci/devices/$addr/physfn")")
    pf_if=$(ls "/sys/bus/pci/devices/$pf_addr/net")
    idx=$(vf_index "$pf_addr" "$addr")
    state_set "pod_${kind}_pf_if" "$pf_if"
    state_set "pod_${kind}_idx" "$idx"
    state_set "pod_${kind}_before" "$(pf_vf_view "$pf_if" "$idx")"
done
host_if=$(vf_netdev "$net")
[ -n "$host_if" ] || fail "the allocated net VF $net has no netdev"
state_set pod_net_host_if "$host_if"
state_set pod_net_host_mac "$(cat "/sys/class/net/$host_if/address")"
state_set pod_net_host_mtu "$(cat "/sys/class/net/$host_if/mtu")"
say "net VF $net ($host_if, PF $(state_get pod_net_pf_if) vf $(state_get pod_net_idx)): $(state_get pod_net_before)"
say "dpdk VF $dpdk (PF $(state_get pod_dpdk_pf_if) vf $(state_get pod_dpdk_idx)): $(state_get pod_dpdk_before)"

run ip netns add "$ns"
# Multus injects the allocated device into the delegate's config.
# One jq run for both (a jq start costs about a second under TCG): one
# compact line each.
{
    read -r nad_net
    read -r nad_dpdk
} <<EOF
$(jq -c -n --arg n "$net" --arg d "$dpdk" --slurpfile a /fastpath-vm/files/nad-net.json \
    --slurpfile b /fastpath-vm/files/nad-dpdk.json \
    '($a[0] + {deviceID: $n, pciBusID: $n}), ($b[0] + {deviceID: $d, pciBusID: $d})')
EOF
[ -n "$nad_dpdk" ] || fail "jq: injecting deviceID"
printf '%s\n' "$nad_net" >"$STATE/nad-net.json"
printf '%s\n' "$nad_dpdk" >"$STATE/nad-dpdk.json"

cni_ok ADD "$STATE/nad-net.json" "$cid" "/run/netns/$ns" net1 pod-a "$uid"
net_s=$cni_s
cp "$STATE/cni.out" "$STATE/add-net.json"
assert_eq "ADD result: interface, mac, mtu, pciID, sandbox, ip" \
    "net1 02:fa:57:00:10:01 1400 $net /run/netns/$ns 10.56.217.171/24" \
    "$(jq -r '[.interfaces[0].name, .interfaces[0].mac, .interfaces[0].mtu, .interfaces[0].pciID, .interfaces[0].sandbox, .ips[0].address] | map(tostring) | join(" ")' "$STATE/add-net.json")"
assert_absent "/sys/class/net/$host_if"
assert_eq "net1 in $ns: mac mtu ipv4 state" "02:fa:57:00:10:01 1400 10.56.217.171/24 UP" \
    "$(ip -n "$ns" -j addr show dev net1 | jq -r '.[0] | [.address, .mtu, (.addr_info[] | select(.family == "inet") | "\(.local)/\(.prefixlen)"), (.flags | if index("UP") then "UP" else "DOWN" end)] | map(tostring) | join(" ")')"
assert_eq "PCI device behind net1 in $ns" "$net" \
    "$(ip netns exec "$ns" /bb/sh -c 'basename $(readlink /sys/class/net/net1/device)')"
pf_if=$(state_get pod_net_pf_if)
idx=$(state_get pod_net_idx)
assert_eq "PF $pf_if vf $idx: mac vlan qos spoofchk trust" "02:fa:57:00:10:01 100 0 false true" "$(pf_vf_view "$pf_if" "$idx")"
assert_match "ip link show $pf_if" "vf $idx .*link/ether 02:fa:57:00:10:01.*vlan 100.*spoof checking off.*trust on" \
    "$(ip link show "$pf_if" | tr '\n' ' ')"
say "pod-a net1: VF $net, 02:fa:57:00:10:01, mtu 1400, 10.56.217.171/24; PF side vlan 100, spoofchk off, trust on"

cni_ok ADD "$STATE/nad-dpdk.json" "$cid" "/run/netns/$ns" net2 pod-a "$uid"
dpdk_s=$cni_s
cp "$STATE/cni.out" "$STATE/add-dpdk.json"
assert_eq "DPDK ADD result: pciID, ip" "$dpdk 10.56.218.10/24" \
    "$(jq -r '[.interfaces[0].pciID, .ips[0].address] | join(" ")' "$STATE/add-dpdk.json")"
assert_eq "driver of the DPDK VF" vfio-pci "$(pci_driver "$dpdk")"
pf_if=$(state_get pod_dpdk_pf_if)
idx=$(state_get pod_dpdk_idx)
view=$(pf_vf_view "$pf_if" "$idx")
state_set pod_dpdk_after_add "$view"
assert_eq "PF $pf_if vf $idx: vlan qos spoofchk trust" "300 0 false true" "$(echo "$view" | cut -d' ' -f2-)"
say "pod-a DPDK VF $dpdk: pciID in the result, 10.56.218.10/24 from IPAM; PF side vlan 300, spoofchk off, trust on"
fact attached "pod-a got kernel VF $net as net1 (10.56.217.171/24, vlan 100) in ${net_s}s and DPDK VF $dpdk (vfio-pci, vlan 300) in ${dpdk_s}s (CNI ADD each)"
