//! This node's `SriovNetworkNodeState` status, computed from the inventory
//! and the outcome of the last apply, in the operator's field names (so
//! `kubectl get sriovnetworknodestates` and existing dashboards read it).
//!
//! The CRD's status has no field for held-back changes, and the API server
//! prunes unknown fields, so a change waiting for a pod is reported as
//! `syncStatus: InProgress` with the VFs and the reason in
//! `lastSyncError`, and as an Event.

use serde::Serialize;

use super::Decision;
use crate::inventory::{Inventory, Netdev};
use crate::provision::Held;
use crate::sysfs::LinkType;

/// How the last apply of a decision went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Being applied now.
    Applying,
    /// Applied; `held` lists changes waiting for pods to let go of VFs.
    Applied {
        /// Changes withheld.
        held: Vec<Held>,
    },
    /// The plan or the kernel failed; the message says which.
    Failed(String),
}

/// `status` of a `SriovNetworkNodeState`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStateStatus {
    /// Every SR-IOV PF on the node.
    pub interfaces: Vec<InterfaceExt>,
    /// `InProgress`, `Succeeded` or `Failed`.
    pub sync_status: &'static str,
    /// Why the node is not (yet) as the policies ask; empty when it is.
    pub last_sync_error: String,
}

/// One PF (`status.interfaces[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceExt {
    /// Netdev name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Bound driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// PCI address.
    pub pci_address: String,
    /// Vendor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Device id.
    #[serde(rename = "deviceID", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Netdev MTU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `sriov_numvfs`.
    pub num_vfs: u32,
    /// `ETH` or `IB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_type: Option<&'static str>,
    /// fastpath keeps every PF in legacy mode.
    pub e_switch_mode: &'static str,
    /// A policy marks the PF externally managed.
    pub externally_managed: bool,
    /// `sriov_totalvfs`.
    #[serde(rename = "totalvfs")]
    pub total_vfs: u32,
    /// Its VFs.
    #[serde(rename = "Vfs")]
    pub vfs: Vec<VirtualFunction>,
}

/// One VF (`status.interfaces[].Vfs[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualFunction {
    /// Host netdev name (none when bound to vfio-pci or in a pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Bound driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// PCI address.
    pub pci_address: String,
    /// Vendor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Device id.
    #[serde(rename = "deviceID", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Netdev MTU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// VF index.
    #[serde(rename = "vfID")]
    pub vf_id: u32,
}

fn link_type(l: Option<LinkType>) -> Option<&'static str> {
    l.map(|l| match l {
        LinkType::Ether => "ETH",
        LinkType::Infiniband => "IB",
    })
}

fn netdev_parts(n: Option<&Netdev>) -> (Option<String>, Option<String>, Option<u32>) {
    n.map_or((None, None, None), |n| {
        (Some(n.name.clone()), n.mac.clone(), n.mtu)
    })
}

/// The status for `inv` after `outcome` of `decision`.
pub fn node_state_status(
    inv: &Inventory,
    decision: &Decision,
    outcome: &Outcome,
) -> NodeStateStatus {
    let interfaces = inv
        .pfs
        .iter()
        .map(|pf| {
            let (name, mac, mtu) = netdev_parts(pf.netdev.as_ref());
            InterfaceExt {
                name,
                mac,
                driver: pf.driver.clone(),
                pci_address: pf.pci_address.to_string(),
                vendor: pf.ids.map(|i| i.vendor.to_string()),
                device_id: pf.ids.map(|i| i.device.to_string()),
                mtu,
                num_vfs: pf.num_vfs.unwrap_or(0),
                link_type: link_type(pf.netdev.as_ref().and_then(|n| n.link_type)),
                e_switch_mode: "legacy",
                externally_managed: decision
                    .interfaces
                    .iter()
                    .any(|i| i.pf == pf.pci_address && i.externally_managed),
                total_vfs: pf.total_vfs,
                vfs: pf
                    .vfs
                    .iter()
                    .map(|vf| {
                        let (name, mac, mtu) = netdev_parts(vf.netdev.as_ref());
                        VirtualFunction {
                            name,
                            mac,
                            driver: vf.driver.clone(),
                            pci_address: vf.pci_address.to_string(),
                            vendor: vf.ids.map(|i| i.vendor.to_string()),
                            device_id: vf.ids.map(|i| i.device.to_string()),
                            mtu,
                            vf_id: vf.index,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let mut problems: Vec<String> = Vec::new();
    let sync_status = match outcome {
        Outcome::Applying => "InProgress",
        Outcome::Failed(e) => {
            problems.push(e.clone());
            "Failed"
        }
        Outcome::Applied { held } if !held.is_empty() => {
            problems.extend(held.iter().map(|h| {
                format!(
                    "held back: VF {} is in use by a pod; waiting for it to be released to {}",
                    h.vf, h.pending
                )
            }));
            "InProgress"
        }
        Outcome::Applied { .. } => "Succeeded",
    };
    problems.extend(decision.refused.iter().map(ToString::to_string));
    // A refused policy means the node is not what the policies ask, even
    // when everything that was accepted is in place.
    let sync_status = if sync_status == "Succeeded" && !decision.refused.is_empty() {
        "Failed"
    } else {
        sync_status
    };
    NodeStateStatus {
        interfaces,
        sync_status,
        last_sync_error: problems.join("; "),
    }
}
