# The agent's start-up reconcile with a real igbvf VF: with the agent
# stopped, a pod gets a VF (pod-side MAC, MTU 1400, vlan 100, trust on)
# and its netns is deleted with no DEL; the kernel returns the VF to the
# host under its pod-side name (net1) or a devN name. Starting the agent
# renames it back to its host name with its MAC and MTU, restores the PF
# side, releases the lease and drops the record, before it serves
# kubelet. The agent is left running for the next steps, restarted with
# the command line step 90 gave it.
# demo: yes
. /fastpath-vm/lib.sh

explain "Agent start-up reconcile: a VF stranded by a deleted pod netns comes home when the agent starts."
pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"
# Restarted below with exactly the arguments step 90 gave it (paths, no
# spaces), whatever they are (--policy included).
agent_cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
assert_match "the agent's command line" '^fastpath agent ' "$agent_cmd"
run kill -TERM "$pid"
wait_for "the agent's exit status" 10 test -s "$STATE/agent.rc"
assert_eq "agent exit status after SIGTERM" 0 "$(cat "$STATE/agent.rc")"
rm -f "$STATE/agent.rc"

c=$(jq -r '.results[] | select(.resource == "vm/sriov_net") | .devices[0].id' "$STATE/kubelet.json")
[ -n "$c" ] && [ "$c" != null ] || fail "no net VF in $STATE/kubelet.json"
c_pf=$(basename "$(readlink "/sys/bus/pci/devices/$c/physfn")")
c_pf_if=$(ls "/sys/bus/pci/devices/$c_pf/net")
c_idx=$(vf_index "$c_pf" "$c")
c_if=$(vf_netdev "$c")
[ -n "$c_if" ] || fail "VF $c has no host netdev before ADD"
c_mac=$(cat "/sys/class/net/$c_if/address")
c_mtu=$(cat "/sys/class/net/$c_if/mtu")
c_before=$(pf_vf_view "$c_pf_if" "$c_idx")
ns_c=fp-pod-c
cid_c=0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c
uid_c=6d1f4e2a-0000-4000-8000-00000000000c
jq --arg d "$c" '. + {deviceID: $d, pciBusID: $d}' /fastpath-vm/files/nad-net.json >"$STATE/nad-net-c.json" ||
    fail "jq: injecting deviceID"
run ip netns add "$ns_c"
cni_ok ADD "$STATE/nad-net-c.json" "$cid_c" "/run/netns/$ns_c" net1 pod-c "$uid_c"
cni_record_live "$c" || fail "no CNI record for $c after ADD"
run ip netns del "$ns_c"
returned() { [ -n "$(vf_netdev "$c")" ]; }
wait_for "$c back in the host netns" 10 returned
back_as=$(vf_netdev "$c")
assert_match "name the kernel gave $c" '^(net1|dev[0-9]+)$' "$back_as"
say "pod-c's netns deleted without DEL: $c came back as $back_as (host name $c_if), record kept"

# Started as step 90 starts it (same wrapper, pid and exit-status files);
# its log is appended to the same file.
# shellcheck disable=SC2016 # $1 is split into the arguments on purpose
printf '  $ %s>>%s 2>&1 &\n' "$agent_cmd" "$LOGS/agent.log"
setsid sh -c '$1 & echo $! >"$2/agent.pid"; wait $!; echo $? >"$2/agent.rc"' \
    agent "$agent_cmd" "$STATE" >>"$LOGS/agent.log" 2>&1 &
socks_ready() { [ -S "$REGISTRY/vm_sriov_net.sock" ] && [ -S "$REGISTRY/vm_sriov_dpdk.sock" ]; }
wait_for "the restarted agent's plugin sockets" 30 socks_ready
pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"

# The reconcile ran before the sockets appeared.
! cni_record_live "$c" || fail "the CNI record for $c is still there after the reconcile"
assert_exists "/sys/class/net/$c_if"
assert_eq "PCI device behind $c_if" "$c" "$(basename "$(readlink "/sys/class/net/$c_if/device")")"
assert_eq "$c_if mac mtu" "$c_mac $c_mtu" "$(cat "/sys/class/net/$c_if/address") $(cat "/sys/class/net/$c_if/mtu")"
assert_eq "PF $c_pf_if vf $c_idx after reconcile: mac vlan qos spoofchk trust" "$c_before" "$(pf_vf_view "$c_pf_if" "$c_idx")"
[ "$back_as" = "$c_if" ] || assert_absent "/sys/class/net/$back_as"
leases=/var/lib/cni/networks/vm-sriov-vlan100
assert_eq "host-local leases of pod-c" "" "$(grep -l "$cid_c" "$leases"/* 2>/dev/null)"
grep -q "reconcile: netns gone; VF renamed back from $back_as to $c_if" "$LOGS/agent.log" ||
    fail "no rename line in the agent log: $(grep reconcile "$LOGS/agent.log")"
run fastpath status --json
# One jq run (a jq start costs about a second under TCG).
read -r restored renamed failed took_ms <<EOF
$(printf '%s\n' "$out" | jq -r '.startupReconcile | "\(.restored) \(.renamed) \(.failures | length) \(.durationUs / 1000 | floor)"')
EOF
assert_eq "status: start-up reconcile restored renamed failed" "1 1 0" "$restored $renamed $failed"
say "agent restarted (pid $pid): $c renamed back from $back_as to $c_if, MAC $c_mac, MTU $c_mtu, PF side: $c_before; record gone; reconcile took ${took_ms} ms"
fact recovered "pod-c's netns lost with no DEL while the agent was down: on restart the agent renamed $c back from $back_as to $c_if and restored its PF side (${took_ms} ms of reconcile)"
