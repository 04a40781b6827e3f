//! The sriov-network-operator's `SriovNetworkNodePolicy` objects as a
//! decision: object JSON, the Node's labels and the inventory in; the node
//! policy provisioning applies, the device-plugin pools, and what was
//! refused and why out. No Kubernetes client type crosses this boundary
//! (the cluster face, `crate::cluster`, hands plain JSON in).
//!
//! [`spec`] reads and checks one object, [`merge`] selects and merges them
//! by the operator's rules, [`render`] turns the merge into a
//! [`provision::Policy`] and a [`pools::Config`], and [`status`] computes
//! the `SriovNetworkNodeState` status.

pub mod merge;
pub mod render;
pub mod report;
pub mod spec;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

pub use merge::{IfaceSpec, Note, VfGroup};
pub use spec::NodePolicy;
pub use status::{NodeStateStatus, Outcome, node_state_status};

use crate::inventory::Inventory;
use crate::{pools, provision};

/// The operator's default resource prefix.
pub const DEFAULT_RESOURCE_PREFIX: &str = "openshift.io";

/// A policy refused (wholly, or on one PF), or the decision failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// A field's value is not one the CRD or the operator's webhook admits.
    #[error("SriovNetworkNodePolicy {policy}: {field}: {reason}")]
    Invalid {
        /// `metadata.name`.
        policy: String,
        /// `spec.nicSelector.pfNames[1]`.
        field: String,
        /// What is wrong, with the value.
        reason: String,
    },
    /// The operator honours the field by means fastpath does not use live.
    #[error(
        "SriovNetworkNodePolicy {policy}: {field}: {value:?} is not supported by fastpath: {reason}"
    )]
    Unsupported {
        /// `metadata.name`.
        policy: String,
        /// The field.
        field: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The policy is valid but cannot be applied to a PF of this node.
    #[error("SriovNetworkNodePolicy {policy}: {field}: {reason}")]
    NotOnNode {
        /// `metadata.name`.
        policy: String,
        /// The field.
        field: String,
        /// What does not fit, naming the PF.
        reason: String,
    },
    /// Two policies ask for incompatible things; this one gives way.
    #[error("SriovNetworkNodePolicy {policy}: {field}: conflicts with policy {other}: {reason}")]
    Conflict {
        /// The policy that gives way (the offending object).
        policy: String,
        /// The field.
        field: String,
        /// The policy that is applied.
        other: String,
        /// What conflicts.
        reason: String,
    },
    /// The merge could not be rendered (a bad `--resource-prefix`).
    #[error("rendering the pools and node policy: {0}")]
    Render(String),
}

impl OperatorError {
    /// The policy the error is about, if any.
    pub fn policy(&self) -> Option<&str> {
        match self {
            Self::Invalid { policy, .. }
            | Self::Unsupported { policy, .. }
            | Self::NotOnNode { policy, .. }
            | Self::Conflict { policy, .. } => Some(policy),
            Self::Render(_) => None,
        }
    }

    /// A CamelCase reason for the Kubernetes Event.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "InvalidPolicy",
            Self::Unsupported { .. } => "UnsupportedField",
            Self::NotOnNode { .. } => "DoesNotFitNode",
            Self::Conflict { .. } => "PolicyConflict",
            Self::Render(_) => "RenderFailed",
        }
    }
}

/// Settings of the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Resource prefix of every pool (`openshift.io`).
    pub resource_prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resource_prefix: DEFAULT_RESOURCE_PREFIX.into(),
        }
    }
}

/// Everything the policies add up to on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Policies selecting this node, in apply order.
    pub selected: Vec<String>,
    /// Per-PF wishes (the operator's node-state `spec.interfaces`).
    pub interfaces: Vec<IfaceSpec>,
    /// The node policy provisioning applies.
    pub policy: provision::Policy,
    /// The device-plugin pools.
    pub pools: pools::Config,
    /// The pools as reference JSON.
    pub pools_json: String,
    /// Refusals, each naming its policy and field.
    pub refused: Vec<OperatorError>,
    /// Overrides and policies that match no PF here.
    pub notes: Vec<Note>,
}

/// Decides what `objects` (SriovNetworkNodePolicy JSON) mean for a node
/// with `labels` and inventory `inv`. Only a bad resource prefix fails the
/// whole decision; a bad policy is refused and the rest still apply.
pub fn decide(
    objects: &[Value],
    labels: &BTreeMap<String, String>,
    inv: &Inventory,
    opts: &Options,
) -> Result<Decision, OperatorError> {
    let mut refused = Vec::new();
    let mut policies = Vec::new();
    for o in objects {
        match spec::parse(o) {
            Ok(p) => policies.push(p),
            // A broken policy for other nodes is reported by those nodes.
            Err(e) => {
                if selects_node(o, labels) {
                    refused.push(e);
                }
            }
        }
    }
    let merged = merge::merge(&policies, labels, inv);
    refused.extend(merged.refused);
    let r = render::render(&merged.interfaces, inv, &opts.resource_prefix, &mut refused)?;
    Ok(Decision {
        selected: merged.selected,
        interfaces: merged.interfaces,
        policy: r.policy,
        pools: r.pools,
        pools_json: r.pools_json,
        refused,
        notes: merged.notes,
    })
}

/// Whether an object that failed to parse would select this node (a
/// `nodeSelector` that is itself malformed counts as selecting it, so the
/// error is not lost).
fn selects_node(obj: &Value, labels: &BTreeMap<String, String>) -> bool {
    match obj.pointer("/spec/nodeSelector") {
        Some(Value::Object(m)) => m.iter().all(|(k, v)| {
            v.as_str()
                .is_none_or(|v| labels.get(k).is_some_and(|l| l == v))
        }),
        _ => true,
    }
}
