//! The whole node agent: the device-plugin agent ([`super::run`]) plus
//! what surrounds it: the node policy ([`super::policy`]), the health
//! and metrics HTTP server ([`super::http`]) and the status socket.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use super::cluster_policy;
use super::policy::{self, PolicyOptions, PolicyRunError};
use super::reconcile_run::{self, StartupOptions};
use super::{AgentError, AgentHandle, AgentOptions, http, status};

/// The agent and its optional parts.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The device-plugin agent.
    pub agent: AgentOptions,
    /// The node policy, when `--policy` is given.
    pub policy: Option<PolicyOptions>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; none: off.
    pub http_addr: Option<SocketAddr>,
}

/// The node agent could not start or failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The device-plugin agent.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The node policy at start.
    #[error(transparent)]
    Policy(#[from] PolicyRunError),
    /// Binding the HTTP address.
    #[error("listening on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Creating the status socket.
    #[error("status socket {path}: {source}")]
    StatusSocket {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Aborts the background tasks however `run` ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn bind_status(state_dir: &std::path::Path) -> Result<tokio::net::UnixListener, NodeError> {
    let path = status::socket_path(state_dir);
    let err = |source| NodeError::StatusSocket {
        path: path.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(err)?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let l = tokio::net::UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

/// Restores attachments whose pod netns is gone and, without a policy,
/// finishes an interrupted provisioning apply. Runs after the health and
/// status faces are up and before anything else: stale records would
/// hold VFs back from the policy's first apply, and kubelet should be
/// offered VFs that are home under their own names.
async fn startup_reconcile(opts: &NodeOptions, telemetry: &super::telemetry::Telemetry) {
    let o = StartupOptions {
        state_dir: opts.agent.state_dir.clone(),
        sysfs_root: opts.agent.sysfs_root.clone(),
        recover_provisioning: opts.policy.is_none(),
    };
    match tokio::task::spawn_blocking(move || reconcile_run::run(&o)).await {
        Ok(report) => telemetry.startup_reconciled(report),
        Err(e) => tracing::error!("reconcile: task failed: {e}"),
    }
    telemetry.tick();
}

/// Starts the cluster policy loop, with no pools until its first apply;
/// when the cluster cannot serve policies (CRDs absent, RBAC missing),
/// says why and returns the file policy to run instead, if one is given.
async fn start_cluster(
    p: &PolicyOptions,
    src: &cluster_policy::ClusterSource,
    handle: &AgentHandle,
    tasks: &mut Tasks,
) -> Option<PolicyOptions> {
    match cluster_policy::connect(src).await {
        Ok(client) => {
            tracing::info!(namespace = %src.namespace, node = %src.node_name, "policies from SriovNetworkNodePolicy objects");
            handle.set_pools(crate::pools::Config {
                resource_list: Vec::new(),
                dra_pools: Vec::new(),
                notes: Vec::new(),
            });
            let mut po = p.clone();
            po.path = PathBuf::from(format!(
                "SriovNetworkNodePolicy objects in namespace {}",
                src.namespace
            ));
            tasks.0.push(tokio::spawn(cluster_policy::run(
                po,
                src.clone(),
                client,
                handle.clone(),
            )));
            None
        }
        Err(why) => {
            tracing::error!("--policy-source cluster: {why}; running from files only");
            (!p.path.as_os_str().is_empty()).then(|| p.clone())
        }
    }
}

/// Runs the node agent until `shutdown`. Serves health first (so probes
/// answer during a long first reconcile), reconciles CNI records with the
/// node, applies the policy (an invalid
/// one stops the agent with its error; a kernel failure is logged and the
/// agent serves what the node has), then runs the device-plugin agent.
pub async fn run(
    opts: NodeOptions,
    handle: AgentHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let telemetry = handle.telemetry().clone();
    telemetry.tick();
    let mut tasks = Tasks(Vec::new());
    let stall = http::stall_limit(opts.agent.rescan_interval);
    if let Some(addr) = opts.http_addr {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::HttpBind { addr, source })?;
        let bound = l.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "serving /healthz, /readyz, /metrics");
        tasks
            .0
            .push(tokio::spawn(http::serve_tcp(l, telemetry.clone(), stall)));
    }
    let status_listener = bind_status(&opts.agent.state_dir)?;
    let status_path = status::socket_path(&opts.agent.state_dir);
    tasks.0.push(tokio::spawn(http::serve_unix(
        status_listener,
        telemetry.clone(),
    )));
    startup_reconcile(&opts, &telemetry).await;
    let file_policy = match opts.policy.as_ref().map(|p| (p, &p.cluster)) {
        Some((p, Some(src))) => start_cluster(p, src, &handle, &mut tasks).await,
        _ => opts.policy.clone(),
    };
    if let Some(p) = &file_policy {
        let (applied, result) = policy::start(p, &telemetry).await;
        match result {
            Err(e) if e.is_invalid_policy() => {
                let _ = std::fs::remove_file(&status_path);
                return Err(e.into());
            }
            Err(e) => tracing::error!("{e}; serving the node as it is"),
            Ok(_) => {}
        }
        tasks.0.push(tokio::spawn(policy::watch(
            p.clone(),
            applied,
            handle.clone(),
        )));
    }
    let r = super::run(opts.agent, handle, shutdown).await;
    drop(tasks);
    let _ = std::fs::remove_file(&status_path);
    Ok(r?)
}
