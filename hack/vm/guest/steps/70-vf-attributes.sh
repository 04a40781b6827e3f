# The PF-side VF attributes the CNI sets (`ip link set <PF> vf N ...`) and
# reads back from `ip link show <PF>`: MAC, VLAN + QoS, spoofchk, trust,
# max_tx_rate are accepted; 802.1ad, link_state and min_tx_rate are refused
# by igb (the CNI must report those as unsupported, not half-apply them).
. /fastpath-vm/lib.sh

explain "The CNI configures a VF from the PF side through netlink (IFLA_VF_*), as ip link set <PF> vf N does."

pf=$(state_get pf1_if)
vfinfo() { # jq filter over VF 0's entry in `ip -j -d link show $pf`
    ip -j -d link show "$pf" | jq -r ".[0].vfinfo_list[] | select(.vf == 0) | $1" ||
        fail "ip -j -d link show $pf"
}

run ip link set "$pf" vf 0 mac 02:fa:57:00:00:01
run ip link set "$pf" vf 0 vlan 100 qos 3
run ip link set "$pf" vf 0 spoofchk off
run ip link set "$pf" vf 0 trust on
run ip link set "$pf" vf 0 max_tx_rate 100
if demo; then ip link show "$pf" | sed 's/^/    /'; fi
# One `ip -j` + jq run for all attributes (process starts are slow in TCG).
fields='[.address, (.vlan_list[0].vlan // 0), (.vlan_list[0].qos // 0), .spoofchk, .trust, .rate.max_tx] | map(tostring) | join(" ")'
assert_eq "VF0 mac vlan qos spoofchk trust max_tx_rate" \
    "02:fa:57:00:00:01 100 3 false true 100" "$(vfinfo "$fields")"
# The plain text form the issue's scenario greps for, too.
assert_match "ip link show $pf" 'vf 0 .*link/ether 02:fa:57:00:00:01.*vlan 100, qos 3.*spoof checking off.*trust on' \
    "$(ip link show "$pf" | tr '\n' ' ')"

must_fail "802.1ad on igb" ip link set "$pf" vf 0 vlan 100 proto 802.1ad
must_fail "link_state on igb" ip link set "$pf" vf 0 state disable
must_fail "min_tx_rate on igb" ip link set "$pf" vf 0 min_tx_rate 10

# Back to what a VF looks like after creation, as a CNI DEL must leave it.
run ip link set "$pf" vf 0 mac 00:00:00:00:00:00 vlan 0 spoofchk on trust off max_tx_rate 0
assert_eq "VF0 mac vlan qos spoofchk trust max_tx_rate after reset" \
    "00:00:00:00:00:00 0 0 true false 0" "$(vfinfo "$fields")"
