"""The shipped fastpath binary as the node runs it, on a copy of the
committed fake sysfs tree (examples/sysfs, written by the sysfs-fixture
crate exactly as the kernel lays it out), in a temp dir of its own.

Expected answers are read from that tree (drivers, IOMMU groups, NUMA
nodes, virtfnN links), never written down here.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request

from kubelet import wait_for

T = 5.0


class Tree:
    """Reads the fake sysfs tree the way the kernel's layout defines it."""

    def __init__(self, root):
        self.root = root
        self.devices = os.path.join(root, "bus/pci/devices")

    def dev(self, pci, *rest):
        return os.path.join(self.devices, pci, *rest)

    def driver(self, pci):
        link = self.dev(pci, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def vfs(self, driver):
        """VFs (devices with a physfn link) bound to `driver`, sorted."""
        return sorted(
            p
            for p in os.listdir(self.devices)
            if os.path.islink(self.dev(p, "physfn")) and self.driver(p) == driver
        )

    def iommu_group(self, pci):
        return os.path.basename(os.readlink(self.dev(pci, "iommu_group")))

    def numa_node(self, pci):
        with open(self.dev(pci, "numa_node")) as f:
            return int(f.read())

    def vf_of(self, pf_netdev, index):
        """The PCI address of VF `index` of the PF whose netdev is `pf_netdev`."""
        pf = os.path.basename(os.readlink(os.path.join(self.root, "class/net", pf_netdev, "device")))
        return os.path.basename(os.readlink(self.dev(pf, f"virtfn{index}")))

    def unbind(self, pci):
        """What `echo <pci> > driver/unbind` leaves: no driver link on
        either side."""
        drv = self.driver(pci)
        os.unlink(os.path.join(self.root, "bus/pci/drivers", drv, pci))
        os.unlink(self.dev(pci, "driver"))


class Agent:
    """`fastpath agent` (JSON logs to a file) with every path in its temp dir.
    `watcher`: plugins_registry exists (plugin-watcher mode); `cdi`: --cdi;
    `dra`: (driver, node name, API server URL) runs the DRA plugin.
    Not started, it is a node's directories alone (the CNI scenarios)."""

    def __init__(self, binary, repo, config, watcher=False, cdi=False, dra=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="fastpath-interop-")
        # Unix socket paths are limited to 107 bytes: keep them short.
        self.sys = os.path.join(self.dir, "sys")
        shutil.copytree(os.path.join(repo, "examples/sysfs"), self.sys, symlinks=True)
        self.tree = Tree(self.sys)
        self.proc = os.path.join(self.dir, "proc")
        os.makedirs(os.path.join(self.proc, "net"))
        with open(os.path.join(self.proc, "net/route"), "w") as f:
            f.write("Iface\tDestination\n")
        self.config = os.path.join(self.dir, "config.json")
        self.write_config(config)
        self.dp_dir = os.path.join(self.dir, "dp")
        os.makedirs(self.dp_dir)
        self.registry = os.path.join(self.dir, "reg")
        if watcher:
            os.makedirs(self.registry)
        self.devinfo = os.path.join(self.dir, "devinfo")
        self.cdi_dir = os.path.join(self.dir, "cdi")
        self.state = os.path.join(self.dir, "state")
        self.cdi = cdi
        self.plugins = os.path.join(self.dir, "plugins")
        self.dra = dra
        self.log_path = os.path.join(self.dir, "agent.log")
        self.process = None

    def write_config(self, config):
        """Replaces the pool config atomically, as a ConfigMap update does."""
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            json.dump(config, f)
        os.rename(tmp, self.config)

    def start(self):
        args = [
            self.binary,
            "--sysfs-root", self.sys,
            "--log-format", "json",
            "agent",
            "--config", self.config,
            "--device-plugin-dir", self.dp_dir,
            "--plugins-registry-dir", self.registry,
            "--devinfo-dir", self.devinfo,
            "--cdi-dir", self.cdi_dir,
            "--state-dir", self.state,
            "--proc-root", self.proc,
            "--rescan-interval", "100ms",
            "--http-addr", "127.0.0.1:0",
        ]
        if self.cdi:
            args.append("--cdi")
        if self.dra:
            driver, node, api_server = self.dra
            args += [
                f"--dra-driver={driver}",
                "--node-name", node,
                "--kubelet-plugins-dir", self.plugins,
                "--kube-api-server", api_server,
            ]
        env = dict(os.environ, RUST_LOG="info")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stderr=log, stdout=log, env=env)
        return self

    def log_lines(self):
        """The agent's log so far, one parsed JSON object per line."""
        out = []
        with open(self.log_path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    out.append({"fields": {"message": line.rstrip("\n")}})
        return out

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def http_addr(self):
        def find():
            for e in self.log_lines():
                addr = e.get("fields", {}).get("addr")
                if addr and "metrics" in e["fields"].get("message", ""):
                    return addr
            return None

        return wait_for(find, "the agent's /metrics address in its log")

    def metrics(self):
        """/metrics as {"name{labels}": value}."""
        with urllib.request.urlopen(f"http://{self.http_addr()}/metrics", timeout=T) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def status(self):
        """`fastpath status --json` against this agent's state dir."""
        res = subprocess.run(
            [self.binary, "status", "--json", "--state-dir", self.state],
            capture_output=True,
            text=True,
            timeout=T,
        )
        if res.returncode != 0:
            raise AssertionError(f"fastpath status failed ({res.returncode}): {res.stderr}")
        return json.loads(res.stdout)

    def stop(self):
        """SIGTERM; the agent must exit 0 and remove its sockets."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(T)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the agent ignored SIGTERM for 5 s") from None

    def cleanup(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

