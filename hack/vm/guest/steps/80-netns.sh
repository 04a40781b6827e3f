# What the CNI does with a kernel VF, and what happens when a pod's netns is
# deleted before DEL: the VF netdev moves into a netns and is renamed there;
# deleting the netns returns it to the host under its pod-side name (so the
# CNI's restore must find it by PCI address, not by name).
. /fastpath-vm/lib.sh

explain "A pod is a network namespace: the CNI moves the VF netdev into it and renames it."

addr=$(state_get pf1_vf1)
host_if=$(state_get pf1_vf1_if)
ns=fp-pod-$$

run ip netns add "$ns"
run ip link set "$host_if" netns "$ns"
run ip -n "$ns" link set "$host_if" name net1
run ip -n "$ns" link set net1 up
assert_match "net1 in $ns" 'net1' "$(ip -n "$ns" -o link show net1)"
assert_absent "/sys/class/net/$host_if"
assert_eq "netdev of $addr seen from the host" "" "$(vf_netdev "$addr")"

run ip netns del "$ns"
wait_for "$addr's netdev back in the host netns" 10 test -e /sys/class/net/net1
assert_eq "PCI device behind the returned net1" "$addr" "$(basename "$(readlink /sys/class/net/net1/device)")"
fp_list
assert_eq "fastpath list netdev of $addr" net1 "$(jqr ".pfs[].vfs[] | select(.pciAddress == \"$addr\") | .netdev.name")"
say "VF $addr came back as net1 (its pod-side name), not $host_if"

# Restore the host name, as the CNI's DEL will.
run ip link set net1 down
run ip link set net1 name "$host_if"
assert_eq "netdev of $addr after restore" "$host_if" "$(vf_netdev "$addr")"
