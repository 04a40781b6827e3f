# A live policy change: PF1 goes from 4 to 7 VFs by `fastpath apply` while
# the agent runs. A kubelet watching vm/sriov_net (6 devices: PF1's 4, PF2's
# 2 kernel VFs) sees 9 through ListAndWatch with no agent restart. Measures
# the apply's start to that ListAndWatch update (and the apply's own
# kernel/fastpath split).
. /fastpath-vm/lib.sh

explain "Change the policy while everything runs: no drain, no restart; kubelet sees the new VFs."
pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"
watch_log=$LOGS/fake-kubelet-watch.log
fake-kubelet --plugins-registry-dir "$REGISTRY" --resource vm/sriov_net --allocate 0 \
    --wait-devices 9 --timeout 60 >"$STATE/watch.json" 2>"$watch_log" &
watcher=$!
watching() { grep -q 'waiting for 9' "$watch_log"; }
wait_for "the fake kubelet's first ListAndWatch" 20 watching
say "$(cat "$watch_log")"

t0=$(uptime_cs)
run fastpath apply --policy "$STATE/policy-7.yaml"
apply_out=$out
wait "$watcher"
rc=$?
[ "$rc" -eq 0 ] || fail "fake kubelet did not see 9 devices (exit $rc): $(cat "$watch_log")"
observed=$(jq -r '.results[0].waited.observedUptimeMs' "$STATE/watch.json")
assert_match "observedUptimeMs" '^[0-9]+$' "$observed"
ms=$((observed - t0 * 10))
timing=$(printf '%s\n' "$apply_out" | grep '^time:')
[ -n "$timing" ] || fail "no timing line in the apply report: $apply_out"

fp_list
pf1=$(state_get pf1)
assert_eq "PF1 VFs after the change (index driver)" "0:igbvf 1:igbvf 2:igbvf 3:igbvf 4:igbvf 5:igbvf 6:igbvf" \
    "$(jqr "[.pfs[] | select(.pciAddress == \"$pf1\") | .vfs[] | \"\(.index):\(.driver)\"] | join(\" \")")"
want=$(jqr '[.pfs[].vfs[] | select(.driver == "igbvf") | .pciAddress] | sort | join(",")')
assert_eq "vm/sriov_net ListAndWatch after the change" "$want" \
    "$(jq -r '.results[0].devices | map(.id) | sort | join(",")' "$STATE/watch.json")"
assert_eq "agent pid (no restart)" "$pid" "$(state_get agent.pid)"
kill -0 "$pid" || fail "agent (pid $pid) died"
say "PF1 4 -> 7 VFs: ListAndWatch lists 9 net VFs $(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))s after the apply started ($(jq -r '.results[0].waited.updates' "$STATE/watch.json") updates); apply $timing"
echo "POLICY-CHANGE-PERF apply-to-listandwatch=${ms}ms $timing"
