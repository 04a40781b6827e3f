//! Which Kubernetes Events a round of the policy loop owes: one on each
//! policy and on the Node for every applied change and every refusal, plus
//! overrides and changes held back by pods. Reports that were already made
//! in the previous round are not repeated, so an idle agent writes nothing.

use std::collections::BTreeSet;

use super::{Decision, Outcome};

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A `SriovNetworkNodePolicy`, by name.
    Policy(String),
    /// This node's Node object.
    Node,
}

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Report {
    /// Its object.
    pub target: Target,
    /// Warning (else Normal).
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// The message.
    pub note: String,
}

/// Every report the round's state calls for; `steps` are the changes the
/// apply made.
pub fn reports(decision: &Decision, outcome: &Outcome, steps: &[String]) -> BTreeSet<Report> {
    let mut out = BTreeSet::new();
    let mut both = |policy: Option<&str>, warning: bool, reason: &'static str, note: String| {
        if let Some(p) = policy {
            out.insert(Report {
                target: Target::Policy(p.to_string()),
                warning,
                reason,
                note: note.clone(),
            });
        }
        out.insert(Report {
            target: Target::Node,
            warning,
            reason,
            note,
        });
    };
    for e in &decision.refused {
        both(e.policy(), true, e.event_reason(), e.to_string());
    }
    for n in &decision.notes {
        both(
            Some(&n.policy),
            false,
            "PolicyOverridden",
            format!("SriovNetworkNodePolicy {}: {}", n.policy, n.message),
        );
    }
    let contributing: BTreeSet<&str> = decision
        .interfaces
        .iter()
        .flat_map(|i| i.groups.iter().map(|g| g.policy.as_str()))
        .collect();
    if !steps.is_empty() {
        let note = format!("applied live: {}", steps.join("; "));
        for p in &contributing {
            both(Some(p), false, "PolicyApplied", note.clone());
        }
        if contributing.is_empty() {
            both(None, false, "PolicyApplied", note);
        }
    }
    match outcome {
        Outcome::Failed(e) => {
            for p in &contributing {
                both(Some(p), true, "ApplyFailed", e.clone());
            }
            if contributing.is_empty() {
                both(None, true, "ApplyFailed", e.clone());
            }
        }
        Outcome::Applied { held } => {
            for h in held {
                both(
                    None,
                    false,
                    "ChangeHeld",
                    format!(
                        "VF {} is in use by a pod; {} waits until it is released",
                        h.vf, h.pending
                    ),
                );
            }
        }
        Outcome::Applying => {}
    }
    out
}

/// The reports in `now` that `before` did not already make.
pub fn new_reports(before: &BTreeSet<Report>, now: &BTreeSet<Report>) -> Vec<Report> {
    now.difference(before).cloned().collect()
}
