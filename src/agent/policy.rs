//! The node policy inside the agent: reconciled on start, then again
//! whenever the file's text changes (polled like the pool config), on
//! SIGHUP, and when the set of VFs held by pods changes (a held change
//! completes once its pod lets go). Every reconcile runs on a blocking
//! thread and is followed by an immediate rescan so the pools see new VFs
//! at once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::AgentHandle;
use super::telemetry::Telemetry;
use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::provision::{
    self, ApplyError, ApplyReport, HeldError, Policy, PolicyError, ReconcileOptions,
};
use crate::sysfs::Sysfs;

/// Where the policy is and how to apply it.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// The policy file (YAML or JSON).
    pub path: PathBuf,
    /// How often the file is re-read.
    pub poll_interval: Duration,
    /// Passed to [`provision::reconcile`].
    pub reconcile: ReconcileOptions,
    /// sysfs root.
    pub sysfs_root: PathBuf,
    /// procfs root.
    pub proc_root: PathBuf,
    /// Policies from the cluster instead of the file (`path` is then the
    /// fallback when the CRDs are absent, if not empty).
    pub cluster: Option<super::cluster_policy::ClusterSource>,
}

impl PolicyOptions {
    /// Defaults for the state dir, sysfs and procfs roots given.
    pub fn new(path: PathBuf, state_dir: PathBuf, sysfs_root: PathBuf, proc_root: PathBuf) -> Self {
        Self {
            path,
            poll_interval: Duration::from_millis(500),
            reconcile: ReconcileOptions::new(state_dir),
            sysfs_root,
            proc_root,
            cluster: None,
        }
    }

    /// Sets the node's primary address.
    pub fn node_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.reconcile.node_ip = ip;
        self
    }
}

/// The policy could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyRunError {
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The held-VF set could not be read.
    #[error(transparent)]
    Held(#[from] HeldError),
    /// Applying it failed (for [`ApplyError::Plan`]: it does not fit this
    /// node, and nothing was changed).
    #[error("applying {path}: {source}")]
    Apply {
        /// The policy file.
        path: PathBuf,
        /// What failed.
        source: ApplyError,
    },
    /// The blocking thread died.
    #[error("reconcile thread: {0}")]
    Join(String),
}

impl PolicyRunError {
    /// True when the policy itself is at fault (unreadable, invalid, or
    /// not applicable to this node), as opposed to the kernel failing a
    /// step.
    pub fn is_invalid_policy(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_)
                | Self::Apply {
                    source: ApplyError::Plan(_),
                    ..
                }
        )
    }
}

/// The policy as last applied, and the held set it was applied with.
#[derive(Debug, Clone)]
pub struct Applied {
    text: String,
    held: BTreeSet<PciAddress>,
}

/// Reconciles `policy` on a blocking thread, recording the outcome; the
/// loop keeps reporting itself alive while the kernel works.
pub(crate) async fn reconcile(
    opts: &PolicyOptions,
    policy: Policy,
    held: BTreeSet<PciAddress>,
    telemetry: &Telemetry,
) -> Result<ApplyReport, PolicyRunError> {
    let o = opts.clone();
    let started = Instant::now();
    let job = tokio::task::spawn_blocking(move || {
        let sysfs = Sysfs::new(&o.sysfs_root);
        let procfs = Procfs::new(&o.proc_root);
        provision::reconcile(&sysfs, &procfs, &policy, &held, &o.reconcile)
    });
    tokio::pin!(job);
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    let joined = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = beat.tick() => telemetry.tick(),
        }
    };
    let result = match joined {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(source)) => Err(PolicyRunError::Apply {
            path: opts.path.clone(),
            source,
        }),
        Err(e) => Err(PolicyRunError::Join(e.to_string())),
    };
    match &result {
        Ok(r) => {
            telemetry.reconciled(Ok(r), started.elapsed());
            for s in &r.steps {
                tracing::info!(policy = %opts.path.display(), "applied: {s}");
            }
            for h in &r.held {
                tracing::info!(vf = %h.vf, "held by a pod: {}", h.pending);
            }
        }
        Err(e) => telemetry.reconciled(Err(e.to_string()), started.elapsed()),
    }
    result
}

/// Loads and applies the policy once: the agent's start. Any error is
/// returned; the caller decides whether it is fatal.
pub async fn start(
    opts: &PolicyOptions,
    telemetry: &Telemetry,
) -> (Option<Applied>, Result<ApplyReport, PolicyRunError>) {
    let text = match std::fs::read_to_string(&opts.path) {
        Ok(t) => t,
        Err(error) => {
            let e = PolicyError::Read {
                path: opts.path.clone(),
                error,
            };
            return (None, Err(e.into()));
        }
    };
    let outcome = apply_text(opts, &text, telemetry).await;
    (outcome.0, outcome.1)
}

async fn apply_text(
    opts: &PolicyOptions,
    text: &str,
    telemetry: &Telemetry,
) -> (Option<Applied>, Result<ApplyReport, PolicyRunError>) {
    let policy = match Policy::parse(text, &opts.path) {
        Ok(p) => p,
        Err(e) => return (None, Err(e.into())),
    };
    let held = match provision::held_vfs(&opts.reconcile.state_dir) {
        Ok(h) => h,
        Err(e) => return (None, Err(e.into())),
    };
    let applied = Applied {
        text: text.to_string(),
        held: held.clone(),
    };
    let r = reconcile(opts, policy, held, telemetry).await;
    // A policy that does not fit the node is not "applied": a later
    // hardware change (a PF appearing) should be retried with it.
    let keep = match &r {
        Err(e) if e.is_invalid_policy() => None,
        _ => Some(applied),
    };
    (keep, r)
}

/// Watches the policy until the task is dropped: re-reads the file every
/// poll interval and on SIGHUP, and reconciles when its text or the held
/// set changed. A rejected policy leaves the node as it is.
pub async fn watch(opts: PolicyOptions, mut last: Option<Applied>, handle: AgentHandle) {
    let telemetry: Arc<Telemetry> = handle.telemetry().clone();
    let mut tick = tokio::time::interval(opts.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last text rejected, so an invalid file is reported once, not on
    // every poll.
    let mut rejected: Option<String> = None;
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            () = handle.policy_reload.notified() => true,
        };
        let text = match std::fs::read_to_string(&opts.path) {
            Ok(t) => t,
            Err(e) => {
                if forced {
                    telemetry.policy_reload(false);
                    tracing::error!(policy = %opts.path.display(), "reload failed, node left as it is: {e}");
                }
                continue;
            }
        };
        let held_now = provision::held_vfs(&opts.reconcile.state_dir).ok();
        let unchanged = last
            .as_ref()
            .is_some_and(|a| a.text == text && held_now.as_ref().is_none_or(|h| *h == a.held));
        if !forced && (unchanged || rejected.as_deref() == Some(text.as_str())) {
            continue;
        }
        let text_changed = last.as_ref().is_none_or(|a| a.text != text);
        let (applied, result) = apply_text(&opts, &text, &telemetry).await;
        match &result {
            Err(e) if e.is_invalid_policy() => {
                telemetry.policy_reload(false);
                tracing::error!("{e}; rejected, node left as it is");
                rejected = Some(text);
                continue;
            }
            Err(e) => tracing::error!("{e}"),
            Ok(_) => {}
        }
        if text_changed || forced {
            telemetry.policy_reload(true);
            tracing::info!(policy = %opts.path.display(), "policy reloaded");
        }
        rejected = None;
        last = applied;
        handle.rescan();
    }
}
