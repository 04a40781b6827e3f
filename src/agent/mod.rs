//! The node agent: serves every pool as a kubelet device plugin and keeps
//! them current. Every rescan re-reads sysfs and the config file and runs
//! the pure [`crate::pools::assign`]; the [`manager`] turns the result into
//! servers and ListAndWatch updates.

pub mod allocate;
pub mod cni_metrics;
pub mod dra;
pub mod files;
pub mod http;
pub mod kubelet_watch;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod preferred;
pub mod reconcile;
pub mod reconcile_run;
pub mod server;
pub mod status;
pub mod telemetry;
#[cfg(test)]
mod test_pool;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use self::allocate::AllocateOptions;
use self::kubelet_watch::SocketEvent;
use self::manager::{Manager, Mode};
use self::server::FileDirs;
use self::telemetry::Telemetry;
use crate::inventory;
use crate::pools::modes::{ModeOverlap, ModePools};
use crate::pools::{self, Config, ConfigError, FactNeeds, HostFacts, Pools};
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

/// Everything the agent needs, resolved from flags.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The reference config file.
    pub config: PathBuf,
    /// Prefix for entries without one.
    pub resource_prefix: String,
    /// kubelet's device-plugin directory.
    pub device_plugin_dir: PathBuf,
    /// kubelet's plugins_registry directory (watcher mode when it exists).
    pub plugins_registry_dir: PathBuf,
    /// Device Info Spec directory.
    pub devinfo_dir: PathBuf,
    /// Write CDI specs and return CDI device names.
    pub cdi: bool,
    /// CDI spec directory.
    pub cdi_dir: PathBuf,
    /// fastpath state directory.
    pub state_dir: PathBuf,
    /// How often sysfs and the config are re-read.
    pub rescan_interval: Duration,
    /// sysfs root.
    pub sysfs_root: PathBuf,
    /// procfs root.
    pub proc_root: PathBuf,
    /// The DRA kubelet plugin beside the device plugin (`--dra-driver`).
    pub dra: Option<dra::DraAgentOptions>,
}

/// The agent failed to start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Reading the config file.
    #[error("reading {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The config is invalid.
    #[error("{path}: {source}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ConfigError,
    },
    /// The first sysfs scan.
    #[error("scanning sysfs: {0}")]
    Scan(#[from] crate::sysfs::SysfsError),
    /// The state directory.
    #[error("creating state dir {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Watching kubelet's directory.
    #[error(transparent)]
    Watch(#[from] kubelet_watch::WatchError),
    /// A device both a device-plugin pool and a DRA pool select.
    #[error("{path}: {source}")]
    ModeOverlap {
        /// The config file.
        path: PathBuf,
        /// The device and both pools.
        source: ModeOverlap,
    },
    /// Starting the DRA plugin (API client, sockets).
    #[error("DRA plugin: {0}")]
    Dra(String),
}

/// Lets in-process callers (the provisioning apply, SIGHUP) poke a
/// running agent.
#[derive(Debug, Clone, Default)]
pub struct AgentHandle {
    rescan: Arc<Notify>,
    reload: Arc<Notify>,
    policy_reload: Arc<Notify>,
    telemetry: Arc<Telemetry>,
}

impl AgentHandle {
    /// A handle not yet attached to an agent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rescan sysfs now (e.g. right after VFs were created or rebound).
    pub fn rescan(&self) {
        self.rescan.notify_one();
    }

    /// Re-read the config file (and the node policy, when one is
    /// configured) now (SIGHUP).
    pub fn reload(&self) {
        self.reload.notify_one();
        self.policy_reload.notify_one();
    }

    /// Counters and views for health, metrics and status.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }
}

fn load_config(opts: &AgentOptions) -> Result<(String, Config), AgentError> {
    let text = std::fs::read_to_string(&opts.config).map_err(|source| AgentError::ReadConfig {
        path: opts.config.clone(),
        source,
    })?;
    let cfg = pools::config::parse(&text, &opts.resource_prefix).map_err(|source| {
        AgentError::InvalidConfig {
            path: opts.config.clone(),
            source,
        }
    })?;
    for n in &cfg.notes {
        tracing::warn!("{n}");
    }
    Ok((text, cfg))
}

/// Which scan [`compute_pools`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The first, before any pool is served: as fast as the CPUs allow
    /// ([`inventory::scan`], two threads on two CPUs).
    First,
    /// A periodic rescan while serving: one thread, so the other CPU stays
    /// free for kubelet's Allocate calls (with both threads busy every
    /// 500 ms, Allocate's p99 rose from ~0.6 ms to ~6 ms on 2 cores).
    Rescan,
}

/// Scans sysfs and assigns pools: the whole decision of one rescan.
pub fn compute_pools(
    sysfs: &Sysfs,
    procfs: &Procfs,
    cfg: &Config,
    scan: Scan,
) -> Result<Pools, AgentError> {
    Ok(compute_modes(sysfs, procfs, cfg, scan, Path::new("(config)"))?.device_plugin)
}

/// [`compute_pools`] with the DRA pools beside the device-plugin pools;
/// a device in both is an error naming `config`.
pub fn compute_modes(
    sysfs: &Sysfs,
    procfs: &Procfs,
    cfg: &Config,
    scan: Scan,
    config: &Path,
) -> Result<ModePools, AgentError> {
    let t0 = Instant::now();
    let inv = match scan {
        Scan::First => inventory::scan(sysfs)?,
        Scan::Rescan => inventory::scan_with_threads(sysfs, 1)?,
    };
    let t1 = Instant::now();
    let host = HostFacts::gather(sysfs, procfs, &inv, FactNeeds::of(cfg));
    let t2 = Instant::now();
    // The agent serves pools; `fastpath pools` is where reasons are read.
    let modes =
        pools::modes::assign_modes(&inv, cfg, &host, pools::Reasons::Skip).map_err(|source| {
            AgentError::ModeOverlap {
                path: config.to_path_buf(),
                source,
            }
        })?;
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
    tracing::debug!(
        scan_ms = ms(t0, t1),
        facts_ms = ms(t1, t2),
        assign_ms = ms(t2, Instant::now()),
        "pools computed"
    );
    Ok(modes)
}

/// Runs the agent until `shutdown` completes, then stops serving and
/// removes its sockets. An invalid config at start is an error.
pub async fn run(
    opts: AgentOptions,
    handle: AgentHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let (mut config_text, mut cfg) = load_config(&opts)?;
    std::fs::create_dir_all(&opts.state_dir).map_err(|source| AgentError::StateDir {
        path: opts.state_dir.clone(),
        source,
    })?;
    cni_metrics::tighten_dirs(&opts.state_dir);
    let sysfs = Sysfs::new(&opts.sysfs_root);
    let procfs = Procfs::new(&opts.proc_root);
    let mode = if opts.plugins_registry_dir.is_dir() {
        Mode::PluginWatcher(opts.plugins_registry_dir.clone())
    } else {
        Mode::DevicePluginDir(opts.device_plugin_dir.clone())
    };
    tracing::info!(?mode, config = %opts.config.display(), "starting device plugin agent");
    let alloc = AllocateOptions {
        cdi: opts.cdi,
        vfio_noiommu: sysfs.vfio_noiommu(),
    };
    let dirs = FileDirs {
        devinfo: opts.devinfo_dir.clone(),
        cdi: opts.cdi.then(|| opts.cdi_dir.clone()),
    };
    let mut kubelet_events = match &mode {
        Mode::DevicePluginDir(d) => {
            std::fs::create_dir_all(d).map_err(|source| AgentError::StateDir {
                path: d.clone(),
                source,
            })?;
            Some(kubelet_watch::watch_dir(d)?)
        }
        Mode::PluginWatcher(_) => None,
    };
    let mut mgr = Manager::new(mode, alloc, dirs);
    mgr.set_telemetry(handle.telemetry.clone());
    let started = Instant::now();
    let modes = compute_modes(&sysfs, &procfs, &cfg, Scan::First, &opts.config)?;
    let first = modes.device_plugin;
    tracing::info!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "first scan and pool assignment done"
    );
    mgr.apply(&first).await;
    tracing::info!("every pool served");
    // After the device-plugin pools: kubelet waits on those, while the DRA
    // side first asks the API server about leftover claim records.
    let mut dra = match &opts.dra {
        None => None,
        Some(d) => {
            let t = handle.telemetry.clone();
            match dra::DraRuntime::start(d, &opts, &sysfs, alloc, &modes.dra, t).await {
                Ok(r) => Some(r),
                Err(e) => {
                    mgr.shutdown().await;
                    return Err(e);
                }
            }
        }
    };
    handle
        .telemetry
        .rescanned(&first, &mgr.registered(), started.elapsed());
    // The first scan just ran; the next one is due one interval from now.
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.rescan_interval,
        opts.rescan_interval,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        handle.telemetry.tick();
        let mut force_reload = false;
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
            () = handle.rescan.notified() => {}
            () = handle.reload.notified() => force_reload = true,
            ev = async {
                match kubelet_events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match ev {
                    Some(SocketEvent::Created(name)) if name == device_plugin::KUBELET_SOCKET => {
                        tracing::info!("kubelet socket created: re-registering every pool");
                        mgr.kubelet_restarted().await;
                    }
                    Some(_) => {}
                    None => kubelet_events = None,
                }
                continue;
            }
        }
        let round = Instant::now();
        reload_if_changed(
            &opts,
            &mut config_text,
            &mut cfg,
            force_reload,
            &handle.telemetry,
        );
        // The scan is blocking file I/O: keep it off the workers serving gRPC.
        let (s, p, c, f) = (
            sysfs.clone(),
            procfs.clone(),
            cfg.clone(),
            opts.config.clone(),
        );
        match tokio::task::spawn_blocking(move || compute_modes(&s, &p, &c, Scan::Rescan, &f)).await
        {
            Ok(Ok(m)) => {
                if let Some(d) = dra.as_mut() {
                    d.update(&m.dra, &sysfs, &handle.telemetry);
                }
                let p = m.device_plugin;
                mgr.apply(&p).await;
                handle
                    .telemetry
                    .rescanned(&p, &mgr.registered(), round.elapsed());
            }
            Ok(Err(e)) => tracing::warn!("rescan failed, keeping current pools: {e}"),
            Err(e) => tracing::error!("rescan task failed: {e}"),
        }
        mgr.register_pending().await;
        handle.telemetry.set_registered(&mgr.registered());
        cni_metrics::drain(&opts.state_dir, &handle.telemetry);
    }
    tracing::info!("shutting down: stopping servers and removing sockets");
    if let Some(d) = dra {
        d.shutdown().await;
    }
    mgr.shutdown().await;
    Ok(())
}

/// Re-reads the config when its text changed (or on SIGHUP); an invalid
/// new config is logged with the same error as at start and the running
/// config stays.
fn reload_if_changed(
    opts: &AgentOptions,
    text: &mut String,
    cfg: &mut Config,
    force: bool,
    telemetry: &Telemetry,
) {
    let new_text = match std::fs::read_to_string(&opts.config) {
        Ok(t) => t,
        Err(e) => {
            if force {
                tracing::error!(config = %opts.config.display(), "reload failed, keeping current pools: {e}");
            }
            return;
        }
    };
    if !force && new_text == *text {
        return;
    }
    match pools::config::parse(&new_text, &opts.resource_prefix) {
        Ok(c) => {
            telemetry.config_reload(true);
            if c != *cfg {
                tracing::info!(config = %opts.config.display(), "config reloaded");
            }
            *cfg = c;
        }
        Err(e) => {
            telemetry.config_reload(false);
            tracing::error!(
                "{}: {e}; rejected, keeping the running pools",
                opts.config.display()
            );
        }
    }
    *text = new_text;
}
