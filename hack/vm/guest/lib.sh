# Common helpers for the guest steps (sourced; busybox sh). A step is a
# plain script: `set -e` is not relied on, every check goes through one of
# these helpers, and the first failed check ends the step with exit 1 and a
# message naming what was expected and what was found.

# Debian's busybox-static runs its own applets before searching PATH; the
# assertions need iproute2's `ip` (VF attributes, JSON, netns).
ip() { /usr/bin/ip "$@"; }

STATE=/run/fastpath-vm/state
# Background daemons (agent, fake kubelet) log here, one file each; the
# runner prints their last lines when a step fails.
LOGS=/run/fastpath-vm/logs
mkdir -p "$STATE" "$LOGS"

# Centiseconds since boot, for step timings.
uptime_cs() {
    read -r up _ </proc/uptime
    echo "${up%.*}${up#*.}" | sed 's/^0*//;s/^$/0/'
}

# Seconds (2 decimals) since a uptime_cs value.
elapsed_since() {
    dt=$(($(uptime_cs) - $1))
    printf '%d.%02d' $((dt / 100)) $((dt % 100))
}

demo() { [ "$FASTPATH_VM_MODE" = demo ]; }

# A line of narration: always printed.
say() { printf '  %s\n' "$*"; }

# Explanations only the demo prints.
explain() { if demo; then printf '  # %s\n' "$*"; fi; }

# slow T0: notes how long the command since T0 took, when it was slow.
slow() {
    [ $(($(uptime_cs) - $1)) -lt 100 ] || say "(took $(elapsed_since "$1")s)"
}

# fact WHAT TEXT: one line of the closing summary (what was created,
# advertised, attached, restored, with the times this run measured);
# run-steps prints them after the last step.
fact() { printf '%-11s %s\n' "$1" "$2" >>"$STATE/facts"; }

fail() {
    printf '  FAIL: %s\n' "$*" >&2
    exit 1
}

# run CMD...: prints the command, runs it; its output is shown in demo mode
# or when it fails (then the step fails).
run() {
    printf '  $ %s\n' "$*"
    t_run=$(uptime_cs)
    out=$("$@" 2>&1)
    rc=$?
    slow "$t_run"
    if [ "$rc" -ne 0 ]; then
        [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/    /'
        fail "exit $rc: $*"
    fi
    if demo && [ -n "$out" ]; then printf '%s\n' "$out" | sed 's/^/    /'; fi
    return 0
}

# must_fail WHAT CMD...: the command must exit non-zero (the kernel refuses).
must_fail() {
    what=$1
    shift
    printf '  $ %s   (must be refused)\n' "$*"
    if out=$("$@" 2>&1); then
        fail "$what: expected an error, the command succeeded: $*"
    fi
    say "refused as expected: $(printf '%s\n' "$out" | tail -n1)"
}

# write_sysfs PATH VALUE: echo VALUE > PATH, failing with the errno message.
write_sysfs() {
    printf '  $ echo %s > %s\n' "$2" "$1"
    t_write=$(uptime_cs)
    if ! err=$(printf '%s' "$2" 2>&1 >"$1"); then
        fail "writing '$2' to $1: $err"
    fi
    slow "$t_write"
    return 0
}

assert_eq() { # WHAT EXPECTED ACTUAL
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
    return 0
}

assert_match() { # WHAT EXTENDED-REGEX ACTUAL
    printf '%s\n' "$3" | grep -Eq -- "$2" || fail "$1: '$3' does not match /$2/"
    return 0
}

assert_exists() { # PATH
    [ -e "$1" ] || fail "missing $1"
    return 0
}

assert_absent() { # PATH
    [ ! -e "$1" ] || fail "$1 exists, expected it gone"
    return 0
}

# wait_for WHAT SECONDS CMD...: polls every 0.1 s until CMD succeeds.
wait_for() {
    what=$1 limit=$(($2 * 100))
    shift 2
    t0=$(uptime_cs)
    until "$@" >/dev/null 2>&1; do
        [ $(($(uptime_cs) - t0)) -lt "$limit" ] || fail "timed out after ${limit%??}s waiting for $what"
        sleep 0.1
    done
    [ $(($(uptime_cs) - t0)) -lt 100 ] || say "waited $(elapsed_since "$t0")s for $what"
    return 0
}

# fp_list: `fastpath list --json` into $STATE/list.json, for the checks. The
# demo also runs the plain `fastpath list` and shows its table: each command
# shown is the command that ran, with its own output.
fp_list() {
    printf '  $ fastpath list --json >%s\n' "$STATE/list.json"
    t_list=$(uptime_cs)
    fastpath list --json >"$STATE/list.json" 2>"$STATE/list.err" ||
        fail "fastpath list --json: $(cat "$STATE/list.err")"
    slow "$t_list"
    if demo; then
        printf '  $ fastpath list\n'
        fastpath list 2>&1 | sed 's/^/    /'
    fi
    return 0
}

# jqr FILTER [ARGS...]: jq -r over the last fp_list output.
jqr() {
    filter=$1
    shift
    jq -r "$@" "$filter" "$STATE/list.json" || fail "jq '$filter' on $STATE/list.json"
}

# state_set KEY VALUE / state_get KEY: values passed between steps.
state_set() { printf '%s\n' "$2" >"$STATE/$1"; }
# Values are one line; `read` is a shell builtin, where `cat` would start a
# process (busybox re-executes itself for it) dozens of times per step.
state_get() {
    [ -f "$STATE/$1" ] || fail "state '$1' not set (an earlier step did not run)"
    IFS= read -r _state_value <"$STATE/$1"
    printf '%s\n' "$_state_value"
}

# pci_driver ADDR: the driver bound to a PCI device, or "none".
pci_driver() {
    if [ -e "/sys/bus/pci/devices/$1/driver" ]; then
        basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
    else
        echo none
    fi
}

# vf_addr PF_ADDR INDEX: the PCI address of VF INDEX of a PF.
vf_addr() { basename "$(readlink "/sys/bus/pci/devices/$1/virtfn$2")"; }

# vf_netdev VF_ADDR: the VF's netdev name (empty when it has none).
vf_netdev() { ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1; }

# bind_driver ADDR DRIVER: the kernel's rebind sequence, as fastpath and the
# operator do it: unbind, driver_override, drivers_probe, clear the override.
bind_driver() {
    dev=/sys/bus/pci/devices/$1
    if [ -e "$dev/driver" ]; then
        write_sysfs "$dev/driver/unbind" "$1"
    fi
    write_sysfs "$dev/driver_override" "$2"
    write_sysfs /sys/bus/pci/drivers_probe "$1"
    # An empty write would be refused by busybox's printf-less echo; a
    # newline clears driver_override.
    printf '  $ echo > %s\n' "$dev/driver_override"
    echo >"$dev/driver_override" || fail "clearing $dev/driver_override"
    assert_eq "driver of $1" "$2" "$(pci_driver "$1")"
    assert_eq "driver_override of $1" "(null)" "$(cat "$dev/driver_override")"
}

# ---- phase 2: agent, fake kubelet, CNI --------------------------------

# Where the scenario's kubelet lives (the agent runs in watcher mode: its
# sockets go to plugins_registry, where the fake kubelet finds them).
KUBELET=/run/fastpath-vm/kubelet
REGISTRY=$KUBELET/plugins_registry
export FASTPATH_STATE_DIR=/var/lib/fastpath

# vf_index PF_ADDR VF_ADDR: the VF's index on its PF (virtfnN).
vf_index() {
    for l in /sys/bus/pci/devices/$1/virtfn*; do
        if [ "$(basename "$(readlink "$l")")" = "$2" ]; then
            echo "${l##*virtfn}"
            return 0
        fi
    done
    fail "$2 is not a VF of $1"
}

# pf_vf_view PF_IF INDEX: the PF's view of VF INDEX, one line:
# "mac vlan qos spoofchk trust" (booleans as true/false, an absent vlan or
# qos as 0), read from the text of `ip -d link show PF` ("vf N link/ether
# MAC brd ..., vlan V, qos Q, spoof checking on, ..., trust off, ...") with
# awk: under TCG a jq start costs about a second, busybox awk some 30 ms.
pf_vf_view() {
    ip -d link show "$1" | awk -v vf="$2" '
        function after(re,   s) { if (!match($0, re)) return ""; s = substr($0, RSTART, RLENGTH); sub(/.* /, "", s); return s }
        function bool(v) { return v == "on" ? "true" : v == "off" ? "false" : "null" }
        $1 == "vf" && $2 == vf {
            vlan = after(", vlan [0-9]+"); qos = after(", qos [0-9]+")
            printf "%s %s %s %s %s\n", after("link/ether [0-9a-f:]+"), vlan == "" ? 0 : vlan, qos == "" ? 0 : qos,
                bool(after("spoof checking [a-z]+")), bool(after("trust [a-z]+"))
        }' || fail "ip -d link show $1"
}

# cni VERB CONFIG_FILE CONTAINER_ID NETNS IFNAME POD_NAME POD_UID: executes
# the fastpath CNI as Multus executes a delegate (same environment, config
# on stdin); stdout to $STATE/cni.out, exit status in $cni_rc.
# $cni_s: how long it took (seconds).
cni() {
    printf '  $ CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s CNI_IFNAME=%s CNI_PATH=/usr/lib/cni \\\n' "$1" "$3" "$4" "$5"
    printf '      CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s" \\\n' "$6" "$3" "$7"
    printf '      fastpath <%s >%s 2>%s\n' "$2" "$STATE/cni.out" "$STATE/cni.err"
    t_cni=$(uptime_cs)
    CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=$4 CNI_IFNAME=$5 CNI_PATH=/usr/lib/cni \
        CNI_ARGS="IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$6;K8S_POD_INFRA_CONTAINER_ID=$3;K8S_POD_UID=$7" \
        fastpath <"$2" >"$STATE/cni.out" 2>"$STATE/cni.err"
    cni_rc=$?
    cni_s=$(elapsed_since "$t_cni")
    say "CNI $1 $5: exit $cni_rc in ${cni_s}s"
    if demo; then sed 's/^/    /' "$STATE/cni.out"; fi
    return 0
}

# cni_ok VERB ...: cni, and the call must succeed.
cni_ok() {
    cni "$@"
    [ "$cni_rc" -eq 0 ] || fail "CNI $1 failed (exit $cni_rc): $(cat "$STATE/cni.out" "$STATE/cni.err")"
}

# ---- cluster steps (160, 170): the stand-in API server -----------------

# testing/fake-apiserver serves the objects in $API_DIR (JSON or YAML
# files, re-read when a file appears or changes) on loopback; the agent's
# kube client talks to it as to a real API server. Objects written by the
# agent (ResourceSlices, the node state, Events) are read back over HTTP.
API_DIR=/run/fastpath-vm/apiserver
API_ADDR=127.0.0.1:8080
API=http://$API_ADDR
NODE_NAME=vm-node

# api_start: starts the stand-in on $API_DIR (pid in $STATE/apiserver.pid,
# log $LOGS/apiserver.log) and waits until it serves this node's Node
# (the steps write $API_DIR/10-node.yaml first).
api_start() {
    mkdir -p "$API_DIR"
    ip link set lo up || fail "ip link set lo up"
    printf '  $ fake-apiserver --listen %s --dir %s --poll-ms 100 >%s 2>&1 &\n' "$API_ADDR" "$API_DIR" "$LOGS/apiserver.log"
    fake-apiserver --listen "$API_ADDR" --dir "$API_DIR" --poll-ms 100 >"$LOGS/apiserver.log" 2>&1 &
    echo $! >"$STATE/apiserver.pid"
    wait_for "the stand-in API server on $API serving Node $NODE_NAME" 20 api_get "/api/v1/nodes/$NODE_NAME"
}

# api_stop: stops the stand-in started by api_start.
api_stop() {
    pid=$(state_get apiserver.pid)
    kill "$pid" 2>/dev/null
    wait_for "the stand-in API server to exit" 10 sh -c "! kill -0 $pid"
    rm -f "$STATE/apiserver.pid"
}

# api_get PATH: the JSON the stand-in serves at PATH (busybox wget).
api_get() { /bb/wget -q -O - "$API$1"; }

# api_json PATH OUT: api_get into OUT, failing the step when it fails.
api_json() {
    api_get "$1" >"$2" 2>"$2.err" || fail "GET $API$1: $(cat "$2.err")"
}

# api_put_file NAME: moves $API_DIR/.NAME (just written) to $API_DIR/NAME
# in one rename, so the stand-in never reads half a file.
api_put_file() { mv "$API_DIR/.$1" "$API_DIR/$1" || fail "mv $API_DIR/.$1"; }

# agent_start NAME ARGS...: `fastpath agent ARGS` in the background as step
# 90 starts it: pid in $STATE/NAME.pid, exit status later in
# $STATE/NAME.rc, log appended to $LOGS/NAME.log.
agent_start() {
    name=$1
    shift
    rm -f "$STATE/$name.rc" "$STATE/$name.pid"
    printf '  $ fastpath agent %s >>%s 2>&1 &\n' "$*" "$LOGS/$name.log"
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid sh -c 'n=$1; s=$2; shift 2; fastpath agent "$@" & echo $! >"$s/$n.pid"; wait $!; echo $? >"$s/$n.rc"' \
        agent "$name" "$STATE" "$@" >>"$LOGS/$name.log" 2>&1 &
    wait_for "the $name pid file" 10 test -s "$STATE/$name.pid"
}

# agent_stop NAME: SIGTERM, exit status 0.
agent_stop() {
    pid=$(state_get "$1.pid")
    kill -0 "$pid" || fail "$1 (pid $pid) is not running"
    run kill -TERM "$pid"
    wait_for "the $1 exit status" 20 test -s "$STATE/$1.rc"
    assert_eq "$1 exit status after SIGTERM" 0 "$(cat "$STATE/$1.rc")"
    rm -f "$STATE/$1.pid"
}

# ms_since T0: milliseconds from uptime_cs T0 to now.
ms_since() { echo $((($(uptime_cs) - $1) * 10)); }

# secs_ms MS: "1.234".
secs_ms() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# Whether the CNI holds a record for the VF at PCI address $1 in DIR
# (default $FASTPATH_STATE_DIR/cni): an earlier version's <pci>.json, or
# a slot file <pci>.rec whose newest slot is not empty (the file stays,
# emptied, when the record is removed). Layout in src/cni/slots.rs; the
# checksums are not checked here (no write is torn in the VM).
cni_record_live() { # PCI [DIR]
    _dir=${2:-$FASTPATH_STATE_DIR/cni}
    [ -e "$_dir/$1.json" ] && return 0
    _f=$_dir/$1.rec
    [ -e "$_f" ] || return 1
    _half=$(($(wc -c <"$_f") / 2))
    _best=-1
    _len=0
    for _off in 0 "$_half"; do
        # shellcheck disable=SC2046 # the header's 24 bytes, one argument each
        set -- $(od -An -v -t u1 -j "$_off" -N 24 "$_f")
        [ "$1 $2 $3 $4 $5" = "70 80 82 69 67" ] || continue # "FPREC"
        shift 8
        _seq=$(($1 | $2 << 8 | $3 << 16 | $4 << 24 | $5 << 32 | $6 << 40 | $7 << 48))
        shift 8
        _l=$(($1 | $2 << 8 | $3 << 16 | $4 << 24))
        if [ "$_seq" -gt "$_best" ]; then
            _best=$_seq
            _len=$_l
        fi
    done
    [ "$_len" -gt 0 ]
}

# The PCI addresses the CNI holds a record for in DIR, one a line.
cni_records_left() { # DIR
    for _r in "$1"/*.rec "$1"/*.json; do
        [ -e "$_r" ] || continue
        _p=$(basename "$_r")
        _p=${_p%.*}
        if cni_record_live "$_p" "$1"; then echo "$_p"; fi
    done
}
