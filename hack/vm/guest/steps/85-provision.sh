# The provisioning transitions script (tests/vm/provision.sh, by the
# provisioning work): `fastpath apply` on PF1 takes it 0 -> 4 -> 7 -> 2 VFs,
# 2 VFs to vfio-pci with a pinned admin MAC and back with a VF MTU, an
# idempotent re-apply and an empty plan after each, a bad policy that
# changes nothing. It leaves PF1 with no VFs; PF2 keeps its 4.
. /fastpath-vm/lib.sh

explain "fastpath apply provisions live: only what the policy changes is touched."
t0=$(uptime_cs)
sh /fastpath-vm/provision.sh >"$STATE/provision.out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] || demo; then sed 's/^/  /' "$STATE/provision.out"; fi
[ "$rc" -eq 0 ] || fail "tests/vm/provision.sh exited $rc"
grep '^PROVISION-PERF' "$STATE/provision.out" | sed 's/^/  /'
pf=$(state_get pf1)
assert_eq "PF1 sriov_numvfs after provision.sh" 0 "$(cat "/sys/bus/pci/devices/$pf/sriov_numvfs")"
say "provision.sh passed in $(elapsed_since "$t0")s"
