//! The facts `doctor` decides on, as plain data, and the pure parsers that
//! turn file contents (modules.dep, CNI configs, pool config) into them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::inventory::Inventory;

/// A fact that could not be read carries the reason instead.
pub type Probe<T> = Result<T, String>;

/// Everything `doctor` looks at, read once.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Whether DPDK (vfio-pci) pools are expected, and why.
    pub dpdk: DpdkExpectation,
    /// `/proc/cmdline`.
    pub cmdline: Probe<String>,
    /// `<sysfs>/kernel/iommu_groups` and how many groups it holds.
    pub iommu_groups: (PathBuf, Probe<usize>),
    /// The vfio-pci module.
    pub vfio_pci: ModuleState,
    /// `/proc/meminfo` hugepages.
    pub hugepages: Probe<Hugepages>,
    /// The SR-IOV inventory and the sysfs root it came from.
    pub inventory: (PathBuf, Probe<Inventory>),
    /// Interfaces carrying an IPv4 or IPv6 default route.
    pub default_routes: Probe<BTreeSet<String>>,
    /// `<kubelet>/device-plugins/kubelet.sock`.
    pub device_plugin_socket: (PathBuf, PathState),
    /// `<kubelet>/pod-resources/kubelet.sock`.
    pub pod_resources_socket: (PathBuf, PathState),
    /// The CNI bin dir.
    pub cni_bin_dir: (PathBuf, DirState),
    /// The CNI conf dir and its config files in the order the runtime
    /// reads them (the first one is the node's network).
    pub cni_confs: (PathBuf, Probe<Vec<MultusConf>>),
    /// Whether SriovNetworkNodePolicy objects can be read; `None` when
    /// not asked (`--policy-source files`).
    pub cluster_policy: Option<ClusterPolicy>,
}

/// What the API server says about SriovNetworkNodePolicy objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterPolicy {
    /// Served and readable.
    Ready,
    /// The CRD is not installed (404).
    CrdAbsent,
    /// Listing is forbidden (403), with the server's message.
    Forbidden(String),
    /// The API server could not be asked, with why.
    Unreachable(String),
}

/// Why DPDK pools are (or are not) expected on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpdkExpectation {
    /// Expected, for the given reason (`--dpdk`, a vfio-pci pool, ...).
    Expected(String),
    /// Not expected.
    NotExpected,
}

impl DpdkExpectation {
    /// True when DPDK pools are expected.
    pub fn expected(&self) -> bool {
        matches!(self, DpdkExpectation::Expected(_))
    }
}

/// Where the vfio-pci module stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// Listed in `/proc/modules`.
    Loaded,
    /// Compiled into the kernel (`modules.builtin`).
    Builtin,
    /// Present in `modules.dep`: `modprobe` will load it.
    Loadable(String),
    /// Not loaded and not shipped with the running kernel.
    Missing {
        /// The kernel release looked at.
        release: String,
    },
    /// Could not be determined.
    Unknown(String),
}

/// Reserved hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hugepages {
    /// `HugePages_Total`.
    pub total: u64,
    /// `Hugepagesize` in kB.
    pub size_kb: u64,
}

/// What is at a path that should be a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    /// A unix socket.
    Socket,
    /// Something else (a regular file, a directory).
    NotSocket,
    /// Nothing.
    Missing,
    /// Could not be inspected.
    Unreadable(String),
}

/// Whether a directory can take a new file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// A file could be created in it.
    Writable,
    /// It exists but creating a file failed.
    NotWritable(String),
    /// It is not a directory.
    NotDir,
    /// It does not exist.
    Missing,
}

/// One CNI config file and whether it delegates through Multus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultusConf {
    /// File name in the conf dir.
    pub file: String,
    /// True when its plugin (or a plugin of its list) is `multus*`.
    pub is_multus: bool,
}

/// Suffixes the CNI runtime (libcni) loads from the conf dir.
const CNI_CONF_SUFFIXES: [&str; 3] = [".conf", ".conflist", ".json"];

/// True for a file name libcni would load.
pub fn is_cni_conf_name(name: &str) -> bool {
    CNI_CONF_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether a CNI config (conf or conflist JSON) runs Multus. Unparsable
/// text is not Multus.
pub fn conf_is_multus(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let is_multus = |p: &serde_json::Value| {
        p.get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.starts_with("multus"))
    };
    is_multus(&v)
        || v.get("plugins")
            .and_then(|p| p.as_array())
            .is_some_and(|ps| ps.iter().any(is_multus))
}

/// vfio-pci's state from `/proc/modules` names and the running kernel's
/// `modules.builtin` and `modules.dep` texts (`None`: file unreadable).
pub fn vfio_pci_state(
    loaded: &BTreeSet<String>,
    release: &str,
    builtin: Option<&str>,
    dep: Option<&str>,
) -> ModuleState {
    if loaded.contains("vfio_pci") {
        return ModuleState::Loaded;
    }
    let names_vfio_pci = |line: &str| -> Option<String> {
        let path = line.split(':').next()?.trim();
        let file = path.rsplit('/').next()?;
        let stem = file.split(".ko").next()?;
        (file.contains(".ko") && (stem == "vfio-pci" || stem == "vfio_pci"))
            .then(|| path.to_string())
    };
    if builtin.is_some_and(|t| t.lines().any(|l| names_vfio_pci(l).is_some())) {
        return ModuleState::Builtin;
    }
    match dep {
        Some(t) => match t.lines().find_map(names_vfio_pci) {
            Some(path) => ModuleState::Loadable(path),
            None => ModuleState::Missing {
                release: release.to_string(),
            },
        },
        None if builtin.is_none() => {
            ModuleState::Unknown(format!("no modules.dep for kernel {release}"))
        }
        None => ModuleState::Missing {
            release: release.to_string(),
        },
    }
}

/// Drivers that make a pool a DPDK (userspace) pool.
const DPDK_DRIVERS: [&str; 3] = ["vfio-pci", "igb_uio", "uio_pci_generic"];

/// Whether the pool config (reference `resourceList` JSON) or the node
/// policy (YAML) asks for DPDK VFs. Looks for any `drivers` selector naming
/// a userspace driver and any `deviceType: vfio-pci`, at any depth, so it
/// does not depend on the exact schema version of either file.
pub fn dpdk_from_config(
    flag: bool,
    config: Option<&serde_json::Value>,
    policy: Option<&serde_json::Value>,
) -> DpdkExpectation {
    if flag {
        return DpdkExpectation::Expected("--dpdk was given".into());
    }
    if let Some(d) = config.and_then(find_dpdk_driver) {
        return DpdkExpectation::Expected(format!("the pool config selects driver {d}"));
    }
    if policy.is_some_and(policy_wants_vfio) {
        return DpdkExpectation::Expected("the node policy has deviceType vfio-pci".into());
    }
    DpdkExpectation::NotExpected
}

fn find_dpdk_driver(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            let named = k
                .eq_ignore_ascii_case("drivers")
                .then(|| v.as_array())
                .flatten()
                .and_then(|ds| {
                    ds.iter()
                        .filter_map(Value::as_str)
                        .find(|d| DPDK_DRIVERS.contains(d))
                })
                .map(str::to_string);
            named.or_else(|| find_dpdk_driver(v))
        }),
        Value::Array(a) => a.iter().find_map(find_dpdk_driver),
        _ => None,
    }
}

fn policy_wants_vfio(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (k == "deviceType" && v.as_str() == Some("vfio-pci")) || policy_wants_vfio(v)
        }),
        Value::Array(a) => a.iter().any(policy_wants_vfio),
        _ => false,
    }
}
