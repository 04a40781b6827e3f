# The agent stops cleanly: SIGTERM -> exit status 0, both plugin sockets
# removed from plugins_registry.
# demo: yes
. /fastpath-vm/lib.sh

pid=$(state_get agent.pid)
kill -0 "$pid" || fail "agent (pid $pid) is not running"
run kill -TERM "$pid"
wait_for "the agent's exit status" 10 test -s "$STATE/agent.rc"
assert_eq "agent exit status after SIGTERM" 0 "$(cat "$STATE/agent.rc")"
assert_absent "$REGISTRY/vm_sriov_net.sock"
assert_absent "$REGISTRY/vm_sriov_dpdk.sock"
assert_eq "files left in $REGISTRY" "" "$(ls "$REGISTRY")"
say "agent stopped by SIGTERM: exit 0, sockets removed"
fact stopped "the agent on SIGTERM: exit 0, plugin sockets removed"
