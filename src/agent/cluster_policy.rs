//! `--policy-source cluster`: SriovNetworkNodePolicy objects drive the node
//! policy and the pools. Each round takes the latest cluster inputs (the
//! policies, the Node's labels), scans sysfs, runs the pure
//! [`crate::operator::decide`], and when the result or the held set
//! changed applies it as one plan: provisioning first, then the pools
//! (served through ListAndWatch, no restart). The node state and Events
//! are written only when they change. A lost API server leaves the last
//! applied policy and pools in place.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;

use super::AgentHandle;
use super::policy::{self, PolicyOptions};
use crate::cluster::events::Events;
use crate::cluster::nodestate::NodeStateWriter;
use crate::cluster::policy::{Inputs, Probe, probe, watch_inputs};
use crate::cluster::{self, ClusterOptions};
use crate::inventory::{self, Inventory};
use crate::operator::report::{self, Report};
use crate::operator::{self, Decision, Outcome};
use crate::pci::PciAddress;
use crate::provision;
use crate::sysfs::Sysfs;

/// Where the policies come from and where the state goes.
#[derive(Debug, Clone)]
pub struct ClusterSource {
    /// How to reach the API server.
    pub cluster: ClusterOptions,
    /// The namespace the policies (and node states) live in.
    pub namespace: String,
    /// This node's name.
    pub node_name: String,
    /// Resource prefix of the pools (the operator's `openshift.io`).
    pub resource_prefix: String,
    /// How often the inventory and held set are re-checked.
    pub interval: Duration,
}

/// Connects and probes; `Err` says why the agent runs files-only.
pub async fn connect(src: &ClusterSource) -> Result<kube::Client, String> {
    let client = cluster::client(&src.cluster)
        .await
        .map_err(|e| e.to_string())?;
    match probe(&client, &src.namespace).await {
        Probe::Ready => Ok(client),
        // Watches retry with backoff; the policies apply once it answers.
        p @ Probe::Unreachable(_) => {
            tracing::warn!("{p}; will keep trying");
            Ok(client)
        }
        p => Err(p.to_string()),
    }
}

/// The last round's state, so that an idle round writes nothing.
#[derive(Default)]
struct Last {
    applied: Option<(
        provision::Policy,
        crate::pools::Config,
        BTreeSet<PciAddress>,
    )>,
    outcome: Option<Outcome>,
    reports: BTreeSet<Report>,
}

async fn scan(root: &std::path::Path) -> Result<Inventory, String> {
    let sysfs = Sysfs::new(root);
    tokio::task::spawn_blocking(move || inventory::scan_with_threads(&sysfs, 1))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Runs the cluster policy loop until the task is dropped.
pub async fn run(opts: PolicyOptions, src: ClusterSource, client: kube::Client, h: AgentHandle) {
    let mut inputs = watch_inputs(client.clone(), &src.namespace, &src.node_name);
    let mut writer = NodeStateWriter::new(client.clone(), &src.namespace, &src.node_name);
    let events = Events::new(client, &src.namespace, &src.node_name);
    let decide_opts = operator::Options {
        resource_prefix: src.resource_prefix.clone(),
    };
    let mut tick = tokio::time::interval(src.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Last::default();
    loop {
        tokio::select! {
            r = inputs.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let Some(now) = inputs.borrow().clone() else {
            continue;
        };
        let inv = match scan(&opts.sysfs_root).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("scanning sysfs for the cluster policy: {e}");
                continue;
            }
        };
        let decision = match operator::decide(&now.policies, &now.labels, &inv, &decide_opts) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("{e}");
                continue;
            }
        };
        round(
            &opts,
            &h,
            &mut last,
            &decision,
            inv,
            &mut writer,
            &events,
            &now,
        )
        .await;
    }
}

/// One round after the decision: apply when needed, then status and
/// Events when they changed.
#[allow(clippy::too_many_arguments)]
async fn round(
    opts: &PolicyOptions,
    h: &AgentHandle,
    last: &mut Last,
    decision: &Decision,
    mut inv: Inventory,
    writer: &mut NodeStateWriter,
    events: &Events,
    inputs: &Inputs,
) {
    let held = match provision::held_vfs(&opts.reconcile.state_dir) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}; not applying the cluster policy this round");
            return;
        }
    };
    let mut steps = Vec::new();
    let wanted = (
        decision.policy.clone(),
        decision.pools.clone(),
        held.clone(),
    );
    if last.applied.as_ref() != Some(&wanted) {
        for e in &decision.refused {
            tracing::error!("{e}; refused, the node is left as it is for it");
        }
        write_status(writer, &inv, decision, &Outcome::Applying).await;
        let outcome =
            match policy::reconcile(opts, decision.policy.clone(), held, h.telemetry()).await {
                Ok(r) => {
                    steps = r.steps;
                    // Pools follow provisioning, so kubelet is offered VFs that
                    // are already where the policy wants them.
                    h.set_pools(decision.pools.clone());
                    h.telemetry().policy_reload(true);
                    Outcome::Applied { held: r.held }
                }
                Err(e) => {
                    tracing::error!("{e}; keeping the pools as they are");
                    h.telemetry().policy_reload(false);
                    Outcome::Failed(e.to_string())
                }
            };
        last.applied = Some(wanted);
        last.outcome = Some(outcome);
        if let Ok(i) = scan(&opts.sysfs_root).await {
            inv = i;
        }
    }
    let outcome = last.outcome.clone().unwrap_or(Outcome::Applying);
    write_status(writer, &inv, decision, &outcome).await;
    let now = report::reports(decision, &outcome, &steps);
    let uids: HashMap<&str, String> = inputs
        .policies
        .iter()
        .filter_map(|p| {
            let name = p.pointer("/metadata/name")?.as_str()?;
            let uid = p.pointer("/metadata/uid").and_then(Value::as_str)?;
            Some((name, uid.to_string()))
        })
        .collect();
    for r in report::new_reports(&last.reports, &now) {
        let uid = match &r.target {
            report::Target::Policy(p) => uids.get(p.as_str()).cloned(),
            report::Target::Node => None,
        };
        if let Err(e) = events.publish(&r, uid).await {
            tracing::warn!(reason = r.reason, "publishing an Event: {e}");
        }
    }
    last.reports = now;
}

async fn write_status(
    writer: &mut NodeStateWriter,
    inv: &Inventory,
    decision: &Decision,
    outcome: &Outcome,
) {
    let status = operator::node_state_status(inv, decision, outcome);
    if let Err(e) = writer.write(&status).await {
        tracing::warn!("{e}");
    }
}
