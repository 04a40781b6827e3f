//! `fastpath agent`: the node agent (device plugin for every pool). SIGHUP
//! reloads the config; SIGTERM/SIGINT stop serving, remove the sockets and
//! exit 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::agent::{self, AgentHandle, AgentOptions};

/// Arguments of `fastpath agent` (the deploy manifests use these names).
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The reference device-plugin config file.
    #[arg(
        long,
        env = "FASTPATH_CONFIG",
        default_value = "/etc/pcidp/config.json"
    )]
    pub config: PathBuf,
    /// Prefix for entries without `resourcePrefix`.
    #[arg(long, default_value = "intel.com")]
    pub resource_prefix: String,
    /// kubelet's device-plugin directory (kubelet.sock, plugin sockets).
    #[arg(long, default_value = "/var/lib/kubelet/device-plugins")]
    pub device_plugin_dir: PathBuf,
    /// kubelet's plugin-watcher directory; watcher mode when it exists.
    #[arg(long, default_value = "/var/lib/kubelet/plugins_registry")]
    pub plugins_registry_dir: PathBuf,
    /// Where Device Info Spec files are written on Allocate.
    #[arg(long, default_value = "/var/run/k8s.cni.cncf.io/devinfo/dp")]
    pub devinfo_dir: PathBuf,
    /// Return CDI device names (and write CDI specs) instead of device specs.
    #[arg(long)]
    pub cdi: bool,
    /// Where CDI specs are written.
    #[arg(long, default_value = "/var/run/cdi")]
    pub cdi_dir: PathBuf,
    /// fastpath state directory.
    #[arg(long, env = "FASTPATH_STATE_DIR", default_value = "/var/lib/fastpath")]
    pub state_dir: PathBuf,
    /// How often sysfs and the config file are re-read (e.g. 500ms, 2s).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub rescan_interval: Duration,
    /// Where procfs is mounted (default routes).
    #[arg(long, env = "FASTPATH_PROC_ROOT", default_value = crate::procfs::DEFAULT_ROOT)]
    pub proc_root: PathBuf,
}

/// Parses `500ms`, `2s`, `1m` (or bare milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "ms"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms or 2s"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("rescan interval must be positive".into());
    }
    Ok(d)
}

/// Runs the agent on a multi-threaded tokio runtime until SIGTERM/SIGINT.
pub fn run(sysfs_root: &Path, args: AgentArgs) -> anyhow::Result<ExitCode> {
    let opts = AgentOptions {
        config: args.config,
        resource_prefix: args.resource_prefix,
        device_plugin_dir: args.device_plugin_dir,
        plugins_registry_dir: args.plugins_registry_dir,
        devinfo_dir: args.devinfo_dir,
        cdi: args.cdi,
        cdi_dir: args.cdi_dir,
        state_dir: args.state_dir,
        rescan_interval: args.rescan_interval,
        sysfs_root: sysfs_root.to_path_buf(),
        proc_root: args.proc_root,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let handle = AgentHandle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                h.reload();
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        agent::run(opts, handle, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
