//! Reading `SriovNetworkNodePolicy` objects and this node's labels: a probe
//! that tells whether the CRD is served and readable, and watches (kube's
//! watcher and reflector stores) that hand the decision plain JSON and a
//! label map whenever either changes. A broken watch keeps the last
//! inputs: the watcher re-lists with backoff, and nothing is withdrawn
//! until the server says an object is gone.

use std::collections::BTreeMap;
use std::fmt;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio::sync::watch;

/// The operator's API group.
pub const GROUP: &str = "sriovnetwork.openshift.io";

/// `SriovNetworkNodePolicy` as kube's dynamic API sees it.
pub fn policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "SriovNetworkNodePolicy"),
        "sriovnetworknodepolicies",
    )
}

/// What the cluster says this node should be configured by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Every policy object in the namespace, as JSON, sorted by name.
    pub policies: Vec<Value>,
    /// The Node's labels.
    pub labels: BTreeMap<String, String>,
}

/// Whether policies can be read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The CRD is served and listing works.
    Ready,
    /// The API server does not serve the CRD (404).
    CrdAbsent,
    /// Listing is forbidden (403): the RBAC is missing.
    Forbidden(String),
    /// The API server could not be asked (network, TLS, 5xx).
    Unreachable(String),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready => f.write_str("SriovNetworkNodePolicy objects are readable"),
            Self::CrdAbsent => write!(
                f,
                "the API server does not serve sriovnetworknodepolicies.{GROUP}/v1: \
                 the CRDs are not installed (deploy/overlays/policy-from-cluster has them)"
            ),
            Self::Forbidden(m) => write!(
                f,
                "listing sriovnetworknodepolicies is forbidden: {m} (the agent's RBAC \
                 needs list and watch on them; see deploy/overlays/policy-from-cluster)"
            ),
            Self::Unreachable(m) => write!(f, "the API server cannot be reached: {m}"),
        }
    }
}

/// Lists one policy to learn whether the CRD is there and readable.
pub async fn probe(client: &kube::Client, namespace: &str) -> Probe {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &policy_resource());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Probe::Ready,
        Err(kube::Error::Api(s)) if s.code == 404 => Probe::CrdAbsent,
        Err(kube::Error::Api(s)) if s.code == 403 => Probe::Forbidden(s.message.clone()),
        Err(e) => Probe::Unreachable(e.to_string()),
    }
}

/// The parts of an object the decision reads: a new resourceVersion or
/// managedFields alone is not a change.
fn plain(o: &DynamicObject) -> Value {
    serde_json::json!({
        "metadata": {
            "name": o.metadata.name,
            "namespace": o.metadata.namespace,
            "uid": o.metadata.uid,
        },
        "spec": o.data.get("spec").cloned().unwrap_or(Value::Null),
    })
}

/// Watches the namespace's policies and the Node named `node`; the
/// receiver holds `None` until both have been listed once, then the
/// latest inputs (sent only when they changed). Runs until the receiver
/// is dropped.
pub fn watch_inputs(
    client: kube::Client,
    namespace: &str,
    node: &str,
) -> watch::Receiver<Option<Inputs>> {
    let (tx, rx) = watch::channel(None);
    let ar = policy_resource();
    let policies: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let nodes: Api<Node> = Api::all(client);
    let pol_writer = Writer::new(ar);
    let pol_store = pol_writer.as_reader();
    let node_writer: Writer<Node> = Writer::default();
    let node_store = node_writer.as_reader();
    let node_cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let pol_events = watcher(policies, watcher::Config::default())
        .default_backoff()
        .reflect(pol_writer)
        .map(|e| e.map(|_| ()));
    let node_events = watcher(nodes, node_cfg)
        .default_backoff()
        .reflect(node_writer)
        .map(|e| e.map(|_| ()));
    let node_name = node.to_string();
    tokio::spawn(async move {
        let events = futures::stream::select(pol_events, node_events);
        tokio::pin!(events);
        // Both stores must have been listed once before the decision runs:
        // half the inputs would look like "no policies" and change nothing
        // for the right reason by accident.
        let ready = future::join(pol_store.wait_until_ready(), node_store.wait_until_ready());
        tokio::pin!(ready);
        let mut is_ready = false;
        loop {
            let ev = tokio::select! {
                r = &mut ready, if !is_ready => {
                    is_ready = r.0.is_ok() && r.1.is_ok();
                    if !is_ready { return; }
                    None
                }
                ev = events.next() => match ev {
                    Some(ev) => Some(ev),
                    None => return,
                },
                () = tx.closed() => return,
            };
            if let Some(Err(e)) = ev {
                // The watcher retries with backoff; the last inputs stand.
                tracing::warn!(
                    "watching policies or the Node: {e}; keeping the last applied policy"
                );
                continue;
            }
            if !is_ready {
                continue;
            }
            let mut list: Vec<Value> = pol_store.state().iter().map(|o| plain(o)).collect();
            list.sort_by_key(crate::operator::spec::object_name);
            let labels = node_store
                .state()
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            let inputs = Inputs {
                policies: list,
                labels,
            };
            tx.send_if_modified(|cur| {
                let changed = cur.as_ref() != Some(&inputs);
                if changed {
                    *cur = Some(inputs);
                }
                changed
            });
        }
    });
    rx
}
