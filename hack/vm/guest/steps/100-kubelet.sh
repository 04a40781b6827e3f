# kubelet's side of the device plugin (the fake kubelet, a real gRPC client
# on the agent's unix sockets): it finds both plugins in plugins_registry
# (GetInfo: a v1beta1 DevicePlugin named vm/sriov_net / vm/sriov_dpdk),
# ListAndWatch lists exactly the policy's VFs, healthy, with the NUMA
# topology the kernel reports (QEMU has no NUMA: numa_node -1, so none),
# then GetPreferredAllocation and Allocate for a pod needing 1 net + 1 dpdk
# VF. The allocated IDs and the Allocate response are kept for the CNI.
# demo: yes
. /fastpath-vm/lib.sh

explain "kubelet discovers the plugins, watches their device lists and allocates for a pod."
out_json=$STATE/kubelet.json
t_kubelet=$(uptime_cs)
run sh -c "fake-kubelet --plugins-registry-dir $REGISTRY --resource vm/sriov_net --resource vm/sriov_dpdk --allocate 1 --timeout 30 >$out_json"
kubelet_s=$(elapsed_since "$t_kubelet")

# One jq run: one line per resource, fields split by | (not in JSON values), with everything the checks need.
jq -r '.results[] | [.resource, (.devices | map(.id) | sort | join(",")),
    (.devices | map(.health) | unique | join(",")),
    (.devices | map(.numa | tostring) | unique | join(",")),
    .preferredAllocationAvailable, (.preferred | join(",")),
    (.allocate.envs | to_entries | map("\(.key)=\(.value)") | sort | join(";")),
    (.allocate.devices | map("\(.hostPath)>\(.containerPath):\(.permissions)") | join(","))]
    | map(tostring) | join("|")' "$out_json" >"$STATE/kubelet.lines" || fail "jq over $out_json"
assert_eq "resources seen" "vm/sriov_net vm/sriov_dpdk" "$(cut -d'|' -f1 "$STATE/kubelet.lines" | tr '\n' ' ' | sed 's/ $//')"

sorted() { printf '%s\n' "$@" | sort | tr '\n' , | sed 's/,$//'; }
want_net=$(sorted "$(state_get pf1_vf0)" "$(state_get pf1_vf1)" "$(state_get pf1_vf2)" "$(state_get pf1_vf3)" "$(state_get pf2_vf0)" "$(state_get pf2_vf1)")
want_dpdk=$(sorted "$(state_get pf2_vf2)" "$(state_get pf2_vf3)")
for v in $(echo "$want_net,$want_dpdk" | tr , ' '); do
    read -r numa <"/sys/bus/pci/devices/$v/numa_node"
    assert_eq "numa_node of $v (QEMU has no NUMA)" -1 "$numa"
done

while IFS='|' read -r resource ids health numa pref_avail preferred envs devices; do
    case $resource in
    vm/sriov_net) want=$want_net kind=net ;;
    vm/sriov_dpdk) want=$want_dpdk kind=dpdk ;;
    esac
    assert_eq "$resource ListAndWatch IDs" "$want" "$ids"
    assert_eq "$resource health" Healthy "$health"
    assert_eq "$resource topology (numa_node -1: none)" null "$numa"
    assert_eq "$resource GetPreferredAllocationAvailable" true "$pref_avail"
    case ",$ids," in *",$preferred,"*) ;; *) fail "$resource preferred '$preferred' is not one of $ids" ;; esac
    name=PCIDEVICE_VM_SRIOV_$(echo "$kind" | tr a-z A-Z)
    assert_match "$resource Allocate env" "(^|;)$name=$preferred(;|$)" "$envs"
    assert_match "$resource Allocate env ${name}_INFO" "(^|;)${name}_INFO=\\{\"$preferred\":" "$envs"
    state_set "pod_$kind" "$preferred"
    if [ "$kind" = net ]; then
        assert_eq "$resource device specs (a kernel VF needs none)" "" "$devices"
    else
        group=$(basename "$(readlink "/sys/bus/pci/devices/$preferred/iommu_group")")
        assert_eq "$resource device specs" \
            "/dev/vfio/vfio>/dev/vfio/vfio:rw,/dev/vfio/$group>/dev/vfio/$group:rw" "$devices"
        state_set pod_dpdk_container "$(echo "$devices" | cut -d, -f1 | cut -d'>' -f1)"
        state_set pod_dpdk_group "$(echo "$devices" | cut -d, -f2 | cut -d'>' -f1)"
    fi
    count=$(echo "$ids" | tr , '\n' | grep -c .)
    say "$resource: $count devices, Healthy, no NUMA; allocated $preferred"
    seen="${seen:+$seen, }$resource $count"
    allocated="${allocated:+$allocated, }$kind $preferred"
done <"$STATE/kubelet.lines"
say "Allocate: $(cut -d'|' -f7 "$STATE/kubelet.lines" | tr ';' '\n' | grep -v _INFO= | tr '\n' ' ')"
say "device specs (dpdk): $(state_get pod_dpdk_container) $(state_get pod_dpdk_group)"
fact kubelet "saw $seen Healthy and allocated $allocated: ${kubelet_s}s from discovery to Allocate"
