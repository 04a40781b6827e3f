//! The DRA driver's plain data: what this node publishes as DRA devices
//! and what a claim allocated to them looks like. Shared by the kubelet
//! face (NodePrepareResources, CDI) and the cluster face
//! ([`crate::cluster`]), which turns these into ResourceSlices and reads
//! ResourceClaims into them; no `kube` type crosses this line.

pub mod attributes;
pub mod cdi;
pub mod claim_config;
pub mod plugin;
pub mod prepare;
pub mod prepare_run;
pub mod reconcile;
pub mod record;
pub mod serve;
pub mod stale_cdi;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

use crate::pci::PciAddress;

/// The driver name used when `--dra-driver` names none.
pub const DEFAULT_DRIVER: &str = "sriov.fastpath.dev";

/// A device attribute value (`resource.k8s.io/v1` DeviceAttribute holds
/// exactly one of these).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttrValue {
    /// `int`.
    Int(i64),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `version` (semver).
    Version(String),
}

/// One DRA device of this node: a VF in a DRA pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraDevice {
    /// The device name in the slice, from [`device_name`].
    pub name: String,
    /// Attributes by qualified or driver-local name.
    pub attributes: BTreeMap<String, AttrValue>,
}

/// What this node publishes for one driver: one pool, named after the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDevices {
    /// The DRA driver name.
    pub driver: String,
    /// The node (also the pool name).
    pub node: String,
    /// Every DRA device, in a stable order.
    pub devices: Vec<DraDevice>,
}

/// The DRA device name of a VF: its PCI address as a DNS label
/// (`0000:3b:02.1` is `pci-0000-3b-02-1`), so a name says which device it
/// is and maps back without a table.
pub fn device_name(pci: PciAddress) -> String {
    let s = pci.to_string().replace([':', '.'], "-");
    format!("pci-{s}")
}

/// The PCI address a [`device_name`] stands for; `None` for any other name.
pub fn device_pci(name: &str) -> Option<PciAddress> {
    let rest = name.strip_prefix("pci-")?;
    let b = rest.as_bytes();
    // dddd-bb-dd-f
    if b.len() != 12 || b[4] != b'-' || b[7] != b'-' || b[10] != b'-' {
        return None;
    }
    let addr = format!(
        "{}:{}:{}.{}",
        &rest[..4],
        &rest[5..7],
        &rest[8..10],
        &rest[11..]
    );
    addr.parse().ok()
}

/// A claim as kubelet names it in NodePrepareResources.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ClaimRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a claim recreated under the same name is another claim).
    pub uid: String,
}

impl fmt::Display for ClaimRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// One device the scheduler allocated to a claim, for this driver on
/// this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedDevice {
    /// The claim's request name (`requests[].name`, or `req/sub`).
    pub request: String,
    /// The pool (this node's name).
    pub pool: String,
    /// The device name in the pool.
    pub device: String,
}

/// Where an opaque config came from: the DeviceClass or the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `FromClass`.
    Class,
    /// `FromClaim`.
    Claim,
}

/// One opaque config entry addressed to this driver.
#[derive(Debug, Clone, PartialEq)]
pub struct OpaqueConfig {
    /// Requests it applies to; empty: every request.
    pub requests: Vec<String>,
    /// Class or claim.
    pub source: ConfigSource,
    /// `opaque.parameters`, as the API server returned it.
    pub parameters: serde_json::Value,
}

/// A claim's allocation as far as this driver on this node is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimAllocation {
    /// The claim.
    pub claim: ClaimRef,
    /// Devices of this driver in this node's pool.
    pub devices: Vec<AllocatedDevice>,
    /// Opaque configs for this driver, in the API's order (class entries
    /// first, then the claim's); a later entry wins over an earlier one.
    pub config: Vec<OpaqueConfig>,
}

/// Reading a claim from the cluster failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimSourceError {
    /// The API server could not be asked or answered with an error.
    #[error("reading ResourceClaim {claim}: {reason}")]
    Api {
        /// The claim.
        claim: String,
        /// What went wrong.
        reason: String,
    },
    /// The claim exists but has another UID than kubelet named.
    #[error("ResourceClaim {namespace}/{name} has UID {found}, kubelet asked for {wanted}")]
    UidMismatch {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The UID kubelet sent.
        wanted: String,
        /// The UID the API server has.
        found: String,
    },
    /// The claim is not allocated.
    #[error("ResourceClaim {claim} is not allocated")]
    NotAllocated {
        /// The claim.
        claim: String,
    },
}

/// Where NodePrepareResources reads claims from: the API server in the
/// agent ([`crate::cluster`]), a table in tests.
pub trait ClaimSource: Send + Sync {
    /// The claim's allocation for `driver` on `node`; `Ok(None)` when the
    /// claim no longer exists.
    fn get<'a>(
        &'a self,
        claim: &'a ClaimRef,
        driver: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClaimAllocation>, ClaimSourceError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_dns_labels_and_map_back() {
        for s in ["0000:3b:02.1", "ffff:ff:1f.7", "0001:00:00.0"] {
            let pci: PciAddress = s.parse().unwrap();
            let n = device_name(pci);
            assert!(n.len() <= 63);
            assert!(
                n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert_eq!(device_pci(&n), Some(pci), "{n}");
        }
        assert_eq!(
            device_name("0000:3b:02.1".parse().unwrap()),
            "pci-0000-3b-02-1"
        );
        for bad in [
            "",
            "pci-",
            "0000-3b-02-1",
            "pci-0000-3b-02-12",
            "pci-0000:3b:02.1",
            "pci-zzzz-3b-02-1",
        ] {
            assert_eq!(device_pci(bad), None, "{bad}");
        }
    }
}
