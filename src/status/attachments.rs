//! The VFs attached to pods, as plain data for `fastpath status`. The CNI
//! records (`<state_dir>/cni/`) are the source.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cni::plan::Step;
use crate::netlink::vf::VfSetting;
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

/// The attachments on this node from the CNI records, or `None` when the
/// records cannot be read (status then says "unknown" instead of showing
/// none).
pub fn list(state_dir: &Path) -> Option<Vec<Attachment>> {
    match crate::cni::records::load_all(state_dir) {
        Ok(records) => Some(records.iter().map(from_record).collect()),
        Err(e) => {
            tracing::warn!("attachments unknown: {e}");
            None
        }
    }
}

fn from_record(r: &crate::cni::records::Record) -> Attachment {
    let vlan = r.plan.iter().find_map(|step| match step {
        Step::PfSide(VfSetting::Vlan { vlan, .. }) if *vlan != 0 => u16::try_from(*vlan).ok(),
        _ => None,
    });
    Attachment {
        pci: r.pci,
        resource: None,
        pod_namespace: r.pod_namespace.clone().unwrap_or_default(),
        pod_name: r.pod_name.clone().unwrap_or_default(),
        ifname: r.ifname.clone(),
        vlan,
        since: r.since,
    }
}
