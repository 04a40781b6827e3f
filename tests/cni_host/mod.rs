//! A host for CNI tests on real kernel objects: veth pairs stand in for
//! VF netdevs (a fake sysfs maps each VF's `net/<name>` to a veth's host
//! end), pods are real network namespaces, IPAM is Debian's real
//! host-local / static from /usr/lib/cni. Names carry the process id and
//! a per-test tag; everything is removed on drop, even after a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fastpath::cni::{Env, StepHook};
use serde_json::{Value, json};
use sysfs_fixture::{FakeSysfs, NetSpec, PfSpec, presets};

/// Runs `ip` and panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` and returns stdout (empty on failure).
pub fn ip_out(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One VF stand-in.
#[derive(Debug, Clone)]
pub struct Vf {
    /// Its PCI address in the fake sysfs.
    pub pci: String,
    /// The veth end that plays the VF netdev (host side).
    pub ifname: String,
    /// Its MAC as created.
    pub mac: String,
}

/// Interface facts read with `ip -j link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    pub name: String,
    pub mac: String,
    pub mtu: u64,
    pub up: bool,
}

fn facts(json: &str) -> Option<LinkFacts> {
    let v: Value = serde_json::from_str(json).ok()?;
    let l = v.get(0)?;
    Some(LinkFacts {
        name: l["ifname"].as_str()?.to_string(),
        mac: l["address"].as_str()?.to_string(),
        mtu: l["mtu"].as_u64()?,
        up: l["flags"]
            .as_array()?
            .iter()
            .any(|f| f.as_str() == Some("UP")),
    })
}

/// The link `name` in the host, if present.
pub fn host_link(name: &str) -> Option<LinkFacts> {
    facts(&ip_out(&["-j", "link", "show", "dev", name]))
}

/// The link `name` in netns `ns`, if present.
pub fn ns_link(ns: &str, name: &str) -> Option<LinkFacts> {
    facts(&ip_out(&["-n", ns, "-j", "link", "show", "dev", name]))
}

/// IPv4 addresses (CIDR) of `name` in `ns`.
pub fn ns_addrs(ns: &str, name: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&ip_out(&[
        "-n", ns, "-j", "-4", "addr", "show", "dev", name,
    ]))
    .unwrap_or_default();
    v.get(0)
        .and_then(|l| l["addr_info"].as_array())
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

/// A test host: fake sysfs, state dir, IPAM data dir, VF stand-ins, pods.
pub struct Host {
    pub tag: String,
    pub sysfs: tempfile::TempDir,
    pub state: tempfile::TempDir,
    pub ipam_dir: tempfile::TempDir,
    pub pf: PfSpec,
    pub vfs: Vec<Vf>,
    pub pods: Vec<String>,
    /// A namespace holding the far ends of the veths.
    pub far: String,
}

impl Host {
    /// `n` VF stand-ins behind one fake E810 PF; `tag` (a few letters)
    /// makes names unique per test.
    pub fn new(tag: &str, n: usize) -> Self {
        let pid = std::process::id();
        let tag = format!("{tag}{pid}");
        let far = format!("fpt-{tag}-far");
        ip(&["netns", "add", &far]);
        let sysfs = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let ipam_dir = tempfile::tempdir().unwrap();
        let mut host = Host {
            tag: tag.clone(),
            sysfs,
            state,
            ipam_dir,
            pf: presets::e810("0000:3b:00.0", &format!("{tag}pf"), "0000:3b:01.0", n),
            vfs: Vec::new(),
            pods: Vec::new(),
            far: far.clone(),
        };
        for i in 0..n {
            let name = format!("{tag}v{i}");
            assert!(name.len() <= 15, "{name} too long");
            let mac = format!("02:fa:00:00:{:02x}:{:02x}", (pid & 0xff) as u8, i as u8);
            ip(&[
                "link",
                "add",
                &name,
                "address",
                &mac,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{tag}p{i}"),
                "netns",
                &far,
            ]);
            host.pf.vfs[i].netdev = Some(NetSpec::ether(&name, &mac));
            host.vfs.push(Vf {
                pci: host.pf.vfs[i].addr.clone(),
                ifname: name,
                mac,
            });
        }
        let fake = FakeSysfs::new(host.sysfs.path()).unwrap();
        fake.add_pf(&host.pf).unwrap();
        host
    }

    /// Rebinds VF `i` to vfio-pci in the fake sysfs (no netdev: DPDK).
    pub fn make_dpdk(&mut self, i: usize) {
        let fake = FakeSysfs::new(self.sysfs.path()).unwrap();
        fake.remove_vfs(&self.pf).unwrap();
        self.pf.vfs[i].netdev = None;
        self.pf.vfs[i].driver = Some("vfio-pci".into());
        fake.add_pf(&self.pf).unwrap();
    }

    /// Points VF `i`'s `net/` at another netdev name in the fake sysfs, as
    /// the kernel does when it returns a VF under a `devN` name.
    pub fn rename_vf_netdev(&mut self, i: usize, name: &str, mac: &str) {
        let fake = FakeSysfs::new(self.sysfs.path()).unwrap();
        fake.remove_vfs(&self.pf).unwrap();
        self.pf.vfs[i].netdev = Some(NetSpec::ether(name, mac));
        fake.add_pf(&self.pf).unwrap();
    }

    /// Creates pod netns number `i` (name returned) and brings its lo up.
    pub fn pod(&mut self, i: usize) -> String {
        let name = format!("fpt-{}-pod{i}", self.tag);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        self.pods.push(name.clone());
        name
    }

    /// `/run/netns/<name>`.
    pub fn netns_path(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// The environment of one invocation.
    pub fn env(&self, container: &str, ifname: &str, netns: Option<&str>) -> Env {
        let mut e = Env::new();
        e.insert("CNI_CONTAINERID".into(), container.into());
        e.insert("CNI_IFNAME".into(), ifname.into());
        e.insert(
            "CNI_NETNS".into(),
            netns
                .map(|n| Self::netns_path(n).display().to_string())
                .unwrap_or_default(),
        );
        e.insert(
            "CNI_ARGS".into(),
            format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod-{container};K8S_POD_UID=uid-{container}"),
        );
        e.insert("CNI_PATH".into(), "/usr/lib/cni".into());
        e.insert(
            "FASTPATH_STATE_DIR".into(),
            self.state.path().display().to_string(),
        );
        e.insert(
            "FASTPATH_SYSFS_ROOT".into(),
            self.sysfs.path().display().to_string(),
        );
        e
    }

    /// A config for VF `vf` with host-local IPAM under this host's dataDir.
    pub fn conf(&self, version: &str, vf: usize, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": format!("net-{}", self.tag),
            "type": "fastpath",
            "deviceID": self.vfs[vf].pci,
            "ipam": {
                "type": "host-local",
                "subnet": "10.77.0.0/24",
                "routes": [{"dst": "10.88.0.0/16"}],
                "gateway": "10.77.0.1",
                "dataDir": self.ipam_dir.path().display().to_string(),
            },
        });
        if let (Some(o), Some(x)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                if v.is_null() {
                    o.remove(k);
                } else {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
        c
    }

    /// Runs the CNI in-process; returns (exit code, stdout JSON or Null).
    pub fn cni(&self, cmd: &str, env: &Env, conf: &Value) -> (i32, Value) {
        self.cni_hook(cmd, env, conf, &fastpath::cni::NoHook)
    }

    /// [`Host::cni`] with a step hook.
    pub fn cni_hook(
        &self,
        cmd: &str,
        env: &Env,
        conf: &Value,
        hook: &dyn StepHook,
    ) -> (i32, Value) {
        let input = conf.to_string();
        let mut out = Vec::new();
        let code = fastpath::cni::run_with_hook(cmd, env, &mut input.as_bytes(), &mut out, hook);
        let v = serde_json::from_slice(&out).unwrap_or(Value::Null);
        (code, v)
    }

    /// Files in the state dir that hold a record: a slot file (`.rec`)
    /// whose newest slot is a record (it stays, emptied, after DEL), or an
    /// earlier version's `.json`; an unreadable one counts too.
    pub fn records(&self) -> Vec<String> {
        list_names(&self.state.path().join("cni"))
            .into_iter()
            .filter(|n| {
                let Some(pci) = n
                    .strip_suffix(".rec")
                    .or_else(|| n.strip_suffix(".json"))
                    .and_then(|p| p.parse().ok())
                else {
                    return false;
                };
                !matches!(
                    fastpath::cni::records::load(self.state.path(), pci),
                    Ok(None)
                )
            })
            .collect()
    }

    /// IP lease files host-local left (everything but its bookkeeping).
    pub fn leases(&self) -> Vec<String> {
        let dir = self.ipam_dir.path().join(format!("net-{}", self.tag));
        list_names(&dir)
            .into_iter()
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect()
    }

    /// Asserts VF `i` is back in the host as created: name, MAC, MTU, and
    /// admin-down.
    pub fn assert_vf_home(&self, i: usize) {
        let vf = &self.vfs[i];
        let l = host_link(&vf.ifname).unwrap_or_else(|| panic!("{} not in the host", vf.ifname));
        assert_eq!(l.mac, vf.mac, "{} MAC", vf.ifname);
        assert_eq!(l.mtu, 1500, "{} MTU", vf.ifname);
        assert!(!l.up, "{} is left admin-down", vf.ifname);
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Host {
    fn drop(&mut self) {
        for vf in &self.vfs {
            let _ = Command::new("ip")
                .args(["link", "del", &vf.ifname])
                .output();
        }
        for p in self.pods.iter().chain(std::iter::once(&self.far)) {
            let _ = Command::new("ip").args(["netns", "del", p]).output();
        }
    }
}
