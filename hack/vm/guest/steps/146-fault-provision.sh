# Crash anywhere, recover everything (issue 7), provisioning: for every
# crash point of `fastpath apply` (after each kind of action and each
# journal write), `fastpath-faults apply` is killed there with SIGKILL,
# then the normal `fastpath apply` reads the journal, finishes or rolls
# back the interrupted step, and the node must end exactly at the policy:
# VF counts, drivers, PF and VF MTU, pinned MAC, no driver_override left,
# no journal, and a re-apply changes nothing. Two transitions on PF1 reach
# every point but load_module (vfio-pci is loaded for PF2's VFs):
#   base -> p1: mtu 9000, numVfs 1 -> 2 (0 first), VF1 to vfio-pci
#   p1 -> base: mtu 1500, numVfs 2 -> 1 (0 first)
#   p1 -> p2:   mtu 1500, VF0 MAC pinned and vfMtu 1400, VF1 back to igbvf
# Ends with PF1 at 7 igbvf VFs, as step 140 left it. Prints
# FAULT-MATRIX-PROVISION with the counts.
# demo: faults
. /fastpath-vm/lib.sh

explain "Kill fastpath apply (SIGKILL) after each action; the next apply must finish or roll back to exactly the policy."
pf1=$(state_get pf1)
pf1_if=$(state_get pf1_if)
pf2=$(state_get pf2)
pf2_if=$(state_get pf2_if)
journal=$FASTPATH_STATE_DIR/provision/journal.json
mac=02:fa:57:00:ff:00

policy() { # NAME, then PF1's entries on stdin; PF2 stays as step 90 set it
    {
        echo "policies:"
        sed "s/@PF1@/$pf1_if/g"
        cat <<EOF
  - name: pf2-net
    pfNames: ["$pf2_if#0-1"]
    numVfs: 4
    deviceType: netdevice
  - name: pf2-dpdk
    pfNames: ["$pf2_if#2-3"]
    numVfs: 4
    deviceType: vfio-pci
EOF
    } >"$STATE/fault-$1.yaml"
}
policy base <<'EOF'
  - name: pf1
    pfNames: ["@PF1@"]
    numVfs: 1
    deviceType: netdevice
    mtu: 1500
EOF
policy p1 <<'EOF'
  - name: pf1-net
    pfNames: ["@PF1@#0"]
    numVfs: 2
    deviceType: netdevice
    mtu: 9000
  - name: pf1-dpdk
    pfNames: ["@PF1@#1"]
    numVfs: 2
    deviceType: vfio-pci
EOF
policy p2 <<EOF
  - name: pf1-vf0
    pfNames: ["@PF1@#0"]
    numVfs: 2
    deviceType: netdevice
    mtu: 1500
    vfMtu: 1400
    macs: {0: "$mac"}
  - name: pf1-net
    pfNames: ["@PF1@#1"]
    numVfs: 2
    deviceType: netdevice
EOF
policy end <<'EOF'
  - name: pf1
    pfNames: ["@PF1@"]
    numVfs: 7
    deviceType: netdevice
EOF

apply() { # POLICY: the normal binary
    fastpath apply --policy "$STATE/fault-$1.yaml" >"$STATE/apply.out" 2>&1 ||
        fail "fastpath apply $1: $(tail -n 5 "$STATE/apply.out")"
}
# vfs PF: "index:driver ..." from sysfs.
vfs() {
    n=$(cat "/sys/bus/pci/devices/$1/sriov_numvfs") i=0 s=
    while [ "$i" -lt "$n" ]; do
        s="$s$i:$(pci_driver "$(vf_addr "$1" "$i")") "
        i=$((i + 1))
    done
    echo "${s% }"
}
at_policy() { # CASE POLICY: the node is exactly at the policy
    case $2 in
    base) want="0:igbvf" mtu=1500 ;;
    p1) want="0:igbvf 1:vfio-pci" mtu=9000 ;;
    p2) want="0:igbvf 1:igbvf" mtu=1500 ;;
    esac
    assert_eq "$1: PF1 VFs" "$want" "$(vfs "$pf1")"
    assert_eq "$1: PF2 VFs" "0:igbvf 1:igbvf 2:vfio-pci 3:vfio-pci" "$(vfs "$pf2")"
    assert_eq "$1: PF1 mtu" "$mtu" "$(cat "/sys/class/net/$pf1_if/mtu")"
    for pf in "$pf1" "$pf2"; do
        for l in /sys/bus/pci/devices/$pf/virtfn*; do
            assert_eq "$1: driver_override of $(basename "$(readlink "$l")")" "(null)" "$(cat "$l/driver_override")"
        done
    done
    if [ "$2" = p2 ]; then
        vf0_if=$(vf_netdev "$(vf_addr "$pf1" 0)")
        assert_eq "$1: PF1 VF0 mtu" 1400 "$(cat "/sys/class/net/$vf0_if/mtu")"
        assert_eq "$1: PF1 VF0 admin MAC" "$mac" "$(pf_vf_view "$pf1_if" 0 | cut -d' ' -f1)"
    fi
    assert_absent "$journal"
    fastpath apply --policy "$STATE/fault-$2.yaml" >"$STATE/apply.out" 2>&1 ||
        fail "$1: re-apply: $(tail -n 5 "$STATE/apply.out")"
    assert_match "$1: re-apply of $2" '^nothing changed$' "$(cat "$STATE/apply.out")"
}

t_matrix=$(uptime_cs)
points=$(fastpath-faults fault-points | grep '^provision\.') || fail "fastpath-faults fault-points"
# POINT FROM TO, ordered so that most cases start where the last ended
# (each recovery lands on TO; p1 -> base also passes the count and MTU
# points). A p2 case needs a p1 reached from base (new VFs, no pinned MAC).
cat >"$STATE/fault-cases" <<'EOF'
provision.after.journal_begin base p1
provision.after.journal_advance p1 base
provision.after.set_pf_mtu base p1
provision.after.numvfs_zero p1 base
provision.after.numvfs base p1
provision.after.wait_vfs p1 base
provision.after.unbind base p1
provision.after.pin_vf_mac p1 p2
provision.after.set_driver_override base p1
provision.after.set_vf_mtu p1 p2
provision.after.bind base p1
provision.after.drivers_probe p1 p2
provision.after.clear_driver_override base p1
provision.after.wait_netdev p1 p2
EOF
covered=0 rolled=0 finished=0 at=
# fd 3: the commands in the loop must not eat the case list.
while read -r p from to <&3; do
    printf '%s\n' "$points" | grep -qx "$p" || fail "$p is not a crash point of fastpath-faults"
    if [ "$at" != "$from" ]; then
        [ "$from" = base ] || apply base
        apply "$from"
    fi
    FASTPATH_CRASH_AT=$p fastpath-faults apply --policy "$STATE/fault-$to.yaml" >"$STATE/fault.out" 2>&1
    rc=$?
    [ "$rc" -eq 137 ] || fail "apply $from -> $to armed at $p: expected SIGKILL (exit 137), got $rc: $(tail -n 5 "$STATE/fault.out")"
    assert_exists "$journal"
    run fastpath apply --policy "$STATE/fault-$to.yaml"
    case $out in
    *"finished interrupted"*) finished=$((finished + 1)) ;;
    *"rolled back interrupted"*) rolled=$((rolled + 1)) ;;
    *) fail "apply after the crash at $p recovered nothing: $out" ;;
    esac
    at_policy "killed at $p ($from -> $to), then apply" "$to"
    at=$to
    covered=$((covered + 1))
done 3<"$STATE/fault-cases"
apply end
assert_eq "PF1 VFs at the end" "0:igbvf 1:igbvf 2:igbvf 3:igbvf 4:igbvf 5:igbvf 6:igbvf" "$(vfs "$pf1")"
# Every point but load_module (vfio-pci is loaded for PF2's VFs).
assert_eq "provisioning crash points covered" "$(printf '%s\n' "$points" | grep -vc load_module)" "$covered"
say "provisioning fault matrix: $covered crash points ($finished steps finished, $rolled rolled back) in $(elapsed_since "$t_matrix")s; load_module not reachable"
echo "FAULT-MATRIX-PROVISION points=$covered recovered=$covered finished=$finished rolled_back=$rolled seconds=$(elapsed_since "$t_matrix")"
fact faults "fastpath apply killed at $covered crash points: $finished finished, $rolled rolled back, all at the policy, in $(elapsed_since "$t_matrix")s"
