//! Node readiness checks as a pure function: [`Facts`] gathered from the
//! node (by `cli::doctor`) go in, one [`Finding`] per check comes out, each
//! with a plain verdict and, when something is wrong, the fix.
//!
//! A check is *fatal* when the node cannot serve pods without it; fatal
//! checks that fail make the node "not ready". The DPDK checks (IOMMU,
//! vfio-pci, hugepages) are fatal only when DPDK pools are expected.

mod checks;
pub mod facts;
mod render;

use serde::Serialize;

pub use facts::{
    ClusterPolicy, DirState, DpdkExpectation, Facts, Hugepages, ModuleState, MultusConf, PathState,
    Probe,
};
pub use render::render_table;

/// Which check a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// IOMMU enabled (kernel arguments, groups present).
    Iommu,
    /// `iommu=pt` for kernel-driver VF performance.
    IommuPassthrough,
    /// The vfio-pci module is loaded, built in or loadable.
    VfioPci,
    /// Hugepages reserved for DPDK.
    Hugepages,
    /// SR-IOV capable PFs present.
    SriovPfs,
    /// SR-IOV devices carrying the node's default route.
    DefaultRoute,
    /// kubelet's device-plugin registration socket.
    DevicePluginSocket,
    /// kubelet's pod-resources socket (Multus reads device IDs from it).
    PodResourcesSocket,
    /// The CNI bin dir exists and is writable.
    CniBinDir,
    /// Multus is the node's first CNI config.
    Multus,
    /// SriovNetworkNodePolicy objects are readable (`--policy-source cluster`).
    ClusterPolicy,
}

impl CheckId {
    /// The check's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::Iommu => "iommu",
            CheckId::IommuPassthrough => "iommu-passthrough",
            CheckId::VfioPci => "vfio-pci",
            CheckId::Hugepages => "hugepages",
            CheckId::SriovPfs => "sriov-pfs",
            CheckId::DefaultRoute => "default-route",
            CheckId::DevicePluginSocket => "device-plugin-socket",
            CheckId::PodResourcesSocket => "pod-resources-socket",
            CheckId::CniBinDir => "cni-bin-dir",
            CheckId::Multus => "multus",
            CheckId::ClusterPolicy => "cluster-policy",
        }
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All good.
    Ok,
    /// Works, but something should be fixed (never makes the node unready).
    Warn,
    /// A fatal check failed: the node is not ready.
    Fail,
    /// Not relevant on this node (e.g. hugepages without DPDK pools).
    Skip,
}

impl Status {
    /// The verdict as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check.
    pub check: CheckId,
    /// Its verdict.
    pub status: Status,
    /// Whether a problem here makes the node not ready.
    pub fatal: bool,
    /// What was found, in a sentence.
    pub message: String,
    /// How to fix it; `None` when there is nothing to fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every finding plus the overall verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no fatal check failed.
    pub ready: bool,
    /// One finding per check, in [`CheckId`] order.
    pub findings: Vec<Finding>,
}

/// Runs every check over `facts`.
pub fn diagnose(facts: &Facts) -> Report {
    let dpdk = facts.dpdk.expected();
    let mut findings = vec![
        checks::iommu(facts, dpdk),
        checks::iommu_passthrough(facts),
        checks::vfio_pci(facts, dpdk),
        checks::hugepages(facts, dpdk),
        checks::sriov_pfs(facts),
        checks::default_route(facts),
        checks::socket(
            CheckId::DevicePluginSocket,
            &facts.device_plugin_socket,
            "kubelet's device-plugin registration socket",
            "start kubelet (systemctl status kubelet); if kubelet uses another root dir \
             (k0s, microk8s, k3s), pass --kubelet-dir and mount that path in the DaemonSet",
        ),
        checks::socket(
            CheckId::PodResourcesSocket,
            &facts.pod_resources_socket,
            "kubelet's pod-resources socket (Multus reads each pod's VF from it)",
            "start kubelet; the pod-resources API is on by default since Kubernetes 1.15, \
             check that no kubelet flag or feature gate disables it and that the path \
             is the one Multus mounts",
        ),
        checks::cni_bin_dir(facts),
        checks::multus(facts),
    ];
    // Only asked for with --policy-source cluster, so other reports keep
    // their shape.
    findings.extend(checks::cluster_policy(facts));
    let ready = findings.iter().all(|f| f.status != Status::Fail);
    Report { ready, findings }
}

#[cfg(test)]
mod tests;
