# A live policy change: the policy file the agent watches (--policy) is
# rewritten so PF1 goes from 4 to 7 VFs; the agent reconciles it by itself.
# A kubelet watching vm/sriov_net (6 devices: PF1's 4, PF2's 2 kernel VFs)
# sees 9 through ListAndWatch with no agent restart. Measures the file
# change to that ListAndWatch update; then `fastpath apply` of the same
# file must find nothing to change.
# demo: yes
. /fastpath-vm/lib.sh

explain "Change the policy while everything runs: no drain, no restart; kubelet sees the new VFs."
pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"
watch_log=$LOGS/fake-kubelet-watch.log
printf '  $ fake-kubelet --plugins-registry-dir %s --resource vm/sriov_net --allocate 0 --wait-devices 9 --timeout 60 >%s 2>%s &\n' \
    "$REGISTRY" "$STATE/watch.json" "$watch_log"
fake-kubelet --plugins-registry-dir "$REGISTRY" --resource vm/sriov_net --allocate 0 \
    --wait-devices 9 --timeout 60 >"$STATE/watch.json" 2>"$watch_log" &
watcher=$!
watching() { grep -q 'waiting for 9' "$watch_log"; }
wait_for "the fake kubelet's first ListAndWatch" 20 watching
say "$(cat "$watch_log")"

printf '  $ cp %s %s && mv %s %s\n' "$STATE/policy-7.yaml" "$STATE/policy.yaml.new" "$STATE/policy.yaml.new" "$STATE/policy.yaml"
t0=$(uptime_cs)
cp "$STATE/policy-7.yaml" "$STATE/policy.yaml.new"
mv "$STATE/policy.yaml.new" "$STATE/policy.yaml"
say "policy file rewritten: PF1 numVfs 4 -> 7 (the agent reconciles it)"
wait "$watcher"
rc=$?
[ "$rc" -eq 0 ] || fail "fake kubelet did not see 9 devices (exit $rc): $(cat "$watch_log")"
# One jq run for the watcher's fields (a jq start costs about a second).
read -r observed updates listed <<EOF
$(jq -r '.results[0] | "\(.waited.observedUptimeMs) \(.waited.updates) \(.devices | map(.id) | sort | join(","))"' "$STATE/watch.json")
EOF
assert_match "observedUptimeMs" '^[0-9]+$' "$observed"
ms=$((observed - t0 * 10))
run fastpath apply --policy "$STATE/policy.yaml"
assert_match "apply after the agent's reconcile" '^nothing changed$' "$out"
run fastpath status --json
reconciled=$(printf '%s\n' "$out" | jq -r '.lastReconcile.steps | length')
[ "$reconciled" -gt 0 ] || fail "status shows no reconcile steps: $out"

fp_list
pf1=$(state_get pf1)
assert_eq "PF1 VFs after the change (index driver)" "0:igbvf 1:igbvf 2:igbvf 3:igbvf 4:igbvf 5:igbvf 6:igbvf" \
    "$(jqr "[.pfs[] | select(.pciAddress == \"$pf1\") | .vfs[] | \"\(.index):\(.driver)\"] | join(\" \")")"
want=$(jqr '[.pfs[].vfs[] | select(.driver == "igbvf") | .pciAddress] | sort | join(",")')
assert_eq "vm/sriov_net ListAndWatch after the change" "$want" \
    "$listed"
assert_eq "agent pid (no restart)" "$pid" "$(state_get agent.pid)"
kill -0 "$pid" || fail "agent (pid $pid) died"
say "PF1 4 -> 7 VFs by the agent: ListAndWatch lists 9 net VFs $(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))s after the policy file changed ($updates updates, $reconciled reconcile steps)"
echo "POLICY-CHANGE-PERF policy-file-to-listandwatch=${ms}ms"
fact changed "policy PF1 4 -> 7 VFs while everything ran: kubelet's ListAndWatch listed 9 net VFs $(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))s after the file changed, same agent (pid $pid)"
