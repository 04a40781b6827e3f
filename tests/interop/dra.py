"""DRA scenarios: grpcio as kubelet's DRA plugin manager (authority
`localhost`) against the shipped agent run with --dra-driver, the API
server played by the fake-apiserver binary (a Node and ResourceClaims
from files; the ResourceSlices the agent publishes, read back over HTTP).

Two kubelet generations: 1.34+ registers `v1.DRAPlugin` and calls the v1
service; 1.33 (older than a 1.34 control plane, within the skew policy)
registers `v1beta1.DRAPlugin` and calls v1beta1.

The fake sysfs tree takes no driver rebind (the bind is never seen) and
has no links for netlink, so the claims here change no VF: a vfio-pci VF
asked for as vfio-pci, a kernel VF asked for as netdevice. The sysfs tree
is checked to be byte for byte the same throughout.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request

import grpc

import dra_v1_pb2
import dra_v1_pb2_grpc
import dra_v1beta1_pb2
import dra_v1beta1_pb2_grpc
import kubelet as k
from agent import Agent
from device_plugin import env_name, expect

DRIVER = "sriov.fastpath.dev"
NODE = "node-a"
NS = "cnf"
DRA_PLUGIN_TYPE = "DRAPlugin"
PREFIX = "intel.com"
# The device plugin keeps the iavf VFs; DRA gets the vfio-pci VFs and
# the Ethernet VFs of the ConnectX PF.
CONFIG = {
    "resourceList": [{"resourceName": "sriov_netdevice", "selectors": {"drivers": ["iavf"]}}],
    "draPools": [
        {"resourceName": "dra_dpdk", "selectors": {"drivers": ["vfio-pci"]}},
        {"resourceName": "dra_net", "selectors": {"pfNames": ["ens3f0np0"]}},
    ],
}
SERVICES = {
    "v1": (dra_v1_pb2, dra_v1_pb2_grpc),
    "v1beta1": (dra_v1beta1_pb2, dra_v1beta1_pb2_grpc),
}


class ApiServer:
    """The fake-apiserver binary on an ephemeral port, serving the object
    files written to its directory (polled every 20 ms)."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="fastpath-interop-api-")
        self.objects = os.path.join(self.dir, "objects")
        os.makedirs(self.objects)
        self.log_path = os.path.join(self.dir, "apiserver.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "--listen", "127.0.0.1:0", "--dir", self.objects, "--poll-ms", "20"],
                stdout=log,
                stderr=log,
            )

        def url():
            with open(self.log_path) as f:
                m = re.search(r"serving (http://\S+)", f.read())
            if self.process.poll() is not None:
                raise AssertionError(f"fake-apiserver exited: {self.log()}")
            return m and m.group(1)

        self.url = k.wait_for(url, "fake-apiserver's address").rstrip("/")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def put(self, obj):
        """Writes `obj` as a file (renamed into place: read whole)."""
        m = obj["metadata"]
        name = f"{obj['kind']}-{m.get('namespace', '')}-{m['name']}.json"
        tmp = os.path.join(self.objects, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(obj, f)
        os.rename(tmp, os.path.join(self.objects, name))

    def get(self, path):
        """GET `path` as JSON; None for 404."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=k.T) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(k.T)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def snapshot(root):
    """Every file's bytes and every link's target under `root`."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            if os.path.islink(p):
                out[p] = "-> " + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[p] = f.read()
    return out


def published(api):
    """This node's slices of this driver: {PCI address: (device name,
    attributes)}, once there are any."""

    def devices():
        items = (api.get("/apis/resource.k8s.io/v1/resourceslices") or {}).get("items", [])
        mine = [s for s in items if s["spec"]["driver"] == DRIVER and s["spec"]["pool"]["name"] == NODE]
        out = {}
        for s in mine:
            expect(s["spec"]["nodeName"] == NODE, f"slice {s['metadata']['name']} on {s['spec'].get('nodeName')}")
            for d in s["spec"]["devices"]:
                out[d["attributes"]["pciAddress"]["string"]] = (d["name"], d["attributes"])
        return out

    return k.wait_for(devices, "the agent's ResourceSlices in the API server")


def check_slices(tree, devices):
    """The DRA devices, and only those, with attributes read from sysfs."""
    pf = os.path.basename(os.readlink(os.path.join(tree.root, "class/net/ens3f0np0/device")))
    net = sorted(p for p in os.listdir(tree.devices) if os.path.islink(tree.dev(p, "physfn"))
                 and os.path.basename(os.readlink(tree.dev(p, "physfn"))) == pf)
    want = sorted(tree.vfs("vfio-pci") + net)
    expect(sorted(devices) == want, f"published {sorted(devices)}, draPools select {want}")
    for pci, (_, a) in devices.items():
        expect(a["driver"]["string"] == tree.driver(pci), f"{pci}: driver {a['driver']}")
        expect(a["iommuGroup"]["int"] == int(tree.iommu_group(pci)), f"{pci}: iommuGroup {a['iommuGroup']}")
        expect(a["resource.kubernetes.io/pciBusID"]["string"] == pci, f"{pci}: pciBusID {a}")
        numa = tree.numa_node(pci)
        expect(a.get("numaNode", {}).get("int", -1) == numa, f"{pci}: numaNode {a.get('numaNode')}, sysfs {numa}")
    return net


def claim(api, name, device, parameters=None):
    """A ResourceClaim allocated by the scheduler: request `vf` gets
    `device` of this node's pool, with opaque `parameters` for this
    driver. Returns its UID once the API server serves it."""
    results = [{"request": "vf", "driver": DRIVER, "pool": NODE, "device": device}]
    alloc = {"devices": {"results": results}}
    if parameters is not None:
        p = dict({"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig"}, **parameters)
        alloc["devices"]["config"] = [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": p}}]
    api.put({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov-vf"}}]}},
        "status": {"allocation": alloc},
    })
    path = f"/apis/resource.k8s.io/v1/namespaces/{NS}/resourceclaims/{name}"
    got = k.wait_for(lambda: api.get(path), f"claim {NS}/{name} in the API server")
    return got["metadata"]["uid"]


class DraClient:
    """kubelet's client of the DRA plugin for one API version."""

    def __init__(self, endpoint, version):
        self.pb, grpc_mod = SERVICES[version]
        self.channel = k.dial(endpoint)
        self.stub = grpc_mod.DRAPluginStub(self.channel)

    def _claims(self, claims):
        return [self.pb.Claim(namespace=NS, name=n, uid=u) for n, u in claims]

    def prepare(self, claims):
        req = self.pb.NodePrepareResourcesRequest(claims=self._claims(claims))
        return self.stub.NodePrepareResources(req, timeout=k.T).claims

    def unprepare(self, claims):
        req = self.pb.NodeUnprepareResourcesRequest(claims=self._claims(claims))
        return self.stub.NodeUnprepareResources(req, timeout=k.T).claims

    def close(self):
        self.channel.close()


def cdi_spec(agent, uid):
    return os.path.join(agent.cdi_dir, f"{DRIVER}-{uid}.json")


def record(agent, uid):
    return os.path.join(agent.state, "dra/claims", f"{uid}.json")


def devinfo(agent, resource, pci):
    return os.path.join(agent.devinfo, f"{PREFIX}-{resource}-{pci}-device.json")


def check_prepared(resp, uid, device, ids):
    c = resp[uid]
    expect(c.error == "", f"claim {uid}: {c.error}")
    got = [(list(d.request_names), d.pool_name, d.device_name, list(d.cdi_device_ids)) for d in c.devices]
    expect(got == [(["vf"], NODE, device, ids)], f"claim {uid}: devices {got}")


def spec_env(spec, name):
    """The env of CDI device `name` as a dict."""
    dev = [d for d in spec["devices"] if d["name"] == name]
    expect(len(dev) == 1, f"no CDI device {name} in {[d['name'] for d in spec['devices']]}")
    return dict(e.split("=", 1) for e in dev[0]["containerEdits"].get("env", []))


def check_dpdk_spec(agent, uid, pci):
    with open(cdi_spec(agent, uid)) as f:
        spec = json.load(f)
    expect(spec["kind"] == f"{DRIVER}/vf", f"CDI kind {spec['kind']}")
    # One CDI device per VF, named by its PCI address (what released
    # Multus takes as the deviceID), with the env and the vfio nodes.
    expect([d["name"] for d in spec["devices"]] == [pci], f"CDI devices {spec['devices']}")
    var = env_name(f"{PREFIX}/dra_dpdk")
    env = spec_env(spec, pci)
    expect(env.get(var) == pci, f"{var}={env.get(var)!r}, want {pci}")
    group = f"/dev/vfio/{agent.tree.iommu_group(pci)}"
    info = json.loads(env[var + "_INFO"])
    expect(info[pci]["vfio"]["dev-mount"] == group, f"{var}_INFO {info}")
    nodes = [d for d in spec["devices"] if d["name"] == pci]
    paths = [(n["path"], n["permissions"]) for n in nodes[0]["containerEdits"]["deviceNodes"]]
    expect(paths == [("/dev/vfio/vfio", "rw"), (group, "rw")], f"CDI device nodes {paths}")


def check_net_spec(agent, uid, pci):
    with open(cdi_spec(agent, uid)) as f:
        spec = json.load(f)
    expect([d["name"] for d in spec["devices"]] == [pci], f"CDI devices {spec['devices']}")
    var = env_name(f"{PREFIX}/dra_net")
    env = spec_env(spec, pci)
    expect(env.get(var) == pci, f"{var}={env.get(var)!r}, want {pci}")
    with open(devinfo(agent, "dra_net", pci)) as f:
        di = json.load(f)
    expect(di["pci"]["pci-address"] == pci, f"devinfo {di}")


def leftovers(agent, uids, pcis):
    """The CDI specs and records of `uids` and device-info files of
    `pcis` that exist."""
    paths = [cdi_spec(agent, u) for u in uids] + [record(agent, u) for u in uids]
    left = [p for p in paths if os.path.exists(p)]
    if os.path.isdir(agent.devinfo):
        left += [f for f in os.listdir(agent.devinfo) if any(p in f for p in pcis)]
    return left


def log_tail(agent, n=15):
    if agent is None or not os.path.exists(agent.log_path):
        return ""
    return "\nagent log (last lines):\n" + "\n".join(agent.log_text().splitlines()[-n:])


def scenario(ctx, version):
    """kubelet of the generation speaking `version` drives the DRA plugin:
    registration, three claims in one prepare (vfio-pci, netdevice, a bad
    config), prepare again, unprepare twice."""
    if not ctx.apiserver:
        raise AssertionError("needs the fake-apiserver binary (run.py --apiserver)")
    api = ApiServer(ctx.apiserver)
    agent = None
    try:
        api.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
        k.wait_for(lambda: api.get(f"/api/v1/nodes/{NODE}"), "the Node in the API server")
        agent = Agent(ctx.binary, ctx.repo, CONFIG, watcher=True, dra=(DRIVER, NODE, api.url)).start()
        before = snapshot(agent.sys)

        # The plugin watcher: the DRA socket beside a device-plugin one.
        found = k.discover_plugins(agent.registry, 2, kind=DRA_PLUGIN_TYPE, version=f"{version}.DRAPlugin")
        expect(len(found) == 1, f"DRA plugins {found}")
        info = next(iter(found.values()))
        expect(info.name == DRIVER, f"GetInfo name {info.name}")
        versions = sorted(info.supported_versions)
        expect(versions == ["v1.DRAPlugin", "v1beta1.DRAPlugin"], f"supported versions {versions}")
        endpoint = os.path.join(agent.plugins, DRIVER, "dra.sock")
        expect(info.endpoint == endpoint, f"endpoint {info.endpoint}, want {endpoint}")
        k.wait_for(lambda: (agent.status().get("dra") or {}).get("registered"), "DRA registered in `fastpath status`")

        devices = published(api)
        net = check_slices(agent.tree, devices)
        dpdk_pci = agent.tree.vfs("vfio-pci")[0]
        bad_pci = agent.tree.vfs("vfio-pci")[1]
        net_pci = net[-1]
        name = {pci: devices[pci][0] for pci in (dpdk_pci, bad_pci, net_pci)}
        uids = {
            "dpdk": claim(api, "dpdk", name[dpdk_pci], {"driver": "vfio-pci"}),
            "net": claim(api, "net", name[net_pci], {"driver": "netdevice"}),
            "bad": claim(api, "bad", name[bad_pci], {"vlan": 5000}),
        }
        claims = list(uids.items())
        kind = f"{DRIVER}/vf"
        dpdk_ids = [f"{kind}={dpdk_pci}"]
        net_ids = [f"{kind}={net_pci}"]

        c = DraClient(info.endpoint, version)
        first = c.prepare(claims)
        expect(sorted(first) == sorted(uids.values()), f"answers for {sorted(first)}")
        check_prepared(first, uids["dpdk"], name[dpdk_pci], dpdk_ids)
        check_prepared(first, uids["net"], name[net_pci], net_ids)
        bad = first[uids["bad"]]
        expect("parameters.vlan: 5000 is not a VLAN id" in bad.error, f"bad claim error {bad.error!r}")
        expect(not bad.devices, f"bad claim devices {bad.devices}")
        left = leftovers(agent, [uids["bad"]], [bad_pci])
        expect(not left, f"the bad claim left {left}")
        check_dpdk_spec(agent, uids["dpdk"], dpdk_pci)
        check_net_spec(agent, uids["net"], net_pci)
        prepared = sorted(p["uid"] for p in agent.status()["dra"]["prepared"])
        expect(prepared == sorted([uids["dpdk"], uids["net"]]), f"status prepared {prepared}")

        # kubelet retries prepare (after its own restart): the same answer.
        good = [("dpdk", uids["dpdk"]), ("net", uids["net"])]
        again = c.prepare(good)
        for _, u in good:
            expect(again[u] == first[u], f"claim {u} prepared twice: {again[u]} then {first[u]}")

        for _ in range(2):  # unprepare is safe to repeat
            un = c.unprepare(claims)
            errors = {u: r.error for u, r in un.items()}
            expect(errors == {u: "" for u in uids.values()}, f"unprepare errors {errors}")
            left = leftovers(agent, uids.values(), [dpdk_pci, net_pci, bad_pci])
            expect(not left, f"left after unprepare: {left}")
        c.close()
        expect(snapshot(agent.sys) == before, "the claims changed the sysfs tree")
        expect(agent.stop() == 0, "agent exit status after SIGTERM")
        expect(not os.path.exists(endpoint), "dra.sock left behind")
    except grpc.RpcError as e:
        raise AssertionError(f"gRPC {e.code()}: {e.details()}{log_tail(agent)}") from None
    except AssertionError as e:
        raise AssertionError(f"{e}{log_tail(agent)}") from None
    finally:
        if agent:
            agent.cleanup()
        api.stop()


def v1(ctx):
    """kubelet 1.34+: v1.DRAPlugin."""
    scenario(ctx, "v1")


def v1beta1(ctx):
    """kubelet 1.33: v1beta1.DRAPlugin."""
    scenario(ctx, "v1beta1")
