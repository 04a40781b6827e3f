"""Device-plugin scenarios: grpcio as kubelet >= 1.26 (authority
`localhost`) against the shipped agent, in both registration modes."""

import json
import os
import re

import grpc

import kubelet as k
from agent import Agent

NET = "intel.com/sriov_netdevice"
DPDK = "intel.com/sriov_dpdk"
CONFIG = {
    "resourceList": [
        {"resourceName": "sriov_netdevice", "selectors": {"drivers": ["iavf"]}},
        {"resourceName": "sriov_dpdk", "selectors": {"drivers": ["vfio-pci"]}},
    ]
}


def env_name(resource):
    """The Allocate env variable of a resource (the reference plugin's rule:
    upper case, `.` and `/` become `_`)."""
    return "PCIDEVICE_" + re.sub(r"[./]", "_", resource).upper()


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def check_first_list(tree, resp, driver):
    """The first ListAndWatch list is every VF bound to `driver`, Healthy,
    with the VF's NUMA node as topology (none for -1)."""
    want = tree.vfs(driver)
    expect(want, f"the fixture has no {driver} VFs")
    expect(k.ids(resp) == want, f"ListAndWatch {k.ids(resp)}, sysfs {driver} VFs {want}")
    for d in resp.devices:
        expect(d.health == "Healthy", f"{d.ID} is {d.health}")
        numa = tree.numa_node(d.ID)
        got = [n.ID for n in d.topology.nodes] if d.HasField("topology") else []
        expect(got == ([numa] if numa >= 0 else []), f"{d.ID}: topology {got}, numa_node {numa}")


def check_allocate_netdevice(agent, c, vf):
    a = c.allocate([vf])
    var = env_name(NET)
    expect(a.envs[var] == vf, f"{var}={a.envs.get(var)!r}")
    info = json.loads(a.envs[var + "_INFO"])
    expect(info[vf]["generic"]["deviceID"] == vf, f"{var}_INFO {info}")
    expect(len(a.devices) == 0, f"device specs for a kernel VF: {a.devices}")
    path = os.path.join(agent.devinfo, f"{NET.replace('/', '-')}-{vf}-device.json")
    with open(path) as f:
        di = json.load(f)
    pf = os.path.basename(os.readlink(agent.tree.dev(vf, "physfn")))
    expect(di["pci"]["pci-address"] == vf, f"devinfo {di}")
    expect(di["pci"]["pf-pci-address"] == pf, f"devinfo {di}, physfn {pf}")


def check_allocate_vfio(agent, c, vf):
    a = c.allocate([vf])
    group = f"/dev/vfio/{agent.tree.iommu_group(vf)}"
    paths = [d.host_path for d in a.devices]
    expect(paths == ["/dev/vfio/vfio", group], f"device specs {paths}, want vfio + {group}")
    for d in a.devices:
        expect(d.permissions == "rw" and d.container_path == d.host_path, f"device spec {d}")
    info = json.loads(a.envs[env_name(DPDK) + "_INFO"])
    expect(info[vf]["vfio"]["dev-mount"] == group, f"_INFO {info}")


def check_preferred(c, ids):
    one = c.preferred(ids, [], 1)
    expect(len(one) == 1 and one[0] in ids, f"preferred of {ids}, size 1: {one}")
    must = c.preferred(ids, [ids[-1]], 1)
    expect(must == [ids[-1]], f"must include {ids[-1]}, size 1: {must}")
    both = c.preferred(ids, [], len(ids))
    expect(sorted(both) == ids, f"size {len(ids)}: {both}")


def check_unknown_id(c, foreign):
    try:
        c.allocate([foreign])
    except grpc.RpcError as e:
        expect(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"unknown ID: {e.code()}")
        expect(foreign in e.details(), f"the error does not name {foreign}: {e.details()}")
        return
    raise AssertionError(f"Allocate of {foreign}, not in the pool, succeeded")


def registration_dir(ctx):
    """Device-plugin dir mode: Register on kubelet.sock, then every call."""
    with Agent(ctx.binary, ctx.repo, CONFIG) as agent:
        kubelet = k.Registration(agent.dp_dir)
        try:
            regs = {r.resource_name: r for r in kubelet.registrations(2)}
            expect(sorted(regs) == [DPDK, NET], f"registered {sorted(regs)}")
            for r in regs.values():
                expect(r.options.get_preferred_allocation_available, f"{r.resource_name}: no preferred allocation")
                expect(os.path.exists(kubelet.endpoint_path(r)), f"endpoint {r.endpoint} missing")
            net = k.PluginClient(kubelet.endpoint_path(regs[NET]))
            expect(net.options().get_preferred_allocation_available, "GetDevicePluginOptions")
            w = net.list_and_watch()
            first = w.next()
            w.close()
            check_first_list(agent.tree, first, "iavf")
            ids = k.ids(first)
            check_allocate_netdevice(agent, net, ids[-1])
            check_preferred(net, ids)
            dpdk = k.PluginClient(kubelet.endpoint_path(regs[DPDK]))
            vfio = agent.tree.vfs("vfio-pci")
            check_unknown_id(net, vfio[0])
            check_first_list(agent.tree, dpdk.list_and_watch().next(), "vfio-pci")
            check_allocate_vfio(agent, dpdk, vfio[-1])
            net.close()
            dpdk.close()
            code = agent.stop()
            expect(code == 0, f"agent exit status {code} after SIGTERM")
            left = [r.endpoint for r in regs.values() if os.path.exists(kubelet.endpoint_path(r))]
            expect(not left, f"sockets left behind: {left}")
        finally:
            kubelet.stop()


def plugin_watcher(ctx):
    """Plugin-watcher mode: GetInfo and NotifyRegistrationStatus on the
    sockets in plugins_registry; ListAndWatch updates live on a pool config
    change and on a VF unbound in sysfs."""
    with Agent(ctx.binary, ctx.repo, CONFIG, watcher=True) as agent:
        found = k.discover_plugins(agent.registry, 2)
        infos = {i.name: i for i in found.values()}
        expect(sorted(infos) == [DPDK, NET], f"GetInfo names {sorted(infos)}")
        for i in infos.values():
            expect(i.type == k.DEVICE_PLUGIN_TYPE, f"{i.name}: type {i.type}")
            expect(list(i.supported_versions) == [k.DEVICE_PLUGIN_VERSION], f"{i.name}: {i.supported_versions}")
        expect(not os.path.exists(os.path.join(agent.dp_dir, "kubelet.sock")), "kubelet.sock in watcher mode")
        # NotifyRegistrationStatus reached the agent: its status says so.
        k.wait_for(
            lambda: all(p["registered"] for p in agent.status()["pools"]),
            "every pool registered in `fastpath status`",
        )

        net = k.PluginClient(infos[NET].endpoint)
        dpdk = k.PluginClient(infos[DPDK].endpoint)
        wn, wd = net.list_and_watch(), dpdk.list_and_watch()
        check_first_list(agent.tree, wn.next(), "iavf")
        check_first_list(agent.tree, wd.next(), "vfio-pci")

        # A pool config change: the same stream narrows to VF 0 of ens1f0.
        narrowed = {"resourceList": [dict(CONFIG["resourceList"][0])] + CONFIG["resourceList"][1:]}
        narrowed["resourceList"][0]["selectors"] = {"drivers": ["iavf"], "pfNames": ["ens1f0#0"]}
        agent.write_config(narrowed)
        vf0 = agent.tree.vf_of("ens1f0", 0)
        wn.until(lambda r: k.ids(r) == [vf0], f"only {vf0} after the config change")

        # sysfs: a vfio-pci VF unbound leaves the DPDK pool.
        gone = agent.tree.vfs("vfio-pci")[0]
        agent.tree.unbind(gone)
        rest = agent.tree.vfs("vfio-pci")
        wd.until(lambda r: k.ids(r) == rest, f"{rest} after unbinding {gone}")
        wn.close()
        wd.close()
        net.close()
        dpdk.close()
        expect(agent.stop() == 0, "agent exit status after SIGTERM")
        expect(not os.listdir(agent.registry), f"left in plugins_registry: {os.listdir(agent.registry)}")


def cdi(ctx):
    """--cdi: Allocate answers CDI device names and writes the spec."""
    with Agent(ctx.binary, ctx.repo, CONFIG, cdi=True) as agent:
        kubelet = k.Registration(agent.dp_dir)
        try:
            regs = {r.resource_name: r for r in kubelet.registrations(2)}
            c = k.PluginClient(kubelet.endpoint_path(regs[DPDK]))
            vf = agent.tree.vfs("vfio-pci")[-1]
            a = c.allocate([vf])
            c.close()
            names = [d.name for d in a.cdi_devices]
            expect(names == [f"{DPDK}={vf}"], f"cdi_devices {names}")
            expect(len(a.devices) == 0, f"device specs beside CDI names: {a.devices}")
            # For runtimes reached through a kubelet that predates cdi_devices.
            key = "cdi.k8s.io/" + DPDK.replace("/", "_")
            expect(dict(a.annotations) == {key: names[0]}, f"annotations {dict(a.annotations)}")
            with open(os.path.join(agent.cdi_dir, DPDK.replace("/", "-") + ".json")) as f:
                spec = json.load(f)
            expect(spec["kind"] == DPDK, f"CDI kind {spec['kind']}")
            dev = [d for d in spec["devices"] if d["name"] == vf]
            expect(len(dev) == 1, f"{vf} not in the CDI spec: {[d['name'] for d in spec['devices']]}")
            nodes = [n["path"] for n in dev[0]["containerEdits"]["deviceNodes"]]
            group = f"/dev/vfio/{agent.tree.iommu_group(vf)}"
            expect(nodes == ["/dev/vfio/vfio", group], f"CDI device nodes {nodes}")
        finally:
            kubelet.stop()
