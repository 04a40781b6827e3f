//! The VFs attached to pods, as plain data for `fastpath status`. The CNI
//! records (`<state_dir>/cni/`) are the source; the integrator wires
//! [`list`] to the CNI module's record list.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pci::PciAddress;

/// One VF in a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The VF.
    pub pci: PciAddress,
    /// The pool it came from, when known.
    pub resource: Option<String>,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// VLAN set on the VF, if any.
    pub vlan: Option<u16>,
    /// Unix seconds when the CNI ADD completed.
    pub since: u64,
}

/// The attachments on this node, or `None` when this build does not read
/// the CNI records (status then says so instead of showing none).
pub fn list(state_dir: &Path) -> Option<Vec<Attachment>> {
    let _ = state_dir;
    None
}
