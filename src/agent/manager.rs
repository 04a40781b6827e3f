//! One gRPC server per pool on its own unix socket, started, updated and
//! stopped as pools come and go, and registered with kubelet in either
//! mode. Effects only; what to serve comes from [`crate::pools::assign`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use device_plugin::pluginregistration::registration_server::RegistrationServer as WatcherServer;
use device_plugin::v1beta1 as api;
use device_plugin::v1beta1::device_plugin_server::DevicePluginServer;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

use super::allocate::AllocateOptions;
use super::server::{FileDirs, PluginService, WatcherRegistration, WatcherStatus};
use super::telemetry::Telemetry;
use crate::pools::{Pool, Pools};

/// How pools are registered with kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `Register` on `<dir>/kubelet.sock`; plugin sockets in `dir`.
    DevicePluginDir(PathBuf),
    /// Sockets in kubelet's plugins_registry dir, found by its watcher.
    PluginWatcher(PathBuf),
}

/// Serving a pool failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the pool's socket.
    #[error("binding {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Registering with kubelet.
    #[error("registering {resource} on {path}: {reason}")]
    Register {
        /// The pool.
        resource: String,
        /// kubelet's socket.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Retries of `Register` while kubelet.sock exists but refuses (about 1 s).
const REGISTER_RETRIES: usize = 20;
const REGISTER_RETRY_DELAY: Duration = Duration::from_millis(50);

struct PoolServer {
    tx: watch::Sender<Arc<Pool>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    socket: PathBuf,
    registered: bool,
    watcher_status: Arc<Mutex<WatcherStatus>>,
}

/// Runs the per-pool servers.
pub struct Manager {
    mode: Mode,
    opts: AllocateOptions,
    dirs: FileDirs,
    servers: BTreeMap<String, PoolServer>,
    telemetry: Option<Arc<Telemetry>>,
}

/// The socket file name of a pool: `<prefix>_<name>.sock`.
pub fn socket_name(resource: &str) -> String {
    format!("{}.sock", resource.replace('/', "_"))
}

fn unchanged(a: &Pool, b: &Pool) -> bool {
    a == b
}

impl Manager {
    /// A manager with no pools yet.
    pub fn new(mode: Mode, opts: AllocateOptions, dirs: FileDirs) -> Self {
        Self {
            mode,
            opts,
            dirs,
            servers: BTreeMap::new(),
            telemetry: None,
        }
    }

    /// Counts registrations into `t`.
    pub fn set_telemetry(&mut self, t: Arc<Telemetry>) {
        self.telemetry = Some(t);
    }

    /// Every served pool and whether kubelet accepted it (Register in
    /// device-plugin-dir mode; the watcher's status in watcher mode).
    pub fn registered(&self) -> BTreeMap<String, bool> {
        self.servers
            .iter()
            .map(|(r, s)| {
                let ok = match self.mode {
                    Mode::DevicePluginDir(_) => s.registered,
                    Mode::PluginWatcher(_) => s.watcher_status.lock().is_ok_and(|g| g.registered),
                };
                (r.clone(), ok)
            })
            .collect()
    }

    fn socket_dir(&self) -> &Path {
        match &self.mode {
            Mode::DevicePluginDir(d) | Mode::PluginWatcher(d) => d,
        }
    }

    /// Names of the pools being served.
    pub fn resources(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// Makes the served pools equal `pools`: new pools start and register,
    /// changed pools push an update to their ListAndWatch streams, pools
    /// no longer configured stop and lose their socket.
    pub async fn apply(&mut self, pools: &Pools) {
        let wanted: BTreeMap<String, &Pool> =
            pools.pools.iter().map(|p| (p.resource(), p)).collect();
        let gone: Vec<String> = self
            .servers
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for r in gone {
            if let Some(s) = self.servers.remove(&r) {
                tracing::info!(pool = %r, "pool removed from config; stopping its server");
                stop(s).await;
            }
        }
        let mut started = Vec::new();
        for (r, p) in wanted {
            if let Some(s) = self.servers.get(&r) {
                s.tx.send_if_modified(|cur| {
                    if unchanged(cur, p) {
                        false
                    } else {
                        *cur = Arc::new(p.clone());
                        true
                    }
                });
                continue;
            }
            match self.start(p).await {
                Ok(s) => {
                    self.servers.insert(r.clone(), s);
                    started.push(r);
                }
                Err(e) => tracing::error!(pool = %r, "cannot serve: {e}"),
            }
        }
        self.register_all(started).await;
    }

    async fn start(&self, pool: &Pool) -> Result<PoolServer, ServeError> {
        let resource = pool.resource();
        let socket = self.socket_dir().join(socket_name(&resource));
        let _ = std::fs::remove_file(&socket);
        let bind_err = |source| ServeError::Bind {
            path: socket.clone(),
            source,
        };
        let listener = UnixListener::bind(&socket).map_err(bind_err)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_err)?;
        let (tx, rx) = watch::channel(Arc::new(pool.clone()));
        let svc = PluginService {
            pool: rx,
            opts: self.opts,
            dirs: self.dirs.clone(),
        };
        let watcher_status = Arc::new(Mutex::new(WatcherStatus::default()));
        let mut router =
            tonic::transport::Server::builder().add_service(DevicePluginServer::new(svc));
        if let Mode::PluginWatcher(_) = self.mode {
            router = router.add_service(WatcherServer::new(WatcherRegistration {
                resource: resource.clone(),
                endpoint: socket.display().to_string(),
                status: watcher_status.clone(),
                telemetry: self.telemetry.clone(),
            }));
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let incoming = UnixListenerStream::new(listener);
            let shutdown = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(pool = %resource, "gRPC server failed: {e}");
            }
        });
        tracing::info!(pool = %pool.resource(), socket = %socket.display(), devices = pool.devices.len(), "serving");
        Ok(PoolServer {
            tx,
            stop: Some(stop_tx),
            task,
            socket,
            registered: false,
            watcher_status,
        })
    }

    /// Registers pools with kubelet (device-plugin-dir mode only; in
    /// watcher mode kubelet finds the sockets itself). The requests go out
    /// together: at start-up the pools' first ListAndWatch waits on them.
    async fn register_all(&mut self, resources: Vec<String>) {
        let Mode::DevicePluginDir(dir) = &self.mode else {
            return;
        };
        let kubelet = dir.join(device_plugin::KUBELET_SOCKET);
        let jobs: Vec<(String, String)> = resources
            .into_iter()
            .filter_map(|r| {
                let endpoint = self
                    .servers
                    .get(&r)?
                    .socket
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some((r, endpoint))
            })
            .collect();
        let results = futures::future::join_all(
            jobs.iter()
                .map(|(r, endpoint)| register_retrying(&kubelet, r, endpoint)),
        )
        .await;
        for ((resource, _), result) in jobs.iter().zip(results) {
            if let Some(t) = &self.telemetry {
                t.registration(resource, result.is_ok());
            }
            let Some(s) = self.servers.get_mut(resource) else {
                continue;
            };
            match result {
                Ok(()) => {
                    s.registered = true;
                    tracing::info!(pool = %resource, "registered with kubelet");
                }
                Err(e) => {
                    s.registered = false;
                    tracing::warn!("{e}; will retry when kubelet's socket appears");
                }
            }
        }
    }

    /// Retries registration of pools that are not registered yet.
    pub async fn register_pending(&mut self) {
        let pending: Vec<String> = self
            .servers
            .iter()
            .filter(|(_, s)| !s.registered)
            .map(|(r, _)| r.clone())
            .collect();
        self.register_all(pending).await;
    }

    /// kubelet restarted: it removed the plugin sockets, so serve again on
    /// fresh sockets where they are gone, then register every pool.
    pub async fn kubelet_restarted(&mut self) {
        let resources = self.resources();
        for r in &resources {
            let Some(s) = self.servers.get(r) else {
                continue;
            };
            if !s.socket.exists() {
                let pool = s.tx.borrow().clone();
                if let Some(old) = self.servers.remove(r) {
                    stop(old).await;
                }
                match self.start(&pool).await {
                    Ok(new) => {
                        self.servers.insert(r.clone(), new);
                    }
                    Err(e) => tracing::error!(pool = %r, "cannot serve again: {e}"),
                }
            }
            if let Some(s) = self.servers.get_mut(r) {
                s.registered = false;
            }
        }
        self.register_pending().await;
    }

    /// The last plugin-watcher status kubelet sent for a pool.
    pub fn watcher_status(&self, resource: &str) -> Option<WatcherStatus> {
        self.servers
            .get(resource)
            .and_then(|s| s.watcher_status.lock().ok().map(|g| g.clone()))
    }

    /// Stops every server and removes its socket.
    pub async fn shutdown(&mut self) {
        let all = std::mem::take(&mut self.servers);
        for (_, s) in all {
            stop(s).await;
        }
    }
}

/// Ends ListAndWatch streams (by dropping the pool sender), stops the
/// server, waits briefly for it, and removes the socket.
async fn stop(mut s: PoolServer) {
    if let Some(tx) = s.stop.take() {
        let _ = tx.send(());
    }
    drop(s.tx);
    if tokio::time::timeout(Duration::from_secs(2), &mut s.task)
        .await
        .is_err()
    {
        s.task.abort();
    }
    let _ = std::fs::remove_file(&s.socket);
}

/// [`register`], retried briefly while kubelet.sock exists: it appears
/// at bind(), a moment before kubelet listens on it, and waiting for the
/// next rescan would cost a whole interval.
async fn register_retrying(
    kubelet: &Path,
    resource: &str,
    endpoint: &str,
) -> Result<(), ServeError> {
    let mut result = register(kubelet, resource, endpoint).await;
    for _ in 0..REGISTER_RETRIES {
        if result.is_ok() || !kubelet.exists() {
            break;
        }
        tokio::time::sleep(REGISTER_RETRY_DELAY).await;
        result = register(kubelet, resource, endpoint).await;
    }
    result
}

/// `Registration.Register` on kubelet's socket.
pub async fn register(kubelet: &Path, resource: &str, endpoint: &str) -> Result<(), ServeError> {
    let err = |reason: String| ServeError::Register {
        resource: resource.to_string(),
        path: kubelet.to_path_buf(),
        reason,
    };
    let channel =
        tokio::time::timeout(Duration::from_secs(2), device_plugin::connect_unix(kubelet))
            .await
            .map_err(|_| err("connect timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
    let mut client = api::registration_client::RegistrationClient::new(channel);
    let req = api::RegisterRequest {
        version: device_plugin::VERSION.into(),
        endpoint: endpoint.into(),
        resource_name: resource.into(),
        options: Some(api::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }),
    };
    tokio::time::timeout(Duration::from_secs(5), client.register(req))
        .await
        .map_err(|_| err("Register timed out".into()))?
        .map_err(|e| err(e.message().to_string()))?;
    Ok(())
}
