//! `fastpath agent`: the node agent (device plugin for every pool). SIGHUP
//! reloads the config; SIGTERM/SIGINT stop serving, remove the sockets and
//! exit 0.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use crate::agent::dra::DraAgentOptions;
use crate::agent::node::{self, NodeOptions};
use crate::agent::policy::PolicyOptions;
use crate::agent::{AgentHandle, AgentOptions};
use crate::cluster::ClusterOptions;

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
    /// The node policy (YAML or JSON): applied on start, on change and on
    /// SIGHUP. An invalid policy at start stops the agent.
    #[arg(long, env = "FASTPATH_POLICY")]
    pub policy: Option<PathBuf>,
    /// The node's primary address (kubelet node IP); a PF holding it is
    /// not reconfigured without `force`.
    #[arg(long, env = "FASTPATH_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Where /healthz, /readyz and /metrics are served (`off` disables).
    #[arg(long, default_value = "[::]:9808", value_parser = parse_http_addr)]
    pub http_addr: HttpAddr,
    /// Also run the DRA kubelet plugin, as driver NAME (given alone:
    /// sriov.fastpath.dev), for the devices of the config's `draPools`.
    #[arg(
        long,
        value_name = "NAME",
        num_args = 0..=1,
        default_missing_value = crate::dra::DEFAULT_DRIVER,
        value_parser = parse_driver_name
    )]
    pub dra_driver: Option<String>,
    /// This node's name (the downward API's spec.nodeName); needed with
    /// --dra-driver.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// kubelet's plugins directory; the DRA socket is `<dir>/<driver>/dra.sock`.
    #[arg(long, default_value = "/var/lib/kubelet/plugins")]
    pub kubelet_plugins_dir: PathBuf,
    /// The API server's URL (default: the in-cluster service account,
    /// then $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "FASTPATH_KUBE_API_SERVER")]
    pub kube_api_server: Option<String>,
    /// A kubeconfig file to use instead.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Delete this node's ResourceSlices when the agent stops (by default
    /// they stay, and the Node's garbage collection removes them with it).
    #[arg(long)]
    pub dra_delete_slices_on_exit: bool,
}

/// True for a DNS subdomain of at most `max` characters.
fn dns_subdomain(s: &str, max: usize) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= max && s.split('.').all(label_ok)
}

/// A DRA driver name: a DNS subdomain of at most 63 characters, as the
/// API requires; it also names files and sockets, so nothing else passes.
fn parse_driver_name(s: &str) -> Result<String, String> {
    if dns_subdomain(s, 63) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a DRA driver name: a DNS subdomain of at most 63 characters (lower-case letters, digits, '-', '.')"
        ))
    }
}

/// The DRA options, when `--dra-driver` is given; the node name must be
/// known then.
fn dra_options(args: &AgentArgs) -> anyhow::Result<Option<DraAgentOptions>> {
    let Some(driver) = args.dra_driver.clone() else {
        return Ok(None);
    };
    let node = match args.node_name.as_deref() {
        Some(n) if dns_subdomain(n, 253) => n.to_string(),
        Some(n) => {
            anyhow::bail!("--node-name {n:?} is not a Kubernetes node name (a DNS subdomain)")
        }
        None => anyhow::bail!(
            "--dra-driver needs this node's name: --node-name or env NODE_NAME (the downward API's spec.nodeName)"
        ),
    };
    Ok(Some(DraAgentOptions {
        driver,
        node,
        plugins_dir: args.kubelet_plugins_dir.clone(),
        cluster: ClusterOptions {
            api_server: args.kube_api_server.clone(),
            kubeconfig: args.kubeconfig.clone(),
        },
        delete_slices_on_exit: args.dra_delete_slices_on_exit,
    }))
}

/// `--http-addr`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct HttpAddr(pub Option<SocketAddr>);

fn parse_http_addr(s: &str) -> Result<HttpAddr, String> {
    if s == "off" {
        return Ok(HttpAddr(None));
    }
    s.parse()
        .map(|a| HttpAddr(Some(a)))
        .map_err(|_| format!("{s:?} is not an address like [::]:9808 or 127.0.0.1:9808, or off"))
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
    let dra = dra_options(&args)?;
    let policy = args.policy.map(|p| {
        let mut o = PolicyOptions::new(
            p,
            args.state_dir.clone(),
            sysfs_root.to_path_buf(),
            args.proc_root.clone(),
        )
        .node_ip(args.node_ip);
        o.poll_interval = args.rescan_interval;
        o
    });
    let agent = AgentOptions {
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
        dra,
    };
    let opts = NodeOptions {
        agent,
        policy,
        http_addr: args.http_addr.0,
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
                tracing::info!("SIGHUP: reloading the config and the policy");
                h.reload();
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        node::run(opts, handle, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
