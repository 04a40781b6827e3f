//! What the running agent knows about itself, shared between its loop (the
//! writer) and the HTTP faces (`/healthz`, `/readyz`, `/metrics`, the
//! status socket). Plain data behind one mutex: every update is a few
//! counter bumps, far off any hot path.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::reconcile::StartupReport;
use crate::grpc_authority::{self, RefusedAuthorityView};
use crate::pci::PciAddress;
use crate::pools::Pools;
use crate::provision::{ApplyReport, Held};

/// Upper bounds (seconds) of the latency histograms: 1 ms to 30 s covers a
/// CNI ADD (ms) and a numVfs change on i40e (tens of seconds).
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus histogram over [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    pub counts: [u64; BUCKETS.len() + 1],
    /// Sum of observed seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }
}

/// One device of a pool as status and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDeviceView {
    /// Its PCI address (the kubelet device ID).
    pub pci: PciAddress,
    /// Whether kubelet may hand it out.
    pub healthy: bool,
}

/// One pool as status and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    /// `<prefix>/<name>`.
    pub resource: String,
    /// Registered with kubelet (Register accepted, or the plugin watcher
    /// reported success).
    pub registered: bool,
    /// Its devices.
    pub devices: Vec<PoolDeviceView>,
}

/// The outcome of the last policy reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileView {
    /// Unix seconds when it finished.
    pub finished_at: u64,
    /// The error, when it failed (the node was left as the error says).
    pub error: Option<String>,
    /// Steps it executed.
    pub steps: Vec<String>,
    /// Changes withheld because pods hold VFs.
    pub held: Vec<Held>,
}

/// A claim the DRA plugin holds prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraClaimView {
    /// `namespace/name`.
    pub claim: String,
    /// Its UID.
    pub uid: String,
    /// Its VFs.
    pub devices: Vec<PciAddress>,
}

/// The DRA kubelet plugin, when `--dra-driver` runs one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DraView {
    /// The driver name.
    pub driver: String,
    /// kubelet's last registration verdict.
    pub registered: bool,
    /// kubelet's error text when it refused.
    pub registration_error: Option<String>,
    /// DRA devices this node publishes.
    pub devices: usize,
    /// Claims prepared now (from their records).
    pub prepared: Vec<DraClaimView>,
    /// The last failed prepare or unprepare, `claim: error`.
    pub last_error: Option<String>,
    /// The ResourceSlice pool generation last published.
    #[serde(default)]
    pub slice_generation: Option<i64>,
    /// Slice writes since start (0 while nothing changed).
    #[serde(default)]
    pub slice_writes: u64,
    /// The last failure to publish slices, until a publish succeeds.
    #[serde(default)]
    pub slice_error: Option<String>,
}

/// Counters and views of the running agent.
#[derive(Debug, Default)]
pub struct Telemetry {
    state: Mutex<State>,
}

/// A consistent copy of everything, taken under the lock.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// When the agent loop last went round.
    pub last_tick: Option<Instant>,
    /// Set once the first scan has been served.
    pub started: bool,
    /// Pools as last served.
    pub pools: Vec<PoolView>,
    /// kubelet registrations by (resource, "ok" | "error").
    pub registrations: BTreeMap<(String, &'static str), u64>,
    /// Pool config reloads by result ("ok" | "error").
    pub config_reloads: BTreeMap<&'static str, u64>,
    /// Policy reloads by result ("ok" | "error").
    pub policy_reloads: BTreeMap<&'static str, u64>,
    /// Rescan durations.
    pub rescans: Histogram,
    /// Policy reconciles by result ("ok" | "error").
    pub reconciles: BTreeMap<&'static str, u64>,
    /// Reconcile wall time.
    pub reconcile_duration: Histogram,
    /// Provisioning actions by kind, with their durations.
    pub provision_actions: BTreeMap<String, Histogram>,
    /// The last reconcile.
    pub last_reconcile: Option<ReconcileView>,
    /// CNI invocations by (command, result) with their latency.
    pub cni: BTreeMap<(String, String), Histogram>,
    /// CNI metric files that could not be parsed.
    pub cni_malformed: u64,
    /// The start-up reconcile of CNI records (and the provisioning
    /// journal), once it ran.
    pub startup: Option<StartupReport>,
    /// gRPC calls refused for their `:authority` (an old kubelet).
    pub refused_authorities: RefusedAuthorityView,
    /// The DRA plugin, when one runs.
    pub dra: Option<DraView>,
    /// DRA calls by (operation, result) with their latency, one per claim.
    pub dra_calls: BTreeMap<(String, &'static str), Histogram>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn result(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

impl Telemetry {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding the lock leaves plain counters behind,
        // still worth serving.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// A copy of everything. The refused authorities come from the log
    /// layer that counts them, which is process-wide like the subscriber.
    pub fn snapshot(&self) -> State {
        let mut s = self.with(|s| s.clone());
        s.refused_authorities = grpc_authority::REFUSED.snapshot();
        s
    }

    /// The agent loop went round.
    pub fn tick(&self) {
        self.with(|s| s.last_tick = Some(Instant::now()));
    }

    /// A rescan served `pools` after `took`; `registered` says which
    /// resources kubelet has accepted.
    pub fn rescanned(&self, pools: &Pools, registered: &BTreeMap<String, bool>, took: Duration) {
        let views = pools
            .pools
            .iter()
            .map(|p| {
                let resource = p.resource();
                PoolView {
                    registered: registered.get(&resource).copied().unwrap_or(false),
                    resource,
                    devices: p
                        .devices
                        .iter()
                        .map(|d| PoolDeviceView {
                            pci: d.view.pci,
                            healthy: d.healthy(),
                        })
                        .collect(),
                }
            })
            .collect();
        self.with(|s| {
            s.pools = views;
            s.started = true;
            s.rescans.observe(took);
            s.last_tick = Some(Instant::now());
        });
    }

    /// Updates which pools are registered without a rescan.
    pub fn set_registered(&self, registered: &BTreeMap<String, bool>) {
        self.with(|s| {
            for p in &mut s.pools {
                p.registered = registered.get(&p.resource).copied().unwrap_or(false);
            }
        });
    }

    /// One Register call to kubelet ended.
    pub fn registration(&self, resource: &str, ok: bool) {
        self.with(|s| {
            *s.registrations
                .entry((resource.to_string(), result(ok)))
                .or_default() += 1;
        });
    }

    /// The pool config was re-read.
    pub fn config_reload(&self, ok: bool) {
        self.with(|s| *s.config_reloads.entry(result(ok)).or_default() += 1);
    }

    /// The node policy was re-read.
    pub fn policy_reload(&self, ok: bool) {
        self.with(|s| *s.policy_reloads.entry(result(ok)).or_default() += 1);
    }

    /// A policy reconcile ended.
    pub fn reconciled(&self, outcome: Result<&ApplyReport, String>, took: Duration) {
        self.with(|s| {
            *s.reconciles.entry(result(outcome.is_ok())).or_default() += 1;
            s.reconcile_duration.observe(took);
            let view = match outcome {
                Ok(r) => {
                    for a in &r.actions {
                        s.provision_actions
                            .entry(action_kind(&a.action))
                            .or_default()
                            .observe(a.total);
                    }
                    ReconcileView {
                        finished_at: unix_now(),
                        error: None,
                        steps: r.steps.clone(),
                        held: r.held.clone(),
                    }
                }
                Err(e) => ReconcileView {
                    finished_at: unix_now(),
                    error: Some(e),
                    steps: Vec::new(),
                    // What the last good reconcile held is still held.
                    held: s
                        .last_reconcile
                        .as_ref()
                        .map(|v| v.held.clone())
                        .unwrap_or_default(),
                },
            };
            s.last_reconcile = Some(view);
        });
    }

    /// One CNI invocation reported through the metrics files.
    pub fn cni(&self, command: &str, ok: bool, took: Duration) {
        self.with(|s| {
            s.cni
                .entry((command.to_string(), result(ok).to_string()))
                .or_default()
                .observe(took);
        });
    }

    /// The start-up reconcile finished.
    pub fn startup_reconciled(&self, report: StartupReport) {
        self.with(|s| s.startup = Some(report));
    }

    /// A CNI metrics file could not be parsed.
    pub fn cni_malformed(&self) {
        self.with(|s| s.cni_malformed += 1);
    }

    /// Updates the DRA view (created on first use for `driver`).
    pub fn dra(&self, driver: &str, f: impl FnOnce(&mut DraView)) {
        self.with(|s| {
            let v = s.dra.get_or_insert_with(|| DraView {
                driver: driver.to_string(),
                ..DraView::default()
            });
            f(v);
        });
    }

    /// One claim's prepare or unprepare finished; `error` when it failed.
    pub fn dra_call(&self, op: &str, claim: &str, error: Option<&str>, took: Duration) {
        self.with(|s| {
            s.dra_calls
                .entry((op.to_string(), result(error.is_none())))
                .or_default()
                .observe(took);
            if let (Some(v), Some(e)) = (s.dra.as_mut(), error) {
                v.last_error = Some(format!("{claim}: {e}"));
            }
        });
    }
}

/// The action's kind, as in its JSON tag (`setNumVfs`, `bind`, ...).
pub fn action_kind(a: &crate::provision::Action) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.get("action").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
