# The node's starting state by policy: `fastpath apply` gives PF1 4 kernel
# VFs and PF2 2 kernel + 2 vfio-pci VFs (per-range entries), checked with
# `fastpath list --json`; then the agent starts in the background with the
# two pools in the reference device-plugin format (vm/sriov_net: igbvf VFs,
# vm/sriov_dpdk: vfio-pci VFs), in kubelet plugin-watcher mode.
# demo: yes
. /fastpath-vm/lib.sh

explain "One policy file says how many VFs each PF has and which driver each VF gets."
pf1_if=$(state_get pf1_if)
pf2_if=$(state_get pf2_if)
mkdir -p -m 0700 "$FASTPATH_STATE_DIR"
policy() { # NUM_VFS_PF1 OUT
    sed "s/@PF1@/$pf1_if/; s/@PF2@/$pf2_if/g; s/@PF1_VFS@/$1/" /fastpath-vm/files/policy.yaml.in >"$2"
}
policy 4 "$STATE/policy.yaml"
policy 7 "$STATE/policy-7.yaml"
if demo; then run cat "$STATE/policy.yaml"; fi
pf1=$(state_get pf1)
pf2=$(state_get pf2)
numvfs() { cat "/sys/bus/pci/devices/$pf1/sriov_numvfs" "/sys/bus/pci/devices/$pf2/sriov_numvfs" | awk '{ n += $1 } END { print n }'; }
vfs_before=$(numvfs)
t_apply=$(uptime_cs)
run fastpath apply --policy "$STATE/policy.yaml"
apply_s=$(elapsed_since "$t_apply")
# The demo showed the whole output already.
demo || printf '%s\n' "$out" | grep '^time:' | sed 's/^/  /'

fp_list
# One jq run: "pf index address driver netdev group" for every VF.
jqr '.pfs | sort_by(.pciAddress) | .[] | .vfs[]
    | [.pf, .index, .pciAddress, .driver, (.netdev.name // "-"), .iommuGroup]
    | map(tostring) | join(" ")' >"$STATE/vfs"
got=$(awk -v a="$pf1" -v b="$pf2" '{ n = ($1 == a) ? 1 : ($1 == b) ? 2 : 0; printf "PF%d:%s:%s ", n, $2, $4 }' "$STATE/vfs")
assert_eq "VFs by PF, index, driver" \
    "PF1:0:igbvf PF1:1:igbvf PF1:2:igbvf PF1:3:igbvf PF2:0:igbvf PF2:1:igbvf PF2:2:vfio-pci PF2:3:vfio-pci " "$got"
while read -r pf i addr driver netdev group; do
    n=1
    [ "$pf" = "$pf1" ] || n=2
    if [ "$driver" = igbvf ]; then
        [ "$netdev" != - ] || fail "PF$n VF$i ($addr) on igbvf has no netdev"
    else
        assert_eq "netdev of vfio-pci VF $addr" - "$netdev"
        assert_exists "/dev/vfio/$group"
    fi
    state_set "pf${n}_vf${i}" "$addr"
    state_set "pf${n}_vf${i}_if" "$netdev"
    state_set "pf${n}_vf${i}_group" "$group"
done <"$STATE/vfs"
run fastpath apply --policy "$STATE/policy.yaml"
assert_match "re-apply of the same policy" '^nothing changed$' "$out"
say "policy applied: PF1 4 x igbvf; PF2 2 x igbvf + 2 x vfio-pci; re-apply changes nothing"
fact created "$(($(numvfs) - vfs_before)) VFs ($vfs_before were there) by fastpath apply in ${apply_s}s; now $pf1_if 4 igbvf, $pf2_if 2 igbvf + 2 vfio-pci (/dev/vfio/$(state_get pf2_vf2_group), /dev/vfio/$(state_get pf2_vf3_group))"

explain "The agent: one device plugin per pool, pools in sriov-network-device-plugin's config format."
mkdir -p "$REGISTRY" "$KUBELET/device-plugins" "$KUBELET/devinfo"
# A wrapper keeps the agent's exit status for step 150 (it is not a child
# of that step's shell).
# The agent also owns the node policy (--policy): it reconciles on start
# (nothing to change: the CLI just applied it) and whenever the file changes
# (step 140).
printf '  $ fastpath agent --config /fastpath-vm/files/pools.json --policy %s --plugins-registry-dir %s --device-plugin-dir %s --devinfo-dir %s >%s 2>&1 &\n' \
    "$STATE/policy.yaml" "$REGISTRY" "$KUBELET/device-plugins" "$KUBELET/devinfo" "$LOGS/agent.log"
t_agent=$(uptime_cs)
setsid sh -c 'fastpath agent --config /fastpath-vm/files/pools.json --policy "$4/policy.yaml" \
    --plugins-registry-dir "$1" --device-plugin-dir "$2" --devinfo-dir "$3" & echo $! >"$4/agent.pid"; wait $!; echo $? >"$4/agent.rc"' \
    agent "$REGISTRY" "$KUBELET/device-plugins" "$KUBELET/devinfo" "$STATE" \
    >"$LOGS/agent.log" 2>&1 &
socks_ready() { [ -S "$REGISTRY/vm_sriov_net.sock" ] && [ -S "$REGISTRY/vm_sriov_dpdk.sock" ]; }
wait_for "the agent's plugin sockets in $REGISTRY" 20 socks_ready
# Registration sockets are what kubelet's plugin watcher acts on.
socks_s=$(elapsed_since "$t_agent")
pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"
say "agent running (pid $pid): $(ls "$REGISTRY" | tr '\n' ' ')"
if demo; then run cat "$LOGS/agent.log"; fi

explain "fastpath status asks the running agent (a 0600 unix socket in the state dir) what it serves."
run fastpath status --json
printf '%s\n' "$out" >"$STATE/status.json"
# One jq run, two lines: the pools, the last reconcile's error.
{
    read -r pools
    read -r reconcile_error
} <<EOF
$(jq -r '([.pools[] | "\(.resource):\(.capacity):\(.healthy)"] | sort | join(" ")), (.lastReconcile.error | tostring)' "$STATE/status.json")
EOF
assert_eq "status: pools" "vm/sriov_dpdk:2:2 vm/sriov_net:6:6" "$pools"
assert_eq "status: last policy reconcile error" "null" "$reconcile_error"

explain "fastpath doctor reads the node as an operator would: the IOMMU is on here."
printf '  $ fastpath doctor --json >%s\n' "$STATE/doctor.json"
fastpath doctor --json >"$STATE/doctor.json" 2>/dev/null
assert_eq "doctor: iommu, SR-IOV PFs" "ok ok" \
    "$(jq -r '[(.findings[] | select(.check == "iommu") | .status), (.findings[] | select(.check == "sriov-pfs") | .status)] | join(" ")' "$STATE/doctor.json")"
# "vm/sriov_dpdk:2:2 vm/sriov_net:6:6" -> "vm/sriov_dpdk 2 VFs, vm/sriov_net 6 VFs"
pools=$(echo "$pools" | sed 's/:\([0-9]*\):[0-9]*/ \1 VFs,/g; s/,$//')
say "status: $pools; doctor: iommu ok, SR-IOV PFs ok"
fact advertised "$pools: plugin sockets up ${socks_s}s after the agent started"
