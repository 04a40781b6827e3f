//! `fastpath status`: the running agent's view (fetched over its status
//! socket, [`client`]) joined with the VFs attached to pods
//! ([`attachments`]) into one [`NodeStatus`] by a pure function, rendered
//! as text or JSON ([`render`]).

pub mod attachments;
pub mod client;
pub mod render;

use serde::Serialize;

use crate::agent::reconcile::StartupReport;
use crate::agent::status::AgentStatus;
use crate::agent::telemetry::{DraView, ReconcileView};
use crate::grpc_authority::RefusedAuthorityView;
use crate::pci::PciAddress;

pub use attachments::Attachment;

/// One pool in the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// `<prefix>/<name>`.
    pub resource: String,
    /// Registered with kubelet.
    pub registered: bool,
    /// Devices in the pool.
    pub capacity: usize,
    /// Devices advertised Healthy.
    pub healthy: usize,
    /// Devices attached to pods, by the CNI records; `None` when this
    /// build cannot read them.
    pub allocated: Option<usize>,
}

/// Everything `fastpath status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Every pool.
    pub pools: Vec<PoolStatus>,
    /// The last policy reconcile, with the VFs it held back.
    pub last_reconcile: Option<ReconcileView>,
    /// VFs attached to pods; `None` when this build cannot read the CNI
    /// records.
    pub attachments: Option<Vec<Attachment>>,
    /// What the agent's start-up reconcile restored.
    pub startup_reconcile: Option<StartupReport>,
    /// gRPC calls the agent refused for their `:authority`.
    pub refused_authorities: RefusedAuthorityView,
    /// The DRA plugin: registration, devices, prepared claims, last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dra: Option<DraView>,
}

/// Joins the agent's view and the attachments.
pub fn build(agent: &AgentStatus, attachments: Option<Vec<Attachment>>) -> NodeStatus {
    let pools = agent
        .pools
        .iter()
        .map(|p| {
            let allocated = attachments.as_ref().map(|a| {
                p.devices
                    .iter()
                    .filter(|d| a.iter().any(|x| x.pci == d.pci))
                    .count()
            });
            PoolStatus {
                resource: p.resource.clone(),
                registered: p.registered,
                capacity: p.devices.len(),
                healthy: p.devices.iter().filter(|d| d.healthy).count(),
                allocated,
            }
        })
        .collect();
    let mut attachments = attachments;
    if let Some(a) = &mut attachments {
        a.sort_by_key(|x| x.pci);
    }
    NodeStatus {
        pools,
        last_reconcile: agent.last_reconcile.clone(),
        attachments,
        startup_reconcile: agent.startup_reconcile.clone(),
        refused_authorities: agent.refused_authorities.clone(),
        dra: agent.dra.clone(),
    }
}

/// The pool a VF belongs to, for the attachment table.
pub fn pool_of<'a>(agent: &'a AgentStatus, pci: &PciAddress) -> Option<&'a str> {
    agent
        .pools
        .iter()
        .find(|p| p.devices.iter().any(|d| d.pci == *pci))
        .map(|p| p.resource.as_str())
}
