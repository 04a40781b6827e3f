//! A fake kubelet PodResources v1 server: the real generated
//! `PodResourcesLister` service over a unix socket in a temp dir, with
//! switches for the behaviours a real kubelet shows (Get unimplemented or
//! feature-gated off, slow answers) and call counters.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use device_plugin::podresources as api;
use device_plugin::podresources::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// How the fake answers `Get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// Like kubelet with KubeletPodResourcesGet on.
    Serve,
    /// Like a kubelet predating Get (gRPC Unimplemented).
    Unimplemented,
    /// Like kubelet with the feature gate off (a plain Go error: Unknown).
    Disabled,
}

/// What the fake serves.
#[derive(Debug, Clone)]
pub struct FakeState {
    pub pods: Vec<api::PodResources>,
    pub get: GetMode,
    pub delay: Duration,
}

#[derive(Default)]
pub struct Calls {
    pub get: AtomicUsize,
    pub list: AtomicUsize,
}

struct Lister {
    state: FakeState,
    calls: Arc<Calls>,
}

impl Lister {
    /// Even a zero-length tokio sleep waits for the next 1 ms timer tick,
    /// which would inflate every measured call: only sleep when asked.
    async fn pause(&self) {
        if !self.state.delay.is_zero() {
            tokio::time::sleep(self.state.delay).await;
        }
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<api::ListPodResourcesRequest>,
    ) -> Result<Response<api::ListPodResourcesResponse>, Status> {
        self.calls.list.fetch_add(1, Ordering::SeqCst);
        self.pause().await;
        Ok(Response::new(api::ListPodResourcesResponse {
            pod_resources: self.state.pods.clone(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<api::AllocatableResourcesRequest>,
    ) -> Result<Response<api::AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn get(
        &self,
        req: Request<api::GetPodResourcesRequest>,
    ) -> Result<Response<api::GetPodResourcesResponse>, Status> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        self.pause().await;
        let req = req.into_inner();
        match self.state.get {
            GetMode::Unimplemented => Err(Status::unimplemented("unknown method Get")),
            GetMode::Disabled => Err(Status::unknown("PodResources API Get method disabled")),
            GetMode::Serve => {
                let pod = self
                    .state
                    .pods
                    .iter()
                    .find(|p| p.namespace == req.pod_namespace && p.name == req.pod_name)
                    .cloned()
                    .ok_or_else(|| {
                        Status::unknown(format!(
                            "pod {} in namespace {} not found",
                            req.pod_name, req.pod_namespace
                        ))
                    })?;
                Ok(Response::new(api::GetPodResourcesResponse {
                    pod_resources: Some(pod),
                }))
            }
        }
    }
}

/// A running fake; stops and joins its server thread on drop.
pub struct FakeKubelet {
    pub socket: PathBuf,
    pub calls: Arc<Calls>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    /// Serves `state` on `<dir>/kubelet.sock`.
    pub fn start(dir: &Path, state: FakeState) -> Self {
        let socket = dir.join("kubelet.sock");
        let calls = Arc::new(Calls::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let lister = Lister {
            state,
            calls: calls.clone(),
        };
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake kubelet runtime");
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).expect("bind fake socket");
                ready_tx.send(()).expect("signal ready");
                tonic::transport::Server::builder()
                    .add_service(PodResourcesListerServer::new(lister))
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::UnixListenerStream::new(listener),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .expect("fake kubelet serve");
            });
        });
        ready_rx.recv().expect("fake kubelet started");
        Self {
            socket,
            calls,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn gets(&self) -> usize {
        self.calls.get.load(Ordering::SeqCst)
    }

    pub fn lists(&self) -> usize {
        self.calls.list.load(Ordering::SeqCst)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A socket that accepts connections and never says a word (a wedged
/// kubelet): the client must give up at its deadline.
pub struct SilentSocket {
    pub socket: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl SilentSocket {
    pub fn bind(dir: &Path) -> Self {
        let socket = dir.join("kubelet.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind silent");
        // The kernel completes connects into the backlog without accept().
        Self { socket, listener }
    }
}

/// One pod with one container holding `devices` of each resource.
pub fn pod(ns: &str, name: &str, devices: &[(&str, &[&str])]) -> api::PodResources {
    api::PodResources {
        name: name.into(),
        namespace: ns.into(),
        containers: vec![api::ContainerResources {
            name: "app".into(),
            devices: devices
                .iter()
                .map(|(r, ids)| api::ContainerDevices {
                    resource_name: (*r).into(),
                    device_ids: ids.iter().map(|s| (*s).into()).collect(),
                    topology: None,
                })
                .collect(),
            ..Default::default()
        }],
    }
}
