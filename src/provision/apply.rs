//! Executes plans through sysfs: finishes an interrupted apply from the
//! journal, then scans, plans and runs steps in rounds until the plan is
//! empty (a count change or a probe reveals VFs and netdevs the first
//! scan could not see). Every action is timed: time inside the kernel
//! (sysfs writes, waits, modprobe, netlink) vs fastpath's own time (scan,
//! plan, journal, bookkeeping).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::ReconcileOptions;
pub use super::execute::ActionError;
use super::execute::Executor;
use super::facts::{self, FactsError};
use super::journal::{Journal, JournalError, Record};
use super::plan::{Action, Held, PlanErrors, Step, plan};
use super::policy::Policy;
use crate::inventory;
use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::sysfs::{Sysfs, SysfsError};

/// Most scan-plan-apply rounds before giving up: count changes, then
/// rebinding, then netdev settings need at most three.
const MAX_ROUNDS: usize = 4;

/// Applying a policy failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The inventory scan failed.
    #[error("scanning sysfs: {0}")]
    Scan(SysfsError),
    /// Host facts could not be read.
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// The policy cannot be applied to this node; nothing was changed.
    #[error(transparent)]
    Plan(#[from] PlanErrors),
    /// The journal could not be used.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A step failed; its undo ran (and may itself have failed).
    #[error("step {step:?}: {failure}{}", undo_note(.undo_error))]
    Step {
        /// The step's summary.
        step: String,
        /// What failed.
        failure: Box<ActionError>,
        /// The undo's failure, if it failed too.
        undo_error: Option<String>,
    },
    /// The plan did not converge.
    #[error("still changes to make after {0} rounds: {1}")]
    NotConverged(usize, String),
}

fn undo_note(e: &Option<String>) -> String {
    match e {
        Some(e) => format!(" (undo failed too: {e})"),
        None => " (step undone)".into(),
    }
}

fn micros<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

/// Timing of one executed action.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTiming {
    /// The step it belongs to.
    pub step: String,
    /// The action.
    pub action: Action,
    /// Time inside the kernel, microseconds.
    #[serde(serialize_with = "micros", rename = "kernelUs")]
    pub kernel: Duration,
    /// Total time of the action, microseconds.
    #[serde(serialize_with = "micros", rename = "totalUs")]
    pub total: Duration,
}

/// What a reconcile did and how long it took.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// An interrupted step found in the journal and what became of it.
    pub recovered: Option<String>,
    /// Steps executed, in order.
    pub steps: Vec<String>,
    /// Every action with its timing.
    pub actions: Vec<ActionTiming>,
    /// Changes withheld because pods hold VFs.
    pub held: Vec<Held>,
    /// Warnings from planning.
    pub warnings: Vec<String>,
    /// Scan-plan rounds run.
    pub rounds: usize,
    /// Time in scans and host facts, microseconds.
    #[serde(serialize_with = "micros", rename = "scanUs")]
    pub scan: Duration,
    /// Time planning, microseconds.
    #[serde(serialize_with = "micros", rename = "planUs")]
    pub plan: Duration,
    /// Time writing the journal, microseconds.
    #[serde(serialize_with = "micros", rename = "journalUs")]
    pub journal: Duration,
    /// Time inside the kernel, microseconds.
    #[serde(serialize_with = "micros", rename = "kernelUs")]
    pub kernel: Duration,
    /// fastpath's own time (everything but `kernel`), microseconds.
    #[serde(serialize_with = "micros", rename = "ownUs")]
    pub own: Duration,
    /// Wall time, microseconds.
    #[serde(serialize_with = "micros", rename = "totalUs")]
    pub total: Duration,
}

impl ApplyReport {
    /// True when nothing was changed.
    pub fn changed_nothing(&self) -> bool {
        self.steps.is_empty() && self.recovered.is_none()
    }
}

/// See [`super::reconcile`].
pub fn reconcile(
    sysfs: &Sysfs,
    procfs: &Procfs,
    policy: &Policy,
    held: &BTreeSet<PciAddress>,
    opts: &ReconcileOptions,
) -> Result<ApplyReport, ApplyError> {
    let start = Instant::now();
    let mut report = ApplyReport::default();
    let exec = Executor {
        sysfs,
        timeout: opts.wait_timeout,
    };
    let journal = Journal::open(&opts.state_dir);
    if let Some(rec) = journal.read()? {
        report.recovered = Some(recover(&exec, &journal, rec, held, &mut report)?);
    }
    loop {
        let t = Instant::now();
        let inv = inventory::scan(sysfs).map_err(ApplyError::Scan)?;
        let facts = facts::gather(sysfs, procfs, &inv, opts.node_ip, policy.pins_macs())?;
        report.scan += t.elapsed();
        let t = Instant::now();
        let p = plan(&inv, policy, held, &facts)?;
        report.plan += t.elapsed();
        report.held = p.held;
        report.warnings = p.warnings;
        if p.steps.is_empty() {
            break;
        }
        if report.rounds == MAX_ROUNDS {
            let left: Vec<&str> = p.steps.iter().map(|s| s.summary.as_str()).collect();
            return Err(ApplyError::NotConverged(report.rounds, left.join("; ")));
        }
        report.rounds += 1;
        let mut rec = Record::new(p.steps);
        let t = Instant::now();
        journal.begin(&rec)?;
        crate::fault::crash_point("provision.after.journal_begin");
        report.journal += t.elapsed();
        for index in 0..rec.steps.len() {
            if index > 0 {
                let t = Instant::now();
                rec.reached = index;
                journal.advance(&rec)?;
                crate::fault::crash_point("provision.after.journal_advance");
                report.journal += t.elapsed();
            }
            if let Err(e) = run_step(&exec, &rec.steps[index], &mut report) {
                // An undone step leaves nothing to recover.
                if matches!(
                    e,
                    ApplyError::Step {
                        undo_error: None,
                        ..
                    }
                ) {
                    journal.clear()?;
                }
                return Err(e);
            }
        }
        let t = Instant::now();
        journal.clear()?;
        report.journal += t.elapsed();
        // Every step succeeded and nothing waited on them: the node is as
        // planned, so no verification scan is needed.
        if p.deferred.is_empty() {
            break;
        }
    }
    report.total = start.elapsed();
    report.own = report.total.saturating_sub(report.kernel);
    Ok(report)
}

/// Finishes or rolls back the step an interrupted apply left in the
/// journal, with no policy to apply after it (the agent's start without
/// `--policy`). `None` when there is no journal.
pub fn recover_interrupted(
    sysfs: &Sysfs,
    held: &BTreeSet<PciAddress>,
    opts: &ReconcileOptions,
) -> Result<Option<String>, ApplyError> {
    let exec = Executor {
        sysfs,
        timeout: opts.wait_timeout,
    };
    let journal = Journal::open(&opts.state_dir);
    let Some(rec) = journal.read()? else {
        return Ok(None);
    };
    recover(&exec, &journal, rec, held, &mut ApplyReport::default()).map(Some)
}

/// Runs a step; on failure runs its undo and reports both.
fn run_step(exec: &Executor, step: &Step, report: &mut ApplyReport) -> Result<(), ApplyError> {
    tracing::info!(step = %step.summary, "applying");
    for action in &step.actions {
        if let Err(source) = exec.timed(&step.summary, action, report) {
            tracing::warn!(step = %step.summary, "failed: {source}; undoing");
            let undo_error = step
                .undo
                .iter()
                .map(|a| exec.timed(&step.summary, a, report))
                .find_map(Result::err)
                .map(|e| e.to_string());
            return Err(ApplyError::Step {
                step: step.summary.clone(),
                failure: Box::new(source),
                undo_error,
            });
        }
        crate::fault::crash_point(crate::fault::action_point(action));
    }
    report.steps.push(step.summary.clone());
    Ok(())
}

/// Finishes the step an interrupted apply was in, or rolls it back when
/// it cannot be finished. Steps touching a VF a pod now holds are left.
fn recover(
    exec: &Executor,
    journal: &Journal,
    rec: Record,
    held: &BTreeSet<PciAddress>,
    report: &mut ApplyReport,
) -> Result<String, ApplyError> {
    let Some(step) = rec.step().cloned() else {
        journal.clear()?;
        return Ok(format!(
            "dropped a journal naming step {} of {}",
            rec.reached,
            rec.steps.len()
        ));
    };
    let touches_held = step
        .actions
        .iter()
        .any(|a| action_vf(a).is_some_and(|v| held.contains(&v)));
    let step = without_done_count_writes(exec.sysfs, step);
    let outcome = if touches_held {
        format!(
            "left interrupted step {:?}: a pod holds its VF",
            step.summary
        )
    } else {
        match run_step(exec, &step, report) {
            Ok(()) => format!("finished interrupted step {:?}", step.summary),
            Err(ApplyError::Step {
                failure,
                undo_error: None,
                ..
            }) => format!("rolled back interrupted step {:?}: {failure}", step.summary),
            Err(e) => return Err(e),
        }
    };
    tracing::warn!("{outcome}");
    journal.clear()?;
    Ok(outcome)
}

/// A count step whose final count is already in place keeps only its
/// wait: writing 0 again would destroy VFs a pod may have been given since.
fn without_done_count_writes(sysfs: &Sysfs, mut step: Step) -> Step {
    let last = step.actions.iter().rev().find_map(|a| match a {
        Action::SetNumVfs { pf, count } => Some((*pf, *count)),
        _ => None,
    });
    if let Some((pf, count)) = last
        && sysfs.pci_device(pf).sriov_numvfs().ok() == Some(count)
    {
        step.actions
            .retain(|a| !matches!(a, Action::SetNumVfs { .. }));
    }
    step
}

fn action_vf(a: &Action) -> Option<PciAddress> {
    match a {
        Action::PinVfMac { vf, .. }
        | Action::Unbind { vf, .. }
        | Action::SetDriverOverride { vf, .. }
        | Action::Bind { vf, .. }
        | Action::ClearDriverOverride { vf }
        | Action::DriversProbe { vf }
        | Action::WaitNetdev { vf }
        | Action::SetVfMtu { vf, .. } => Some(*vf),
        _ => None,
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
