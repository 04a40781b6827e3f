"""PodResources v1 served by grpcio, as kubelet serves it, to the shipped
binary running as the CNI plugin: its pod ownership check (tonic client)
against a C-core server."""

import contextlib
import json
import os
import subprocess

import kubelet as k
from agent import Agent
from device_plugin import CONFIG, DPDK, expect

NS = "interop"


@contextlib.contextmanager
def netns():
    """A real, empty network namespace (the pod's); a DPDK VF never enters
    it, but the CNI opens it as it opens every pod's."""
    name = f"fastpath-interop-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def cni(ctx, node, command, pod, netns_path, conf, settings):
    """The binary executed as a runtime (Multus) executes a delegate."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"ctr-{pod}",
        "CNI_NETNS": netns_path,
        "CNI_IFNAME": "net1",
        "CNI_ARGS": f"IgnoreUnknown=true;K8S_POD_NAMESPACE={NS};K8S_POD_NAME={pod};"
        f"K8S_POD_INFRA_CONTAINER_ID=ctr-{pod};K8S_POD_UID=uid-{pod}",
        "CNI_PATH": "/usr/lib/cni",
        "FASTPATH_STATE_DIR": node.state,
        "FASTPATH_SYSFS_ROOT": node.sys,
        "FASTPATH_OWNERSHIP_CONFIG": settings,
    }
    res = subprocess.run(
        [ctx.binary], input=json.dumps(conf), capture_output=True, text=True, env=env, timeout=k.T
    )
    out = json.loads(res.stdout) if res.stdout.strip() else {}
    return res.returncode, out, res.stderr


def node_with(ctx, get_mode):
    """A node dir (fake tree, state dir; no agent needed: the CNI never
    needs it) and a PodResources server: pod-a holds the first vfio-pci
    VF, pod-b the second."""
    node = Agent(ctx.binary, ctx.repo, CONFIG)
    vfio = node.tree.vfs("vfio-pci")
    expect(len(vfio) >= 2, f"the fixture needs two vfio-pci VFs, has {vfio}")
    pods = [
        k.pod(NS, "pod-a", {DPDK: [vfio[0]]}),
        k.pod(NS, "pod-b", {DPDK: [vfio[1]]}),
    ]
    server = k.PodResources(os.path.join(node.dir, "pr.sock"), pods, get=get_mode)
    settings = os.path.join(node.dir, "ownership.json")
    with open(settings, "w") as f:
        json.dump({"podResourcesSocket": server.socket}, f)
    return node, server, settings, vfio


def conf(device=None):
    c = {"cniVersion": "1.1.0", "name": "interop-dpdk", "type": "fastpath", "resourceName": DPDK}
    if device:
        c["deviceID"] = device
    return c


def check_refused(ctx, node, settings, netns_path, vfio):
    code, out, err = cni(ctx, node, "ADD", "pod-a", netns_path, conf(vfio[1]), settings)
    expect(code != 0, f"ADD of pod-b's VF as pod-a succeeded: {out}")
    expect(out.get("code") == 7, f"error code {out.get('code')}: {out} {err}")
    msg = out.get("msg", "")
    for part in (f"{NS}/pod-a", vfio[1], "pod-b"):
        expect(part in msg, f"the refusal does not name {part}: {msg}")
    records = os.path.join(node.state, "cni")
    expect(not os.path.isdir(records) or not os.listdir(records), "a refused ADD left a record")


def ownership_get(ctx):
    """Get answers: a foreign deviceID is refused naming the holder; no
    deviceID resolves the pod's own VF by resourceName; ADD and DEL work."""
    node, server, settings, vfio = node_with(ctx, "serve")
    try:
        with netns() as ns_path:
            check_refused(ctx, node, settings, ns_path, vfio)
            code, out, err = cni(ctx, node, "ADD", "pod-a", ns_path, conf(), settings)
            expect(code == 0, f"ADD resolved by resourceName failed: {out} {err}")
            got = [i.get("pciID") for i in out.get("interfaces", [])]
            expect(got == [vfio[0]], f"ADD attached {got}, kubelet gave pod-a {vfio[0]}")
            code, out, err = cni(ctx, node, "DEL", "pod-a", ns_path, conf(vfio[0]), settings)
            expect(code == 0, f"DEL failed: {out} {err}")
        expect(server.calls["Get"] >= 2, f"PodResources calls {server.calls}")
    finally:
        server.stop()
        node.cleanup()


def ownership_list_fallback(ctx):
    """A kubelet without Get (UNIMPLEMENTED from C-core): the CNI falls
    back to List and still refuses a foreign deviceID."""
    node, server, settings, vfio = node_with(ctx, "unimplemented")
    try:
        with netns() as ns_path:
            check_refused(ctx, node, settings, ns_path, vfio)
        expect(server.calls["Get"] == 1 and server.calls["List"] == 1, f"PodResources calls {server.calls}")
    finally:
        server.stop()
        node.cleanup()
