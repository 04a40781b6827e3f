# Policy from the cluster (issue 17) on the real igb PF: the stand-in API
# server (testing/fake-apiserver) serves this node's Node (labelled
# network-sriov.capable) and a SriovNetworkNodePolicy `vm-net` (4
# netdevice VFs on PF1, resourceName vm_net); `fastpath agent
# --policy-source cluster` applies it (PF1 goes from the 7 VFs step 146
# left to 4 igbvf VFs) and serves the pool openshift.io/vm_net. Then the
# objects change live: `vm-net` becomes 6 VFs with VFs 0-3 and a new
# policy `vm-dpdk` takes VFs 4-5 on vfio-pci (resourceName vm_dpdk).
# Checked each time, with the same agent process: sysfs (sriov_numvfs,
# drivers), the pools through the fake kubelet's ListAndWatch, the
# SriovNetworkNodeState status the agent wrote by server-side apply
# (syncStatus Succeeded, PF1's interface with its VFs and drivers) and the
# PolicyApplied Events. Measures the object change to the VFs changed and
# to kubelet seeing the new pool. Leaves PF1 at 6 VFs (0-3 igbvf, 4-5
# vfio-pci), the agent and the stand-in stopped.
. /fastpath-vm/lib.sh

pf1=$(state_get pf1)
pf1_if=$(state_get pf1_if)
ns=fastpath
sys=/sys/bus/pci/devices/$pf1

explain "The operator's SriovNetworkNodePolicy objects, served by a stand-in API server, drive the VFs live."
rm -rf "$API_DIR"
mkdir -p "$API_DIR"
cat >"$API_DIR/10-node.yaml" <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  labels:
    kubernetes.io/hostname: $NODE_NAME
    feature.node.kubernetes.io/network-sriov.capable: "true"
EOF
# policies NUM_VFS NET_RANGE [dpdk]: the policy file (one or two objects).
policies() {
    cat <<EOF
apiVersion: sriovnetwork.openshift.io/v1
kind: SriovNetworkNodePolicy
metadata:
  name: vm-net
  namespace: $ns
spec:
  resourceName: vm_net
  nodeSelector:
    feature.node.kubernetes.io/network-sriov.capable: "true"
  priority: 10
  numVfs: $1
  nicSelector:
    vendor: "8086"
    pfNames: ["$pf1_if$2"]
  deviceType: netdevice
EOF
    [ "$3" = dpdk ] || return 0
    cat <<EOF
---
apiVersion: sriovnetwork.openshift.io/v1
kind: SriovNetworkNodePolicy
metadata:
  name: vm-dpdk
  namespace: $ns
spec:
  resourceName: vm_dpdk
  nodeSelector:
    feature.node.kubernetes.io/network-sriov.capable: "true"
  priority: 10
  numVfs: $1
  nicSelector:
    vendor: "8086"
    pfNames: ["$pf1_if#4-5"]
  deviceType: vfio-pci
EOF
}
policies 4 "" >"$API_DIR/20-policies.yaml"
if demo; then run cat "$API_DIR/20-policies.yaml"; fi
api_start
say "stand-in API server: Node $NODE_NAME, SriovNetworkNodePolicy $ns/vm-net (PF1 $pf1_if: 4 netdevice VFs)"

# numvfs_drivers: "N d0 d1 ..." for PF1 (sriov_numvfs, then each VF's driver).
numvfs_drivers() {
    read -r n <"$sys/sriov_numvfs"
    out=$n
    i=0
    while [ "$i" -lt "$n" ]; do
        d=none
        [ -e "$sys/virtfn$i/driver" ] && d=$(basename "$(readlink "$sys/virtfn$i/driver")")
        out="$out $d"
        i=$((i + 1))
    done
    echo "$out"
}
pf1_is() { [ "$(numvfs_drivers)" = "$1" ]; }

mkdir -p "$REGISTRY" "$KUBELET/device-plugins" "$KUBELET/devinfo"
read -r vfs_before <"$sys/sriov_numvfs"
t_start=$(uptime_cs)
agent_start agent-cluster --policy-source cluster --kube-api-server "$API" \
    --namespace "$ns" --node-name "$NODE_NAME" --config /fastpath-vm/files/pools.json \
    --plugins-registry-dir "$REGISTRY" --device-plugin-dir "$KUBELET/device-plugins" \
    --devinfo-dir "$KUBELET/devinfo" --http-addr off
pid=$(state_get agent-cluster.pid)
want4="4 igbvf igbvf igbvf igbvf"
wait_for "PF1 at 4 igbvf VFs by the policy object" 60 pf1_is "$want4"
first_s=$(elapsed_since "$t_start")
say "agent (pid $pid) applied vm-net: PF1 $(numvfs_drivers) (${first_s}s after it started)"

vf() { basename "$(readlink "$sys/virtfn$1")"; }
sorted() { printf '%s\n' "$@" | sort | tr '\n' , | sed 's/,$//'; }
run sh -c "fake-kubelet --plugins-registry-dir $REGISTRY --resource openshift.io/vm_net --allocate 0 --timeout 30 >$STATE/cluster-kubelet.json"
assert_eq "openshift.io/vm_net ListAndWatch" "$(sorted "$(vf 0)" "$(vf 1)" "$(vf 2)" "$(vf 3)")" \
    "$(jq -r '.results[0].devices | map(.id) | sort | join(",")' "$STATE/cluster-kubelet.json")"

# node_state SYNC NUMVFS DRIVERS: the node state's status has syncStatus
# SYNC and PF1 with NUMVFS VFs on DRIVERS ("igbvf igbvf ...", by vfID).
st=$STATE/nodestate.json
state_path=/apis/sriovnetwork.openshift.io/v1/namespaces/$ns/sriovnetworknodestates/$NODE_NAME
node_state() {
    api_get "$state_path" >"$st" 2>/dev/null || return 1
    got=$(jq -r --arg pf "$pf1" '.status as $s | ($s.interfaces[] | select(.pciAddress == $pf)) as $i
        | "\($s.syncStatus) \($i.numVfs) \($i.Vfs | sort_by(.vfID) | map(.driver) | join(" "))"' "$st" 2>/dev/null)
    [ "$got" = "$1 $2 $3" ]
}
wait_for "SriovNetworkNodeState $NODE_NAME: Succeeded, PF1 4 igbvf VFs" 30 \
    node_state Succeeded 4 "igbvf igbvf igbvf igbvf"
assert_eq "node state written by" fastpath \
    "$(jq -r '[.metadata.managedFields[].manager] | map(select(. == "fastpath")) | unique | join(",")' "$st")"
say "SriovNetworkNodeState $ns/$NODE_NAME: $(jq -r '.status.syncStatus' "$st"), PF1 numVfs 4 (status applied by manager fastpath)"

# events: "kind/name reason" of every Event in the namespace, sorted.
ev=$STATE/events.json
events() {
    # All namespaces: the Node's Events go to "default" (it has none).
    api_get /apis/events.k8s.io/v1/events >"$ev" || return 1
    jq -r '.items[] | "\(.regarding.kind)/\(.regarding.name) \(.type) \(.reason)"' "$ev" | sort -u
}
has_event() { events | grep -qx "$1"; }
# An apply that changed something is reported (PF1 had 7 VFs in the full
# scenario; with --only it may already be at 4, and then nothing is).
if [ "$vfs_before" != 4 ]; then
    wait_for "a PolicyApplied Event on vm-net" 20 has_event "SriovNetworkNodePolicy/vm-net Normal PolicyApplied"
    wait_for "a PolicyApplied Event on the Node" 20 has_event "Node/$NODE_NAME Normal PolicyApplied"
fi
events >/dev/null || fail "GET the Events"
applied_before=$(jq '[.items[] | select(.reason == "PolicyApplied")] | length' "$ev")

explain "Change the objects while the agent runs: 6 VFs, VFs 4-5 to a new vfio-pci policy. No drain, no restart."
fake-kubelet --plugins-registry-dir "$REGISTRY" --resource openshift.io/vm_dpdk --allocate 0 \
    --wait-devices 2 --timeout 120 >"$STATE/dpdk-watch.json" 2>"$LOGS/fake-kubelet-dpdk.log" &
watcher=$!
policies 6 "#0-3" dpdk >"$API_DIR/.20-policies.yaml"
if demo; then run cat "$API_DIR/.20-policies.yaml"; fi
t0=$(uptime_cs)
api_put_file 20-policies.yaml
say "policies changed: vm-net numVfs 4 -> 6 ($pf1_if#0-3), new vm-dpdk ($pf1_if#4-5, vfio-pci)"
want6="6 igbvf igbvf igbvf igbvf vfio-pci vfio-pci"
wait_for "PF1 at 6 VFs, 4-5 on vfio-pci" 90 pf1_is "$want6"
vfs_ms=$(ms_since "$t0")
wait "$watcher"
rc=$?
[ "$rc" -eq 0 ] || fail "the fake kubelet did not see openshift.io/vm_dpdk with 2 devices (exit $rc): $(cat "$LOGS/fake-kubelet-dpdk.log")"
observed=$(jq -r '.results[0].waited.observedUptimeMs' "$STATE/dpdk-watch.json")
assert_match "observedUptimeMs" '^[0-9]+$' "$observed"
kubelet_ms=$((observed - t0 * 10))
assert_eq "openshift.io/vm_dpdk ListAndWatch" "$(sorted "$(vf 4)" "$(vf 5)")" \
    "$(jq -r '.results[0].devices | map(.id) | sort | join(",")' "$STATE/dpdk-watch.json")"
say "PF1 $(numvfs_drivers): VFs changed $(secs_ms "$vfs_ms")s, kubelet saw openshift.io/vm_dpdk $(secs_ms "$kubelet_ms")s after the objects changed"

for i in 4 5; do
    group=$(basename "$(readlink "$sys/virtfn$i/iommu_group")")
    assert_exists "/dev/vfio/$group"
    assert_eq "driver_override of VF$i" "(null)" "$(cat "$sys/virtfn$i/driver_override")"
done
run sh -c "fake-kubelet --plugins-registry-dir $REGISTRY --resource openshift.io/vm_net --resource openshift.io/vm_dpdk --allocate 0 --timeout 30 >$STATE/cluster-kubelet.json"
assert_eq "pools after the change" \
    "openshift.io/vm_net=$(sorted "$(vf 0)" "$(vf 1)" "$(vf 2)" "$(vf 3)") openshift.io/vm_dpdk=$(sorted "$(vf 4)" "$(vf 5)")" \
    "$(jq -r '[.results[] | "\(.resource)=\(.devices | map(.id) | sort | join(","))"] | join(" ")' "$STATE/cluster-kubelet.json")"
wait_for "SriovNetworkNodeState: Succeeded, PF1 6 VFs (4 igbvf, 2 vfio-pci)" 30 \
    node_state Succeeded 6 "igbvf igbvf igbvf igbvf vfio-pci vfio-pci"
assert_eq "node state lastSyncError" "" "$(jq -r '.status.lastSyncError' "$st")"
wait_for "a PolicyApplied Event on vm-dpdk" 20 has_event "SriovNetworkNodePolicy/vm-dpdk Normal PolicyApplied"
wait_for "a PolicyApplied Event on the Node" 20 has_event "Node/$NODE_NAME Normal PolicyApplied"
applied_after=$(jq '[.items[] | select(.reason == "PolicyApplied")] | length' "$ev")
[ "$applied_after" -gt "$applied_before" ] || fail "no new PolicyApplied Events ($applied_before before, $applied_after after)"
assert_eq "Warning Events" "" "$(jq -r '.items[] | select(.type == "Warning") | .reason' "$ev")"
note=$(jq -r '[.items[] | select(.reason == "PolicyApplied" and .regarding.name == "vm-dpdk")][0].note' "$ev")
say "Event on vm-dpdk: PolicyApplied: $note"
assert_eq "agent pid (no restart)" "$pid" "$(state_get agent-cluster.pid)"
kill -0 "$pid" || fail "agent (pid $pid) died"
say "node state Succeeded with PF1 6 VFs; $applied_after PolicyApplied Events; same agent (pid $pid)"

echo "POLICY-CLUSTER-PERF object-to-vfs=${vfs_ms}ms object-to-listandwatch=${kubelet_ms}ms"
fact cluster "SriovNetworkNodePolicy objects from a stand-in API server: PF1 $vfs_before -> 4 igbvf VFs at agent start, then changed live to 6 VFs with 2 on vfio-pci: VFs changed $(secs_ms "$vfs_ms")s and kubelet saw openshift.io/vm_dpdk $(secs_ms "$kubelet_ms")s after the objects changed; node state Succeeded, PolicyApplied Events, same agent (pid $pid)"

agent_stop agent-cluster
api_stop
