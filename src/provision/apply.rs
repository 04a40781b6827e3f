//! Executes plans through sysfs: finishes an interrupted apply from the
//! journal, then scans, plans and runs steps in rounds until the plan is
//! empty (a count change or a probe reveals VFs and netdevs the first
//! scan could not see). Every action is timed: time inside the kernel
//! (sysfs writes, waits, modprobe, netlink) vs fastpath's own time (scan,
//! plan, journal, bookkeeping).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::facts::{self, FactsError};
use super::journal::{Journal, JournalError, Record};
use super::plan::{ANY_DRIVER, Action, Held, PlanErrors, Step, VFIO_PCI, plan};
use super::policy::{MacAddr, Policy};
use super::{ReconcileOptions, vf_mac};
use crate::inventory;
use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::sysfs::{Sysfs, SysfsError};

/// Most scan-plan-apply rounds before giving up: count changes, then
/// rebinding, then netdev settings need at most three.
const MAX_ROUNDS: usize = 4;
/// Poll interval of the kernel waits.
const POLL: Duration = Duration::from_millis(1);

/// One action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A sysfs read or write failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// A netlink VF MAC operation failed.
    #[error(transparent)]
    VfMac(#[from] vf_mac::VfMacError),
    /// modprobe failed or could not run.
    #[error("modprobe {module}: {reason}")]
    Modprobe {
        /// The module.
        module: String,
        /// Exit status or spawn error.
        reason: String,
    },
    /// The kernel did not finish in time.
    #[error("{what} after {timeout:?}")]
    Late {
        /// Which VF is late and for what.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// A MAC string in a plan or journal is not a MAC.
    #[error("{0}")]
    BadMac(String),
}

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
        report.journal += t.elapsed();
        for index in 0..rec.steps.len() {
            if index > 0 {
                let t = Instant::now();
                rec.reached = index;
                journal.advance(&rec)?;
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

/// Performs actions against a rooted sysfs. Each action is safe to repeat
/// (recovery re-runs a whole step): it first checks whether it is done.
struct Executor<'a> {
    sysfs: &'a Sysfs,
    timeout: Duration,
}

impl Executor<'_> {
    fn timed(
        &self,
        step: &str,
        action: &Action,
        report: &mut ApplyReport,
    ) -> Result<(), ActionError> {
        let start = Instant::now();
        let mut kernel = Duration::ZERO;
        let r = self.run(action, &mut kernel);
        report.kernel += kernel;
        report.actions.push(ActionTiming {
            step: step.to_string(),
            action: action.clone(),
            kernel,
            total: start.elapsed(),
        });
        r
    }

    /// Runs `f` as kernel time.
    fn k<T>(kernel: &mut Duration, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        *kernel += t.elapsed();
        out
    }

    fn run(&self, action: &Action, kernel: &mut Duration) -> Result<(), ActionError> {
        let s = self.sysfs;
        match action {
            Action::LoadModule { module, params } => {
                if module == "vfio_pci" && s.pci_driver(VFIO_PCI)?.exists() {
                    return Ok(());
                }
                Self::k(kernel, || modprobe(module, params))
            }
            Action::SetPfMtu { ifname, mtu, .. } | Action::SetVfMtu { ifname, mtu, .. } => {
                let nd = s.class_net(ifname)?;
                Ok(Self::k(kernel, || nd.set_mtu(*mtu))?)
            }
            Action::SetNumVfs { pf, count } => {
                let dev = s.pci_device(*pf);
                if dev.sriov_numvfs()? == *count {
                    return Ok(());
                }
                Ok(Self::k(kernel, || dev.set_sriov_numvfs(*count))?)
            }
            Action::WaitVfs { pf, count } => Self::k(kernel, || self.wait_vfs(*pf, *count)),
            Action::PinVfMac {
                pf_ifname,
                index,
                mac,
                ..
            } => {
                let mac: MacAddr = mac.parse().map_err(ActionError::BadMac)?;
                Ok(Self::k(kernel, || {
                    vf_mac::set_admin_mac(pf_ifname, *index, mac.0)
                })?)
            }
            Action::Unbind { vf, driver } => {
                let dev = s.pci_device(*vf);
                // Done already, or (recovery) the VF has moved on to
                // another driver since the step was planned.
                match dev.driver()? {
                    None => return Ok(()),
                    Some(d) if driver != ANY_DRIVER && d != *driver => return Ok(()),
                    Some(_) => {}
                }
                Ok(Self::k(kernel, || dev.unbind())?)
            }
            Action::SetDriverOverride { vf, driver } => {
                let dev = s.pci_device(*vf);
                Ok(Self::k(kernel, || dev.set_driver_override(Some(driver)))?)
            }
            Action::ClearDriverOverride { vf } => {
                let dev = s.pci_device(*vf);
                Ok(Self::k(kernel, || dev.set_driver_override(None))?)
            }
            Action::Bind { vf, driver } => {
                let dev = s.pci_device(*vf);
                if dev.driver()?.as_deref() == Some(driver.as_str()) {
                    return Ok(());
                }
                let drv = s.pci_driver(driver)?;
                Ok(Self::k(kernel, || drv.bind(*vf))?)
            }
            Action::DriversProbe { vf } => {
                if s.pci_device(*vf).driver()?.is_some() {
                    return Ok(());
                }
                Ok(Self::k(kernel, || s.drivers_probe(*vf))?)
            }
            Action::WaitNetdev { vf } => Self::k(kernel, || self.wait_netdev(*vf)),
        }
    }

    fn wait_until(&self, mut pending: impl FnMut() -> Option<String>) -> Result<(), ActionError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match pending() {
                None => return Ok(()),
                Some(what) if Instant::now() >= deadline => {
                    return Err(ActionError::Late {
                        what,
                        timeout: self.timeout,
                    });
                }
                Some(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// Waits for every `virtfnN` link and, when the kernel autoprobes new
    /// VFs, for each VF's driver and (kernel drivers) netdev.
    fn wait_vfs(&self, pf: PciAddress, count: u32) -> Result<(), ActionError> {
        let dev = self.sysfs.pci_device(pf);
        let autoprobe = dev.sriov_drivers_autoprobe()?;
        self.wait_until(|| {
            let links = dev.virtfns().unwrap_or_default();
            for i in 0..count {
                let Some((_, addr)) = links.iter().find(|(n, _)| *n == i) else {
                    return Some(format!("virtfn{i} of {pf} missing"));
                };
                if autoprobe && let Some(late) = self.vf_not_ready(*addr) {
                    return Some(format!("VF {i} ({addr}) of {pf}: {late}"));
                }
            }
            None
        })
    }

    fn wait_netdev(&self, vf: PciAddress) -> Result<(), ActionError> {
        self.wait_until(|| self.vf_not_ready(vf).map(|late| format!("VF {vf}: {late}")))
    }

    /// Why a VF is not ready yet: no driver, or a kernel driver without
    /// its netdev.
    fn vf_not_ready(&self, vf: PciAddress) -> Option<String> {
        let dev = self.sysfs.pci_device(vf);
        match dev.driver() {
            Ok(Some(d)) if d == VFIO_PCI || d == "uio_pci_generic" || d == "igb_uio" => None,
            Ok(Some(d)) => match dev.netdevs() {
                Ok(n) if !n.is_empty() => None,
                _ => Some(format!("bound to {d} but no netdev yet")),
            },
            Ok(None) => Some("no driver bound".into()),
            Err(e) => Some(e.to_string()),
        }
    }
}

fn modprobe(module: &str, params: &[String]) -> Result<(), ActionError> {
    let err = |reason: String| ActionError::Modprobe {
        module: module.to_string(),
        reason,
    };
    let status = std::process::Command::new("modprobe")
        .arg(module)
        .args(params)
        .status()
        .map_err(|e| err(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(err(status.to_string()))
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
