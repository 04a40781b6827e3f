//! The DRA plugin's two unix sockets: the registration socket kubelet's
//! plugin watcher finds (`<plugins_registry>/<driver>-reg.sock`) and the
//! DRA service socket it names (`<plugins>/<driver>/dra.sock`), both 0600.
//!
//! A kubelet restart leaves both in place: unlike the device-plugin
//! directory, kubelet does not wipe `plugins_registry` or `plugins/`; its
//! plugin watcher walks the registry at start and registers every socket
//! it finds again (GetInfo, then NotifyRegistrationStatus). What can take
//! a socket away is its file being removed (a cleanup, the directory
//! recreated); kubelet then deregisters the driver. So a guard checks
//! every 200 ms that both files are still there and serves again on a
//! fresh socket when one is gone: kubelet's watcher sees the new file and
//! registers the plugin within a second. A poll, not inotify: a missing
//! file stays missing until we act, so polling cannot miss it, and it
//! survives the directory itself being removed, which an inotify watch
//! does not.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use device_plugin::dra_v1::dra_plugin_server::DraPluginServer as V1Server;
use device_plugin::dra_v1beta1::dra_plugin_server::DraPluginServer as V1beta1Server;
use device_plugin::pluginregistration::registration_server::RegistrationServer;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

use super::plugin::{DraPlugin, DraRegistration, V1, V1beta1};

/// How often the guard looks for its sockets.
const GUARD_PERIOD: Duration = Duration::from_millis(200);

/// Where the sockets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketDirs {
    /// kubelet's plugin-watcher directory.
    pub plugins_registry: PathBuf,
    /// kubelet's plugins directory (the DRA socket goes in `<driver>/`).
    pub plugins: PathBuf,
}

impl SocketDirs {
    /// `<plugins_registry>/<driver>-reg.sock`.
    pub fn registration(&self, driver: &str) -> PathBuf {
        self.plugins_registry.join(format!("{driver}-reg.sock"))
    }

    /// `<plugins>/<driver>/dra.sock`.
    pub fn service(&self, driver: &str) -> PathBuf {
        self.plugins.join(driver).join("dra.sock")
    }
}

/// A socket could not be served.
#[derive(Debug, thiserror::Error)]
#[error("serving {path}: {source}")]
pub struct ServeError {
    /// The socket.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// One served socket.
struct Served {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Served {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let l = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

fn serve(path: &Path, router: tonic::transport::server::Router) -> Result<Served, ServeError> {
    let listener = bind(path)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let shown = path.display().to_string();
    let task = tokio::spawn(async move {
        let incoming = UnixListenerStream::new(listener);
        let stop = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(socket = %shown, "DRA gRPC server failed: {e}");
        }
    });
    Ok(Served {
        path: path.to_path_buf(),
        stop: Some(stop_tx),
        task,
    })
}

fn service_router(p: &Arc<DraPlugin>) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .add_service(V1Server::new(V1(p.clone())))
        .add_service(V1beta1Server::new(V1beta1(p.clone())))
}

fn registration_router(p: &Arc<DraPlugin>, endpoint: &Path) -> tonic::transport::server::Router {
    tonic::transport::Server::builder().add_service(RegistrationServer::new(DraRegistration {
        driver: p.ctx.driver.clone(),
        endpoint: endpoint.display().to_string(),
        telemetry: p.telemetry.clone(),
    }))
}

/// The running plugin: both sockets and their guard.
pub struct DraServer {
    stop: Option<oneshot::Sender<()>>,
    guard: JoinHandle<()>,
}

/// Serves the DRA service first, then the registration socket (kubelet
/// dials the service as soon as it has registered the plugin).
pub fn start(plugin: Arc<DraPlugin>, dirs: &SocketDirs) -> Result<DraServer, ServeError> {
    let driver = plugin.ctx.driver.clone();
    let svc_path = dirs.service(&driver);
    let reg_path = dirs.registration(&driver);
    let mut svc = serve(&svc_path, service_router(&plugin))?;
    let mut reg = match serve(&reg_path, registration_router(&plugin, &svc_path)) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&svc_path);
            return Err(e);
        }
    };
    tracing::info!(driver = %driver, registration = %reg_path.display(), service = %svc_path.display(), "serving the DRA plugin");
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let guard = tokio::spawn(async move {
        let mut tick = tokio::time::interval(GUARD_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {}
            }
            // The service first: kubelet dials it right after registering.
            if !svc_path.exists() {
                tracing::warn!(socket = %svc_path.display(), "DRA socket removed; serving it again");
                let old = std::mem::replace(&mut svc, placeholder());
                old.stop().await;
                match serve(&svc_path, service_router(&plugin)) {
                    Ok(s) => svc = s,
                    Err(e) => tracing::error!("{e}"),
                }
            }
            if !reg_path.exists() {
                tracing::warn!(socket = %reg_path.display(), "registration socket removed; serving it again");
                let old = std::mem::replace(&mut reg, placeholder());
                old.stop().await;
                if let Some(t) = &plugin.telemetry {
                    t.dra(&plugin.ctx.driver, |v| v.registered = false);
                }
                match serve(&reg_path, registration_router(&plugin, &svc_path)) {
                    Ok(r) => reg = r,
                    Err(e) => tracing::error!("{e}"),
                }
            }
        }
        reg.stop().await;
        svc.stop().await;
    });
    Ok(DraServer {
        stop: Some(stop_tx),
        guard,
    })
}

/// A served socket that serves nothing, held while a real one is rebuilt
/// (its path is empty, so stopping it removes nothing).
fn placeholder() -> Served {
    Served {
        path: PathBuf::new(),
        stop: None,
        task: tokio::spawn(async {}),
    }
}

impl DraServer {
    /// Stops serving and removes both sockets (kubelet then deregisters
    /// the driver).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.guard)
            .await
            .is_err()
        {
            self.guard.abort();
        }
    }
}
