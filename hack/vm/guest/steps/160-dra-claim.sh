# DRA (issue 16) on real igb VFs: `fastpath agent --dra-driver` with a
# pool config whose `draPools` takes PF2's VFs (and a device-plugin pool of
# PF1's kernel VFs beside it), against the stand-in API server serving
# this node's Node and three allocated ResourceClaims. Checks the
# ResourceSlices the agent published (devices, attributes, owner, a new
# pool generation when a VF changes driver); kubelet's side (the fake
# kubelet's DRA client) prepares a netdevice claim (PF2 VF0: vlan 200,
# trust on, spoof checking off) and a vfio-pci claim (PF2 VF1, rebound
# from igbvf) in one NodePrepareResources: CDI specs (PCIDEVICE_* env,
# /dev/vfio nodes), device-info files, claim records; prepare twice gives
# the same answer; vfio-check opens the VF through the CDI device nodes;
# the CNI ADD/DEL of the netdevice VF as released Multus runs it (deviceID:
# the text after '=' of the claim's CDI device ID, the VF's address) puts it
# in a netns and gives it back as the claim had it; unprepare restores
# both VFs. Then SIGKILL during a prepare with a rebind, a restart, a
# prepare again (same answer), the claim deallocated while the agent is
# down, and the start-up reconcile restores the VF.
. /fastpath-vm/lib.sh

pf1_if=$(state_get pf1_if)
pf2=$(state_get pf2)
pf2_if=$(state_get pf2_if)
driver=sriov.fastpath.dev
cdi=/run/fastpath-vm/cdi
plugins=$KUBELET/plugins
devinfo=$KUBELET/devinfo
records=$FASTPATH_STATE_DIR/dra/claims
vf0=$(vf_addr "$pf2" 0)
vf1=$(vf_addr "$pf2" 1)
name() { echo "pci-$1" | tr ':.' '--'; }
dev0=$(name "$vf0")
dev1=$(name "$vf1")
group1=$(basename "$(readlink "/sys/bus/pci/devices/$vf1/iommu_group")")
assert_eq "drivers of PF2 VF0 and VF1 before the claims" "igbvf igbvf" "$(pci_driver "$vf0") $(pci_driver "$vf1")"
vf0_if=$(vf_netdev "$vf0")
vf0_mac=$(cat "/sys/class/net/$vf0_if/address")
vf0_mtu=$(cat "/sys/class/net/$vf0_if/mtu")
vf0_view=$(pf_vf_view "$pf2_if" 0)
vf1_view=$(pf_vf_view "$pf2_if" 1)
say "PF2 VF0 $vf0 ($vf0_if, $vf0_view), VF1 $vf1 (igbvf, IOMMU group $group1)"

explain "DRA: the scheduler picks VFs by their attributes; fastpath publishes them and prepares what a claim got."
cat >"$STATE/dra-pools.json" <<EOF
{
  "resourceList": [
    { "resourceName": "sriov_net", "resourcePrefix": "vm",
      "selectors": { "pfNames": ["$pf1_if"], "drivers": ["igbvf"] } }
  ],
  "draPools": [
    { "resourceName": "sriov_dra", "resourcePrefix": "vm",
      "selectors": { "pfNames": ["$pf2_if"] } }
  ]
}
EOF
rm -rf "$API_DIR"
mkdir -p "$API_DIR"
cat >"$API_DIR/10-node.yaml" <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  labels:
    kubernetes.io/hostname: $NODE_NAME
EOF
api_start
api_json "/api/v1/nodes/$NODE_NAME" "$STATE/node.json"
node_uid=$(jq -r .metadata.uid "$STATE/node.json")

mkdir -p "$REGISTRY" "$plugins" "$KUBELET/device-plugins" "$devinfo" "$cdi"
agent_args="--config $STATE/dra-pools.json --dra-driver $driver --node-name $NODE_NAME --kube-api-server $API
    --kubelet-plugins-dir $plugins --plugins-registry-dir $REGISTRY --device-plugin-dir $KUBELET/device-plugins
    --devinfo-dir $devinfo --cdi-dir $cdi --http-addr off"
dra_socks() { [ -S "$REGISTRY/$driver-reg.sock" ] && [ -S "$plugins/$driver/dra.sock" ] && [ -S "$REGISTRY/vm_sriov_net.sock" ]; }
t_agent=$(uptime_cs)
# shellcheck disable=SC2086 # the arguments, split on purpose
agent_start agent-dra $agent_args
wait_for "the DRA and device-plugin sockets" 30 dra_socks
say "agent (pid $(state_get agent-dra.pid)): $(ls "$REGISTRY" | tr '\n' ' ')and $plugins/$driver/dra.sock"

# slices: this node's ResourceSlices into $STATE/slices.json; "generation
# device:driver ..." of the pool.
slices() {
    api_get /apis/resource.k8s.io/v1/resourceslices >"$STATE/slices.all.json" || return 1
    jq --arg d "$driver" --arg n "$NODE_NAME" '[.items[] | select(.spec.driver == $d and .spec.nodeName == $n)]' \
        "$STATE/slices.all.json" >"$STATE/slices.json" || return 1
    jq -r '"\(map(.spec.pool.generation) | unique | join(",")) \([.[].spec.devices[] | "\(.name):\(.attributes.driver.string)"] | sort | join(" "))"' "$STATE/slices.json"
}
want_devs=
for l in /sys/bus/pci/devices/$pf2/virtfn*; do
    a=$(basename "$(readlink "$l")")
    want_devs="$want_devs $(name "$a"):$(pci_driver "$a")"
done
want_devs=$(echo "$want_devs" | tr ' ' '\n' | grep . | sort | tr '\n' ' ' | sed 's/ $//')
slices_are() { # DEVICES [GENERATION-AFTER]
    got=$(slices) || return 1
    [ "${got#* }" = "$1" ] || return 1
    [ -z "$2" ] || [ "${got%% *}" -gt "$2" ]
}
wait_for "the ResourceSlices of PF2's VFs" 30 slices_are "$want_devs"
slices_s=$(elapsed_since "$t_agent")
gen1=$(slices | cut -d' ' -f1)
jq -r --arg dev "$dev0" '.[] | .spec as $s | .metadata as $m | .spec.devices[] | select(.name == $dev)
    | [$s.pool.name, $s.pool.resourceSliceCount, ($m.ownerReferences[0] | "\(.kind)/\(.name)/\(.uid)"),
       .attributes.pciAddress.string, .attributes["resource.kubernetes.io/pciBusID"].string,
       .attributes.pfName.string, .attributes.pfPciAddress.string, .attributes.vfIndex.int,
       .attributes.vendor.string, .attributes.deviceID.string, .attributes.driver.string,
       .attributes.iommuGroup.int, .attributes.linkType.string, .attributes.rdma.bool]
    | map(tostring) | join(" ")' "$STATE/slices.json" >"$STATE/slice-dev0" || fail "jq over the slices"
assert_eq "slice: pool, slices, owner; $dev0: pciAddress pciBusID pfName pfPciAddress vfIndex vendor deviceID driver iommuGroup linkType rdma" \
    "$NODE_NAME 1 Node/$NODE_NAME/$node_uid $vf0 $vf0 $pf2_if $pf2 0 8086 10ca igbvf $(basename "$(readlink "/sys/bus/pci/devices/$vf0/iommu_group")") ether false" \
    "$(cat "$STATE/slice-dev0")"
say "ResourceSlices published ${slices_s}s after the agent started: pool $NODE_NAME generation $gen1, $(echo "$want_devs" | wc -w) devices ($want_devs)"

# The claims as the scheduler left them: allocated on this node's pool.
claim() { # NAME DEVICE PARAMETERS(JSON)
    cat <<EOF
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata:
  name: $1
  namespace: default
spec:
  devices:
    requests:
    - name: vf
      exactly:
        deviceClassName: sriov-vf.fastpath.dev
status:
  allocation:
    devices:
      results:
      - request: vf
        driver: $driver
        pool: $NODE_NAME
        device: $2
      config:
      - source: FromClaim
        requests: [vf]
        opaque:
          driver: $driver
          parameters: {"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig"$3}
EOF
}
{
    claim vm-net "$dev0" ', "driver": "netdevice", "vlan": 200, "trust": true, "spoofChk": false'
    claim vm-dpdk "$dev1" ', "driver": "vfio-pci"'
} >"$API_DIR/.30-claims.yaml"
claim vm-crash "$dev1" ', "driver": "vfio-pci"' >"$API_DIR/.31-claim-crash.yaml"
if demo; then run cat "$API_DIR/.30-claims.yaml"; fi
api_put_file 30-claims.yaml
api_put_file 31-claim-crash.yaml
uid() { api_get "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/$1" | jq -r .metadata.uid; }
wait_for "the claims served" 20 sh -c "/bb/wget -q -O /dev/null $API/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/vm-crash"
uid_net=$(uid vm-net)
uid_dpdk=$(uid vm-dpdk)
uid_crash=$(uid vm-crash)
say "claims: default/vm-net ($uid_net) -> $dev0 netdevice vlan 200; default/vm-dpdk ($uid_dpdk) -> $dev1 vfio-pci; default/vm-crash ($uid_crash) -> $dev1 vfio-pci"

explain "kubelet prepares the pod's two claims in one NodePrepareResources call."
dra() { # OUT ARGS...: the fake kubelet's DRA client
    o=$1
    shift
    run sh -c "fake-kubelet --plugins-registry-dir $REGISTRY --dra-driver $driver --timeout 60 $* >$o"
}
t_prep=$(uptime_cs)
dra "$STATE/dra-prepare.json" --dra-prepare "default/vm-net/$uid_net" --dra-prepare "default/vm-dpdk/$uid_dpdk"
prep_s=$(elapsed_since "$t_prep")
answer() { # FILE UID: "error|pool device|cdi ids" of one claim
    jq -r --arg u "$2" '.prepare[$u] | "\(.error)|\(.devices | map("\(.poolName) \(.deviceName)") | join(","))|\(.devices | map(.cdiDeviceIDs | join(",")) | join(";"))"' "$1"
}
# One CDI device per VF, named by its PCI address (released Multus hands
# the text after '=' to the CNI as deviceID).
assert_eq "prepare vm-net: error|device|CDI ids" "|$NODE_NAME $dev0|$driver/vf=$vf0" "$(answer "$STATE/dra-prepare.json" "$uid_net")"
assert_eq "prepare vm-dpdk: error|device|CDI ids" "|$NODE_NAME $dev1|$driver/vf=$vf1" "$(answer "$STATE/dra-prepare.json" "$uid_dpdk")"
assert_eq "driver of $vf1 (rebound by prepare)" vfio-pci "$(pci_driver "$vf1")"
assert_eq "driver_override of $vf1" "(null)" "$(cat "/sys/bus/pci/devices/$vf1/driver_override")"
assert_exists "/dev/vfio/$group1"
assert_eq "driver of $vf0" igbvf "$(pci_driver "$vf0")"
assert_eq "PF2 vf 0 as the claim asks: mac vlan qos spoofchk trust" "$(echo "$vf0_view" | cut -d' ' -f1) 200 0 false true" "$(pf_vf_view "$pf2_if" 0)"
for u in "$uid_net" "$uid_dpdk"; do
    assert_eq "record of $u" prepared "$(jq -r .phase "$records/$u.json")"
done

# CDI specs: each VF with its request's env and, for vfio-pci, /dev/vfio nodes.
cdi_line() { # UID: one line per CDI device
    jq -r '.kind as $k | .devices[] | [
        "\($k)=\(.name)",
        "env:\(.containerEdits.env // [] | map(sub("_INFO=.*"; "_INFO")) | join(","))",
        "nodes:\(.containerEdits.deviceNodes // [] | map("\(.path):\(.permissions)") | join(","))"] | join(" ")' \
        "$cdi/$driver-$1.json" | tr '\n' ' '
}
assert_eq "CDI spec of vm-net" "$driver/vf=$vf0 env:PCIDEVICE_VM_SRIOV_DRA=$vf0,PCIDEVICE_VM_SRIOV_DRA_INFO nodes: " "$(cdi_line "$uid_net")"
assert_eq "CDI spec of vm-dpdk" \
    "$driver/vf=$vf1 env:PCIDEVICE_VM_SRIOV_DRA=$vf1,PCIDEVICE_VM_SRIOV_DRA_INFO nodes:/dev/vfio/vfio:rw,/dev/vfio/$group1:rw " \
    "$(cdi_line "$uid_dpdk")"
info=$(jq -r '.devices[0].containerEdits.env[] | select(startswith("PCIDEVICE_VM_SRIOV_DRA_INFO=")) | sub("^[^=]*="; "")' "$cdi/$driver-$uid_dpdk.json")
assert_eq "PCIDEVICE_VM_SRIOV_DRA_INFO of vm-dpdk" "$vf1 /dev/vfio/vfio /dev/vfio/$group1" \
    "$(echo "$info" | jq -r --arg v "$vf1" '"\(.[$v].generic.deviceID) \(.[$v].vfio.mount) \(.[$v].vfio["dev-mount"])"')"
# Under the draPools entry (Multus master) and the claim's name (released Multus).
for kv in "vm-sriov_dra $vf0" "vm-net $vf0" "vm-sriov_dra $vf1" "vm-dpdk $vf1"; do
    v=${kv#* }
    f=$devinfo/${kv%% *}-$v-device.json
    assert_eq "device-info $f: type pci-address pf-pci-address" "pci $v $pf2" \
        "$(jq -r '"\(.type) \(.pci["pci-address"]) \(.pci["pf-pci-address"])"' "$f")"
done
say "prepared in ${prep_s}s: $vf0 netdevice (vlan 200, trust on, spoofchk off), $vf1 igbvf -> vfio-pci; CDI specs and device-info files written"

run vfio-check --container /dev/vfio/vfio --group "/dev/vfio/$group1" "$vf1"
assert_match "vfio-check $vf1 through the CDI device nodes" "VFIO_GROUP_GET_DEVICE_FD $vf1: fd [0-9]+, PCI device" "$out"

dra "$STATE/dra-prepare2.json" --dra-prepare "default/vm-net/$uid_net" --dra-prepare "default/vm-dpdk/$uid_dpdk"
assert_eq "prepare twice: the same answer" "$(jq -S .prepare "$STATE/dra-prepare.json")" "$(jq -S .prepare "$STATE/dra-prepare2.json")"
wait_for "a new slice generation with $dev1 on vfio-pci" 30 slices_are "$(echo "$want_devs" | sed "s/$dev1:igbvf/$dev1:vfio-pci/")" "$gen1"
gen2=$(slices | cut -d' ' -f1)
say "prepare again: the same answer; ResourceSlices: $dev1 driver vfio-pci, pool generation $gen1 -> $gen2"

explain "The netdevice VF goes into a pod as Multus runs the CNI: deviceID from the claim's CDI device ID."
ns=fp-pod-dra
cid=d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0d4a0
puid=6d1f4e2a-0000-4000-8000-0000000000d4
prepared_view=$(pf_vf_view "$pf2_if" 0)
# Released Multus: the text after '=' of the claim's CDI device ID.
multus_id=$(jq -r --arg u "$uid_net" '.prepare[$u].devices[0].cdiDeviceIDs[0] | split("=") | if length == 2 then .[1] else "" end' "$STATE/dra-prepare.json")
assert_eq "deviceID released Multus takes from vm-net's CDI device ID" "$vf0" "$multus_id"
jq --arg d "$multus_id" '. + {deviceID: $d, pciBusID: $d}' /fastpath-vm/files/nad-net.json >"$STATE/nad-dra.json" ||
    fail "jq: injecting deviceID"
run ip netns add "$ns"
cni_ok ADD "$STATE/nad-dra.json" "$cid" "/run/netns/$ns" net1 pod-dra "$puid"
# host-local hands out the next free address of the NAD's range.
add_ip=$(jq -r '.ips[0].address' "$STATE/cni.out")
assert_match "ADD result: address from the NAD's range" '^10\.56\.217\.1(7[1-9]|8[01])/24$' "$add_ip"
assert_eq "ADD result: interface, mac, pciID" "net1 02:fa:57:00:10:01 $vf0" \
    "$(jq -r '[.interfaces[0].name, .interfaces[0].mac, .interfaces[0].pciID] | map(tostring) | join(" ")' "$STATE/cni.out")"
assert_eq "PCI device behind net1 in $ns" "$vf0" \
    "$(ip netns exec "$ns" /bb/sh -c 'basename $(readlink /sys/class/net/net1/device)')"
assert_eq "PF2 vf 0 with the NAD's settings" "02:fa:57:00:10:01 100 0 false true" "$(pf_vf_view "$pf2_if" 0)"
cni_ok DEL "$STATE/nad-dra.json" "$cid" "/run/netns/$ns" net1 pod-dra "$puid"
run ip netns del "$ns"
assert_eq "VF0 host name after DEL" "$vf0_if" "$(vf_netdev "$vf0")"
assert_eq "PF2 vf 0 after DEL: as the claim prepared it" "$prepared_view" "$(pf_vf_view "$pf2_if" 0)"
say "CNI ADD put $vf0 in $ns as net1 ($add_ip, vlan 100); DEL gave it back as the claim had it ($prepared_view)"

explain "The pod is gone: kubelet unprepares both claims."
dra "$STATE/dra-unprepare.json" --dra-unprepare "default/vm-net/$uid_net" --dra-unprepare "default/vm-dpdk/$uid_dpdk"
assert_eq "unprepare errors" "|" "$(jq -r --arg a "$uid_net" --arg b "$uid_dpdk" '"\(.unprepare[$a].error)|\(.unprepare[$b].error)"' "$STATE/dra-unprepare.json")"
vf1_back() { [ "$(pci_driver "$vf1")" = igbvf ] && [ -n "$(vf_netdev "$vf1")" ]; }
wait_for "$vf1 back on igbvf with a netdev" 10 vf1_back
assert_eq "PF2 vf 0 after unprepare" "$vf0_view" "$(pf_vf_view "$pf2_if" 0)"
assert_eq "PF2 vf 1 after unprepare: vlan qos spoofchk trust" "$(echo "$vf1_view" | cut -d' ' -f2-)" "$(pf_vf_view "$pf2_if" 1 | cut -d' ' -f2-)"
assert_eq "VF0 name mac mtu after unprepare" "$vf0_if $vf0_mac $vf0_mtu" \
    "$(vf_netdev "$vf0") $(cat "/sys/class/net/$vf0_if/address") $(cat "/sys/class/net/$vf0_if/mtu")"
assert_eq "driver_override of $vf1" "(null)" "$(cat "/sys/bus/pci/devices/$vf1/driver_override")"
for u in "$uid_net" "$uid_dpdk"; do
    assert_absent "$records/$u.json"
    assert_absent "$cdi/$driver-$u.json"
done
assert_absent "$devinfo/vm-sriov_dra-$vf0-device.json"
assert_absent "$devinfo/vm-sriov_dra-$vf1-device.json"
assert_absent "$devinfo/vm-net-$vf0-device.json"
assert_absent "$devinfo/vm-dpdk-$vf1-device.json"
wait_for "a new slice generation with $dev1 on igbvf again" 30 slices_are "$want_devs" "$gen2"
say "unprepared: $vf1 back on igbvf, $vf0 and the PF side as before, records, CDI specs and device-info files gone"
fact dra "ResourceSlices of PF2's VFs ${slices_s}s after the agent started; a netdevice and a vfio-pci claim (igbvf -> vfio-pci) prepared in ${prep_s}s (CDI, device-info), the netdevice VF through CNI ADD/DEL, both unprepared back to their state"

explain "SIGKILL during a prepare that rebinds a VF; the restarted agent recovers."
pid=$(state_get agent-dra.pid)
fake-kubelet --plugins-registry-dir "$REGISTRY" --dra-driver "$driver" --timeout 60 \
    --dra-prepare "default/vm-crash/$uid_crash" >"$STATE/dra-crash.json" 2>"$LOGS/fake-kubelet-crash.log" &
prep=$!
recorded() { [ -e "$records/$uid_crash.json" ]; }
wait_for "the vm-crash claim record" 30 recorded
kill -9 "$pid"
killed_at=$(pci_driver "$vf1")
phase=$(jq -r .phase "$records/$uid_crash.json")
wait "$prep"
prep_rc=$?
say "agent killed (SIGKILL) with the record in phase '$phase' and $vf1 on '$killed_at'; the prepare call exited $prep_rc"
wait_for "the killed agent's exit status" 10 test -s "$STATE/agent-dra.rc"
assert_eq "killed agent's exit status" 137 "$(cat "$STATE/agent-dra.rc")"
# shellcheck disable=SC2086
agent_start agent-dra $agent_args
wait_for "the restarted agent's sockets" 30 dra_socks
case $phase in
preparing)
    # Not finished: the start-up reconcile undoes it (kubelet prepares again).
    wait_for "the half-prepared claim undone at start" 20 sh -c "! test -e $records/$uid_crash.json"
    assert_eq "driver of $vf1 after the restart" igbvf "$(pci_driver "$vf1")"
    ;;
prepared)
    assert_eq "driver of $vf1 after the restart (prepared, kept)" vfio-pci "$(pci_driver "$vf1")"
    ;;
*) fail "record phase '$phase'" ;;
esac
dra "$STATE/dra-crash2.json" --dra-prepare "default/vm-crash/$uid_crash"
assert_eq "prepare vm-crash after the restart" "|$NODE_NAME $dev1|$driver/vf=$vf1" "$(answer "$STATE/dra-crash2.json" "$uid_crash")"
if [ "$prep_rc" -eq 0 ] && [ "$(answer "$STATE/dra-crash.json" "$uid_crash" | cut -d'|' -f1)" = "" ]; then
    assert_eq "the answer before and after the crash" "$(jq -S .prepare "$STATE/dra-crash.json")" "$(jq -S .prepare "$STATE/dra-crash2.json")"
fi
assert_eq "driver of $vf1" vfio-pci "$(pci_driver "$vf1")"
assert_eq "record of vm-crash" prepared "$(jq -r .phase "$records/$uid_crash.json")"
say "after the restart a prepare again gives the same answer: $vf1 on vfio-pci"

# The agent is down while the claim is deallocated (kubelet gave up on it):
# at start the record's claim is gone and the VF comes home.
pid=$(state_get agent-dra.pid)
kill -9 "$pid"
wait_for "the killed agent's exit status" 10 test -s "$STATE/agent-dra.rc"
claim vm-crash "$dev1" ', "driver": "vfio-pci"' | sed '/^status:/,$d' >"$API_DIR/.31-claim-crash.yaml"
api_put_file 31-claim-crash.yaml
deallocated() { api_get /apis/resource.k8s.io/v1/namespaces/default/resourceclaims/vm-crash | jq -e '.status.allocation == null'; }
wait_for "vm-crash deallocated in the stand-in" 10 deallocated
t_rec=$(uptime_cs)
# shellcheck disable=SC2086
agent_start agent-dra $agent_args
wait_for "the restarted agent's sockets" 30 dra_socks
gone() { ! test -e "$records/$uid_crash.json" && vf1_back; }
wait_for "the deallocated claim's VF restored at start" 20 gone
rec_s=$(elapsed_since "$t_rec")
assert_absent "$cdi/$driver-$uid_crash.json"
assert_absent "$devinfo/vm-sriov_dra-$vf1-device.json"
assert_absent "$devinfo/vm-crash-$vf1-device.json"
assert_eq "PF2 vf 1 after the reconcile: vlan qos spoofchk trust" "$(echo "$vf1_view" | cut -d' ' -f2-)" "$(pf_vf_view "$pf2_if" 1 | cut -d' ' -f2-)"
grep -q "restoring a claim record at start" "$LOGS/agent-dra.log" || fail "no 'restoring a claim record at start' in $LOGS/agent-dra.log"
dra "$STATE/dra-crash3.json" --dra-unprepare "default/vm-crash/$uid_crash"
assert_eq "unprepare of the restored claim" "" "$(jq -r --arg u "$uid_crash" '.unprepare[$u].error' "$STATE/dra-crash3.json")"
say "claim deallocated while the agent was down: the start-up reconcile put $vf1 back on igbvf (${rec_s}s from the start)"
fact recovered "SIGKILL of the agent during a vfio-pci prepare (record '$phase', VF on '$killed_at'): the restart and a prepare again gave the same answer; the claim deallocated while the agent was down: the start-up reconcile restored the VF in ${rec_s}s"

agent_stop agent-dra
assert_eq "files left in $REGISTRY" "" "$(ls "$REGISTRY")"
api_stop
