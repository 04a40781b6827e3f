#!/bin/sh
# Guest-side provisioning scenario (busybox sh + the fastpath binary only).
# Runs `fastpath apply` against the first igb PF of the VM rig: 0 -> 4 -> 7 -> 2 VFs, 2 VFs to vfio-pci with a
# pinned admin MAC, back to igbvf with a VF MTU, an idempotent re-apply
# (and an empty `fastpath plan`) after each change, and a bad policy that
# must change nothing.
#
# Drop-in for the rig as a step (e.g. hack/vm/guest/steps/35-provision.sh,
# after the modules step). Prints one line per transition:
#   PROVISION-PERF <name> total=<ms> kernel=<ms> fastpath=<ms>
# Repeats the transitions FASTPATH_PROVISION_ROUNDS times (default 1, about
# 50 s under TCG; docs/PERFORMANCE.md used 5) so the host can take medians.
# Leaves the PF as it found it at boot: no VFs.

fail() {
    printf '  FAIL: %s\n' "$*" >&2
    exit 1
}
say() { printf '  %s\n' "$*"; }

STATE_DIR=/run/fastpath-provision
POL=$STATE_DIR/policy.yaml
mkdir -p "$STATE_DIR"
rounds=${FASTPATH_PROVISION_ROUNDS:-1}

pf=
for d in /sys/bus/pci/drivers/igb/0000:*; do
    [ -e "$d" ] && { pf=$(basename "$d"); break; }
done
[ -n "$pf" ] || fail "no igb PF bound"
dev=/sys/bus/pci/devices/$pf
pfif=$(ls "$dev/net" | head -n1)
[ -n "$pfif" ] || fail "PF $pf has no netdev"
say "PF $pf ($pfif), sriov_totalvfs $(cat "$dev/sriov_totalvfs")"

vf_addr() { basename "$(readlink "$dev/virtfn$1")"; }
driver_of() {
    if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
        basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
    else
        echo none
    fi
}
netdev_of() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1; }

policy() { # NUMVFS [extra entry lines]
    {
        echo "policies:"
        if [ -n "$2" ]; then
            printf '%s\n' "$2"
        else
            echo "  - {pfNames: [$pfif], numVfs: $1}"
        fi
    } >"$POL"
}

# apply NAME: runs fastpath apply, prints its report and the perf line.
apply() {
    out=$(fastpath apply --policy "$POL" --state-dir "$STATE_DIR" 2>"$STATE_DIR/err") ||
        fail "$1: fastpath apply: $(cat "$STATE_DIR/err")"
    printf '%s\n' "$out" | sed 's/^/    /'
    t=$(printf '%s\n' "$out" | sed -n 's/^time: \([0-9.]*\) ms total = kernel \([0-9.]*\) ms + fastpath \([0-9.]*\) ms.*/total=\1 kernel=\2 fastpath=\3/p')
    [ -n "$t" ] || fail "$1: no timing line in the report"
    echo "PROVISION-PERF $1 $t"
    LAST=$out
}

# reapply NAME: the same policy again must change nothing.
reapply() {
    apply "$1-again"
    printf '%s\n' "$LAST" | grep -q '^nothing changed$' || fail "$1: re-apply changed something"
    plan=$(fastpath plan --policy "$POL" --state-dir "$STATE_DIR" 2>&1) || fail "plan: $plan"
    [ "$plan" = "nothing to change" ] || fail "$1: plan after apply is not empty: $plan"
}

check_vfs() { # COUNT DRIVER_OF_EACH (igbvf|vfio-pci) [mtu]
    [ "$(cat "$dev/sriov_numvfs")" = "$1" ] || fail "sriov_numvfs $(cat "$dev/sriov_numvfs"), want $1"
    i=0
    while [ "$i" -lt "$1" ]; do
        [ -e "$dev/virtfn$i" ] || fail "virtfn$i missing"
        a=$(vf_addr "$i")
        d=$(driver_of "$a")
        [ "$d" = "$2" ] || fail "VF $i ($a) driver $d, want $2"
        [ "$(cat "/sys/bus/pci/devices/$a/driver_override")" = "(null)" ] ||
            fail "VF $i ($a) driver_override left set"
        if [ "$2" = igbvf ]; then
            n=$(netdev_of "$a")
            [ -n "$n" ] || fail "VF $i ($a) has no netdev"
            if [ -n "$3" ]; then
                [ "$(cat "/sys/class/net/$n/mtu")" = "$3" ] || fail "VF $i ($n) mtu $(cat "/sys/class/net/$n/mtu"), want $3"
            fi
        fi
        i=$((i + 1))
    done
    [ -e "$dev/virtfn$1" ] && fail "virtfn$1 exists beyond $1 VFs"
    say "ok: $1 VFs on $2${3:+ mtu $3}"
}

r=1
while [ "$r" -le "$rounds" ]; do
    say "=== round $r of $rounds"
    policy 0
    apply "reset-to-0"
    check_vfs 0 igbvf

    policy 4
    apply "create-0-to-4"
    check_vfs 4 igbvf
    reapply "create-0-to-4"

    policy 7
    apply "grow-4-to-7"
    check_vfs 7 igbvf
    reapply "grow-4-to-7"

    policy 2
    apply "shrink-7-to-2"
    check_vfs 2 igbvf
    reapply "shrink-7-to-2"

    policy 2 "  - {pfNames: [$pfif], numVfs: 2, deviceType: vfio-pci, macs: {0: \"02:00:00:00:5a:01\"}}"
    apply "to-vfio-pci"
    check_vfs 2 vfio-pci
    # The re-apply reads the admin MACs back through netlink: had the pin
    # not taken, it would pin again instead of changing nothing.
    reapply "to-vfio-pci"

    policy 2 "  - {pfNames: [$pfif], numVfs: 2, vfMtu: 1400}"
    apply "back-to-igbvf"
    check_vfs 2 igbvf 1400
    reapply "back-to-igbvf"
    r=$((r + 1))
done

# Bad input: a clear error naming the entry and field, nothing touched.
policy 9
if out=$(fastpath apply --policy "$POL" --state-dir "$STATE_DIR" 2>&1); then
    fail "numVfs 9 on a 7-VF PF was accepted"
fi
printf '%s\n' "$out" | grep -q "policies\[0\].numVfs: 9 exceeds sriov_totalvfs 7 of $pf" ||
    fail "unexpected error: $out"
say "refused: $(printf '%s\n' "$out" | tail -n1)"
check_vfs 2 igbvf 1400

policy 0
apply "final-reset"
check_vfs 0 igbvf
say "provisioning scenario passed"
