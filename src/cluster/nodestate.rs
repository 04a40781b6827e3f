//! This node's `SriovNetworkNodeState`: its status written with
//! server-side apply under the field manager `fastpath`, and only when it
//! differs from what this agent last wrote. Without the operator nobody
//! creates the object, so a missing one is created (name = node name, in
//! the agent's namespace, as the operator names them).

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::policy::GROUP;
use crate::operator::NodeStateStatus;

/// The field manager of every write fastpath makes.
pub const FIELD_MANAGER: &str = "fastpath";

/// `SriovNetworkNodeState` as kube's dynamic API sees it.
pub fn node_state_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "SriovNetworkNodeState"),
        "sriovnetworknodestates",
    )
}

/// Writing the node state failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    /// Creating the missing object.
    #[error("creating SriovNetworkNodeState {name}: {source}")]
    Create {
        /// The object (the node's name).
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Applying the status.
    #[error("writing SriovNetworkNodeState {name} status: {source}")]
    Status {
        /// The object.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Another field manager owns status fields (409 on apply).
    #[error(
        "SriovNetworkNodeState {name} status is owned by another field manager ({message}); \
         is the operator's config daemon still running on this node?"
    )]
    Conflict {
        /// The object.
        name: String,
        /// The server's message, naming the manager and fields.
        message: String,
    },
}

/// Writes one node's status, remembering the last write.
pub struct NodeStateWriter {
    api: Api<DynamicObject>,
    name: String,
    namespace: String,
    last: Option<Value>,
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl NodeStateWriter {
    /// A writer for node `node`'s object in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, node: &str) -> Self {
        Self {
            api: Api::namespaced_with(client, namespace, &node_state_resource()),
            name: node.to_string(),
            namespace: namespace.to_string(),
            last: None,
        }
    }

    fn body(&self, extra: Option<(&str, Value)>) -> Value {
        let mut v = json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": "SriovNetworkNodeState",
            "metadata": {"name": self.name, "namespace": self.namespace},
        });
        if let Some((k, x)) = extra {
            v[k] = x;
        }
        v
    }

    /// Applies `status` unless it is what was last written; true when a
    /// write was made.
    pub async fn write(&mut self, status: &NodeStateStatus) -> Result<bool, NodeStateError> {
        let status = serde_json::to_value(status).unwrap_or(Value::Null);
        if self.last.as_ref() == Some(&status) {
            return Ok(false);
        }
        let pp = PatchParams::apply(FIELD_MANAGER);
        let body = self.body(Some(("status", status.clone())));
        let first = self
            .api
            .patch_status(&self.name, &pp, &Patch::Apply(&body))
            .await;
        let result = match first {
            Err(e) if code(&e) == Some(404) => {
                self.api
                    .patch(&self.name, &pp, &Patch::Apply(&self.body(None)))
                    .await
                    .map_err(|source| NodeStateError::Create {
                        name: self.name.clone(),
                        source,
                    })?;
                self.api
                    .patch_status(&self.name, &pp, &Patch::Apply(&body))
                    .await
            }
            other => other,
        };
        match result {
            Ok(_) => {
                self.last = Some(status);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(NodeStateError::Conflict {
                name: self.name.clone(),
                message: s.message.clone(),
            }),
            Err(source) => Err(NodeStateError::Status {
                name: self.name.clone(),
                source,
            }),
        }
    }
}
