# Crash anywhere, recover everything (issue 7), CNI on a real igbvf VF:
# `fastpath-faults` (fastpath built with the fault-injection feature) is
# killed with SIGKILL after each step that needs a real PF (the PF-side
# settings igb takes: vlan, mac, spoofchk, trust, max_tx_rate; and the pod
# MAC, which comes with the PF-side MAC), in ADD and in DEL's restore, with
# a NAD that sets everything (also mtu and IPAM). The runtime's next DEL
# must restore the VF exactly: its host name, MAC, MTU and admin-down
# state, and the PF's view of it (`ip link show <PF>`); no record, no IPAM
# lease. The other CNI points are the host matrix's (tests/fault_matrix.rs).
# Prints FAULT-MATRIX-CNI with the counts.
# demo: faults
. /fastpath-vm/lib.sh

explain "Kill the CNI (SIGKILL) after each step; the next DEL must give the VF back exactly as it was."
pf1=$(state_get pf1)
pf_if=$(state_get pf1_if)
vf=$(vf_addr "$pf1" 0)
idx=0
host_if=$(vf_netdev "$vf")
[ -n "$host_if" ] || fail "VF $vf (PF1 VF0) has no netdev; step 140 should leave 7 igbvf VFs"
ns=fp-faults
net=vm-faults
leases=/var/lib/cni/networks/$net
run ip netns add "$ns"
jq -n --arg d "$vf" --arg n "$net" '{cniVersion: "1.1.0", name: $n, type: "fastpath",
    deviceID: $d, vlan: 42, mac: "02:fa:57:00:42:01", spoofchk: "off", trust: "on",
    max_tx_rate: 100, mtu: 1400,
    ipam: {type: "host-local", subnet: "10.56.219.0/24", routes: [{dst: "10.57.0.0/16"}],
           gateway: "10.56.219.1"}}' >"$STATE/nad-faults.json" || fail "jq: the NAD"

# The VF as the host and its PF see it: name mac mtu up | mac vlan qos
# spoofchk trust max_tx_rate.
snapshot() {
    link=$(ip -j link show dev "$host_if" 2>/dev/null | jq -r '.[0] | [.ifname, .address, .mtu,
        (if (.flags | index("UP")) then "up" else "down" end)] | map(tostring) | join(" ")')
    pfv=$(ip -j -d link show "$pf_if" | jq -r ".[0].vfinfo_list[] | select(.vf == $idx)
        | [.address, (.vlan_list[0].vlan // 0), (.vlan_list[0].qos // 0), .spoofchk, .trust, .rate.max_tx]
        | map(tostring) | join(\" \")")
    echo "${link:-absent} | $pfv"
}
before=$(snapshot)
say "VF $vf ($host_if, PF $pf_if vf $idx) before: $before"

# fcni POINT VERB CID: the armed binary, as Multus runs a delegate; sets $frc.
fcni() {
    FASTPATH_CRASH_AT=$1 CNI_COMMAND=$2 CNI_CONTAINERID=$3 CNI_NETNS=/run/netns/$ns CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=faults;K8S_POD_UID=uid-$3" \
        fastpath-faults <"$STATE/nad-faults.json" >"$STATE/fcni.out" 2>"$STATE/fcni.err"
    frc=$?
}
# killed_at POINT VERB CID: the armed run must die of SIGKILL (128 + 9).
killed_at() {
    fcni "$@"
    [ "$frc" -eq 137 ] || fail "$2 armed at $1: expected SIGKILL (exit 137), got $frc: $(cat "$STATE/fcni.out" "$STATE/fcni.err" | tail -n 5)"
    grep -q "SIGKILL at $1" "$STATE/fcni.err" || fail "$2 at $1: no crash message: $(tail -n 3 "$STATE/fcni.err")"
}
plain() { # VERB CID: the normal binary, must succeed
    CNI_COMMAND=$1 CNI_CONTAINERID=$2 CNI_NETNS=/run/netns/$ns CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=faults;K8S_POD_UID=uid-$2" \
        fastpath <"$STATE/nad-faults.json" >"$STATE/cni.out" 2>"$STATE/cni.err" ||
        fail "CNI $1 $2: $(cat "$STATE/cni.out" "$STATE/cni.err" | tail -n 5)"
}
restored() { # CASE
    wait_for "$host_if back in the host" 10 test -e "/sys/class/net/$host_if"
    assert_eq "$1: VF and PF view" "$before" "$(snapshot)"
    assert_eq "$1: records" "" "$(cni_records_left /var/lib/fastpath/cni)"
    assert_eq "$1: IPAM leases" "" "$(ls "$leases" 2>/dev/null | grep -v -e '^lock$' -e '^last_reserved_ip')"
    assert_eq "$1: links in the pod" "lo" "$(ip -n "$ns" -j link show | jq -r 'map(.ifname) | join(" ")')"
}

t_matrix=$(uptime_cs)
points=$(fastpath-faults fault-points) || fail "fastpath-faults fault-points"
# The points that need a PF; igb refuses link_state (step 70), so those
# two cannot be reached on it.
pf_points() { # PREFIX MAC_STEP
    printf '%s\n' "$points" | grep -e "^$1\.pf_side\." -e "^$1\.$2\$" | grep -v link_state
}
add_points=$(pf_points cni.add.after set_mac)
restore_points=$(pf_points cni.restore.after restore_mac)
covered=0 n=0
for p in $add_points; do
    n=$((n + 1))
    killed_at "$p" ADD "fa$n"
    plain DEL "fa$n"
    restored "ADD killed at $p, then DEL"
    covered=$((covered + 1))
done
say "ADD: $covered crash points, each killed and restored by the next DEL"
for p in $restore_points; do
    n=$((n + 1))
    plain ADD "fd$n"
    killed_at "$p" DEL "fd$n"
    plain DEL "fd$n"
    restored "DEL killed at $p, then DEL"
    covered=$((covered + 1))
done
# The VF still works: a clean ADD configures it, a clean DEL gives it back.
plain ADD fresh
assert_eq "PF $pf_if vf $idx after a clean ADD: mac vlan qos spoofchk trust max_tx_rate" \
    "02:fa:57:00:42:01 42 0 false true 100" "$(snapshot | sed 's/.*| //')"
plain DEL fresh
restored "a clean ADD+DEL after the matrix"
run ip netns del "$ns"
total=$(printf '%s\n' $add_points $restore_points | wc -l)
assert_eq "CNI crash points covered" "$total" "$covered"
say "CNI fault matrix on $vf: $covered crash points, $covered recoveries in $(elapsed_since "$t_matrix")s"
echo "FAULT-MATRIX-CNI points=$covered recovered=$covered seconds=$(elapsed_since "$t_matrix")"
fact faults "CNI killed (SIGKILL) at $covered crash points on $vf: all $covered restored by the next DEL in $(elapsed_since "$t_matrix")s"
