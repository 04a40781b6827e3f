//! Kubernetes Events (events.k8s.io/v1, through kube's recorder) on the
//! policies and on this node's Node, for what the policy decision reports.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::policy::GROUP;
use crate::operator::report::{Report, Target};

/// The reporting controller named in every Event.
pub const REPORTER: &str = "fastpath";

/// Publishes reports for one node.
pub struct Events {
    recorder: Recorder,
    namespace: String,
    node: ObjectReference,
}

impl Events {
    /// A publisher for node `node`, whose policies live in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, node: &str) -> Self {
        let reporter = Reporter {
            controller: REPORTER.into(),
            instance: Some(node.to_string()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            namespace: namespace.to_string(),
            node: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        }
    }

    /// Publishes `r`; `uid` is the policy's, when known.
    pub async fn publish(&self, r: &Report, uid: Option<String>) -> Result<(), kube::Error> {
        let reference = match &r.target {
            Target::Node => self.node.clone(),
            Target::Policy(name) => ObjectReference {
                api_version: Some(format!("{GROUP}/v1")),
                kind: Some("SriovNetworkNodePolicy".into()),
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                uid,
                ..ObjectReference::default()
            },
        };
        // The Events API caps a note at 1 kB.
        let mut note = r.note.clone();
        if note.len() > 1000 {
            let mut cut = 997;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let ev = Event {
            type_: if r.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: r.reason.into(),
            note: Some(note),
            action: if r.warning { "Refuse" } else { "Apply" }.into(),
            secondary: None,
        };
        self.recorder.publish(&ev, &reference).await
    }
}
