//! Provisioning: VFs created and bound live from a node policy. The policy
//! is parsed ([`policy`]), resolved against the inventory and planned into
//! [`action`]s by pure functions ([`desired`], [`plan`]) over the inventory
//! and [`facts`], then applied ([`apply`]: rounds, recovery, timings; the
//! private `execute`: one action at a time) with a [`journal`].

pub mod action;
pub mod apply;
pub mod desired;
mod execute;
pub mod facts;
pub mod held;
pub mod journal;
pub mod plan;
pub mod policy;
pub mod rebind;
mod vf_mac;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use apply::{ApplyError, ApplyReport, recover_interrupted};
pub use execute::ActionError;
pub use facts::HostFacts;
pub use held::{HeldError, held_vfs};
pub use plan::{Action, Held, Plan, PlanErrors, Step, plan};
pub use policy::{DeviceType, Policy, PolicyError};

use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

/// A policy that cannot be applied to this node, naming the entry and
/// field (`policies[1].numVfs: 9 exceeds sriov_totalvfs 7 of 0000:3b:00.0`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A selector item matches no PF.
    #[error("{field}: {value} matches no SR-IOV PF on this node")]
    NoMatch {
        /// `policies[N].pfNames[M]`.
        field: String,
        /// What it asked for.
        value: String,
    },
    /// A selector names a device that cannot have VFs.
    #[error("{field}: {what} is not SR-IOV capable (no sriov_totalvfs)")]
    NotSriov {
        /// `policies[N].pfNames[M]`.
        field: String,
        /// The interface or PCI address.
        what: String,
    },
    /// numVfs above what the PF supports.
    #[error("{field}: {num} exceeds sriov_totalvfs {total} of {pf}")]
    TooManyVfs {
        /// `policies[N].numVfs`.
        field: String,
        /// Requested.
        num: u32,
        /// `sriov_totalvfs`.
        total: u32,
        /// The PF.
        pf: PciAddress,
    },
    /// A VF range reaching past numVfs.
    #[error("{field}: VF {index} of {pf} is beyond numVfs {num}")]
    RangeBeyondNumVfs {
        /// `policies[N].pfNames`.
        field: String,
        /// Highest index asked for.
        index: u32,
        /// numVfs of the entry.
        num: u32,
        /// The PF.
        pf: PciAddress,
    },
    /// Two entries ask for different VF counts on one PF.
    #[error("{field}: {num} for {pf} conflicts with numVfs {other_num} in policies[{other}]")]
    NumVfsConflict {
        /// `policies[N].numVfs`.
        field: String,
        /// This entry's count.
        num: u32,
        /// The PF.
        pf: PciAddress,
        /// The other entry.
        other: usize,
        /// Its count.
        other_num: u32,
    },
    /// Two entries disagree about one PF or VF.
    #[error("{field}: {what} conflicts with {other}")]
    Conflict {
        /// The field of the later entry.
        field: String,
        /// What it asks.
        what: String,
        /// What the earlier entry asks.
        other: String,
    },
    /// `macs` on an entry selecting zero or several PFs.
    #[error("{field}: admin MACs need an entry that selects exactly one PF (it selects {count})")]
    MacsNeedOnePf {
        /// `policies[N].macs`.
        field: String,
        /// PFs selected.
        count: usize,
    },
    /// `macs` on a PF without a netdev to set them through.
    #[error("{field}: PF {pf} has no netdev to pin VF MACs through")]
    NoPfNetdev {
        /// `policies[N].macs`.
        field: String,
        /// The PF.
        pf: PciAddress,
    },
    /// vfio-pci without an IOMMU.
    #[error(
        "{field}: vfio-pci needs an IOMMU but {vf} has no iommu_group; boot with \
         `intel_iommu=on iommu=pt` (AMD: `amd_iommu=on iommu=pt`) or set allowNoIommu: true"
    )]
    NoIommu {
        /// `policies[N].deviceType`.
        field: String,
        /// The VF.
        vf: String,
    },
    /// The PF carries the node's own connectivity.
    #[error(
        "{entry}: PF {pf} ({ifname}) carries {what}; set force: true on the entry to reconfigure it"
    )]
    HostInterface {
        /// `policies[N]`.
        entry: String,
        /// The PF.
        pf: PciAddress,
        /// Its netdev.
        ifname: String,
        /// "the default route" or "the node's primary address".
        what: &'static str,
    },
}

/// Where and how [`reconcile`] works.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// fastpath's state directory; the journal lives in `<it>/provision/`.
    pub state_dir: PathBuf,
    /// The node's primary address (kubelet node IP), when known.
    pub node_ip: Option<IpAddr>,
    /// Bound on each wait for the kernel (VF links, drivers, netdevs).
    pub wait_timeout: Duration,
}

impl ReconcileOptions {
    /// Defaults: 10 s waits, no node IP.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            node_ip: None,
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// Brings the node to `policy`: finishes an interrupted apply from the
/// journal, then plans and applies until nothing is left. Blocking (sysfs
/// writes, waits, netlink); the agent calls it from `spawn_blocking` on
/// start and on every policy file change.
pub fn reconcile(
    sysfs: &Sysfs,
    procfs: &Procfs,
    policy: &Policy,
    held: &BTreeSet<PciAddress>,
    opts: &ReconcileOptions,
) -> Result<ApplyReport, ApplyError> {
    apply::reconcile(sysfs, procfs, policy, held, opts)
}
