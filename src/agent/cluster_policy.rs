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

/// Where the pools last applied from the cluster are kept, so that an
/// agent restarted while the API server is away serves them again.
fn pools_file(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("cluster-pools.json")
}

/// The pools last applied from the cluster, or none.
pub fn last_pools(state_dir: &std::path::Path, prefix: &str) -> crate::pools::Config {
    let empty = crate::pools::Config {
        resource_list: Vec::new(),
        dra_pools: Vec::new(),
        notes: Vec::new(),
    };
    match std::fs::read_to_string(pools_file(state_dir)) {
        Ok(text) => crate::pools::config::parse(&text, prefix).unwrap_or_else(|e| {
            tracing::warn!(
                "{}: {e}; starting with no pools",
                pools_file(state_dir).display()
            );
            empty
        }),
        Err(_) => empty,
    }
}

/// Keeps `json` as the last applied pools (temp file, rename).
fn keep_pools(state_dir: &std::path::Path, json: &str) {
    let path = pools_file(state_dir);
    let tmp = path.with_extension("json.tmp");
    let r = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        tracing::warn!("keeping the applied pools in {}: {e}", path.display());
    }
}

/// Ticks between full rounds when nothing is known to have changed.
const SCAN_EVERY: u32 = 10;

/// The last round's state, so that an idle round writes nothing.
#[derive(Default)]
struct Last {
    /// The held set seen by the last full round.
    held: Option<BTreeSet<PciAddress>>,
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
    let mut out = Writes {
        state: NodeStateWriter::new(client.clone(), &src.namespace, &src.node_name),
        events: Events::new(client, &src.namespace, &src.node_name),
    };
    let decide_opts = operator::Options {
        resource_prefix: src.resource_prefix.clone(),
    };
    let mut tick = tokio::time::interval(src.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Last::default();
    let mut ticks: u32 = 0;
    loop {
        let mut due = false;
        tokio::select! {
            r = inputs.changed() => {
                if r.is_err() { return }
                due = true;
            }
            _ = tick.tick() => {}
            // SIGHUP: apply again even if nothing changed (a kernel step
            // that failed is retried).
            () = h.policy_reload.notified() => {
                last.applied = None;
                due = true;
            }
        }
        // A tick with the same inputs only needs a sysfs scan when the
        // held set moved, or every SCAN_EVERY ticks (hardware changes, VF
        // netdevs moving into pods for the status): the agent's own
        // rescans already read sysfs every interval.
        ticks = ticks.wrapping_add(1);
        let held = provision::held_vfs(&opts.reconcile.state_dir).ok();
        if !due && held == last.held && !ticks.is_multiple_of(SCAN_EVERY) {
            continue;
        }
        last.held = held;
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
        round(&opts, &h, &mut last, &decision, inv, &mut out, &now).await;
    }
}

/// What a round writes to the cluster.
struct Writes {
    state: NodeStateWriter,
    events: Events,
}

/// One round after the decision: apply when needed, then status and
/// Events when they changed.
async fn round(
    opts: &PolicyOptions,
    h: &AgentHandle,
    last: &mut Last,
    decision: &Decision,
    mut inv: Inventory,
    out: &mut Writes,
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
        write_status(&mut out.state, &inv, decision, &Outcome::Applying).await;
        let outcome =
            match policy::reconcile(opts, decision.policy.clone(), held, h.telemetry()).await {
                Ok(r) => {
                    steps = r.steps;
                    // Pools follow provisioning, so kubelet is offered VFs that
                    // are already where the policy wants them.
                    h.set_pools(decision.pools.clone());
                    keep_pools(&opts.reconcile.state_dir, &decision.pools_json);
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
    write_status(&mut out.state, &inv, decision, &outcome).await;
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
        if let Err(e) = out.events.publish(&r, uid).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_applied_pools_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            last_pools(dir.path(), "openshift.io")
                .resource_list
                .is_empty()
        );
        let json = r#"{"resourceList":[{"resourceName":"net","resourcePrefix":"openshift.io",
            "selectors":[{"rootDevices":["0000:3b:00.0"],"pfNames":["ens1f0#0-3"]}]}]}"#;
        keep_pools(dir.path(), json);
        let cfg = last_pools(dir.path(), "openshift.io");
        assert_eq!(cfg.resource_list[0].full_name(), "openshift.io/net");
        // A damaged file starts empty rather than failing the agent.
        std::fs::write(pools_file(dir.path()), "{").unwrap();
        assert!(
            last_pools(dir.path(), "openshift.io")
                .resource_list
                .is_empty()
        );
    }
}
