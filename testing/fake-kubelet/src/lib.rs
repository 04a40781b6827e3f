//! A fake kubelet: the server side of device-plugin registration (both the
//! `Register` socket and the plugin-watcher discovery) and the client side
//! of the `DevicePlugin` service, speaking real gRPC over unix sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use device_plugin::pluginregistration as reg;
use device_plugin::v1beta1 as api;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

struct RegistrationService {
    tx: mpsc::UnboundedSender<api::RegisterRequest>,
}

#[tonic::async_trait]
impl api::registration_server::Registration for RegistrationService {
    async fn register(
        &self,
        req: Request<api::RegisterRequest>,
    ) -> Result<Response<api::Empty>, Status> {
        let r = req.into_inner();
        if r.version != device_plugin::VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported version {:?}",
                r.version
            )));
        }
        let _ = self.tx.send(r);
        Ok(Response::new(api::Empty {}))
    }
}

/// kubelet's device-plugin registration endpoint on `<dir>/kubelet.sock`.
pub struct FakeKubelet {
    dir: PathBuf,
    registrations: mpsc::UnboundedReceiver<api::RegisterRequest>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    /// Serves `Registration` on `<dir>/kubelet.sock`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let sock = dir.join(device_plugin::KUBELET_SOCKET);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        let (tx, registrations) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let svc = api::registration_server::RegistrationServer::new(RegistrationService { tx });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(Self {
            dir: dir.to_path_buf(),
            registrations,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The next `RegisterRequest`, or `None` after `timeout`.
    pub async fn next_registration(&mut self, timeout: Duration) -> Option<api::RegisterRequest> {
        tokio::time::timeout(timeout, self.registrations.recv())
            .await
            .ok()
            .flatten()
    }

    /// Registrations until `n` distinct resources registered or `timeout`.
    pub async fn registrations(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Vec<api::RegisterRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out: Vec<api::RegisterRequest> = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_registration(left).await {
                Some(r) => {
                    out.retain(|o| o.resource_name != r.resource_name);
                    out.push(r);
                }
                None => break,
            }
        }
        out
    }

    /// Stops serving and removes kubelet.sock.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let _ = std::fs::remove_file(self.dir.join(device_plugin::KUBELET_SOCKET));
    }

    /// Restarts the way kubelet does: stops, deletes every other socket in
    /// the directory, then serves a fresh kubelet.sock.
    pub async fn restart(mut self) -> anyhow::Result<Self> {
        self.stop().await;
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "sock") {
                let _ = std::fs::remove_file(p);
            }
        }
        Self::start(&self.dir).await
    }

    /// The socket path of a registered endpoint.
    pub fn endpoint_path(&self, r: &api::RegisterRequest) -> PathBuf {
        self.dir.join(&r.endpoint)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One plugin found by the plugin-watcher side.
#[derive(Debug, Clone)]
pub struct DiscoveredPlugin {
    /// The socket file found in the registry directory.
    pub socket: PathBuf,
    /// What `GetInfo` returned.
    pub info: reg::PluginInfo,
}

/// kubelet's plugin watcher: every `*.sock` in `registry`, `GetInfo`, then
/// `NotifyRegistrationStatus` with kubelet's verdict for the plugin's type
/// (a device plugin must speak `v1beta1`, a DRA driver `v1.DRAPlugin`).
pub async fn discover_plugins(registry: &Path) -> anyhow::Result<Vec<DiscoveredPlugin>> {
    let mut socks: Vec<PathBuf> = std::fs::read_dir(registry)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    socks.sort();
    let mut out = Vec::new();
    for socket in socks {
        out.push(register_plugin(&socket).await?);
    }
    Ok(out)
}

/// What kubelet says about a plugin's `PluginInfo`: `None` when it accepts it.
pub fn verdict(info: &reg::PluginInfo) -> Option<String> {
    let has = |v: &str| info.supported_versions.iter().any(|s| s == v);
    match info.r#type.as_str() {
        device_plugin::DEVICE_PLUGIN_TYPE if has(device_plugin::VERSION) => None,
        device_plugin::DRA_PLUGIN_TYPE if device_plugin::DRA_VERSIONS.iter().any(|v| has(v)) => {
            None
        }
        t => Some(format!(
            "unsupported plugin type {t:?} or versions {:?}",
            info.supported_versions
        )),
    }
}

/// One plugin-watcher registration: `GetInfo`, then the verdict.
pub async fn register_plugin(socket: &Path) -> anyhow::Result<DiscoveredPlugin> {
    let ch = device_plugin::connect_unix(socket).await?;
    let mut c = reg::registration_client::RegistrationClient::new(ch);
    let info = c.get_info(reg::InfoRequest {}).await?.into_inner();
    let error = verdict(&info);
    c.notify_registration_status(reg::RegistrationStatus {
        plugin_registered: error.is_none(),
        error: error.unwrap_or_default(),
    })
    .await?;
    Ok(DiscoveredPlugin {
        socket: socket.to_path_buf(),
        info,
    })
}

/// kubelet's client of a DRA driver, on the endpoint its registration
/// named, in either API version.
#[derive(Clone)]
pub enum DraClient {
    /// `k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin`.
    V1(device_plugin::dra_v1::dra_plugin_client::DraPluginClient<Channel>),
    /// `k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin`.
    V1beta1(device_plugin::dra_v1beta1::dra_plugin_client::DraPluginClient<Channel>),
}

/// A claim as kubelet names it: (namespace, name, uid).
pub type ClaimId<'a> = (&'a str, &'a str, &'a str);

fn claims_v1(claims: &[ClaimId<'_>]) -> Vec<device_plugin::dra_v1::Claim> {
    claims
        .iter()
        .map(|(ns, name, uid)| device_plugin::dra_v1::Claim {
            namespace: ns.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
        })
        .collect()
}

fn recode<A: prost::Message, B: prost::Message + Default>(a: &A) -> B {
    B::decode(a.encode_to_vec().as_slice()).expect("v1 and v1beta1 share field numbers")
}

impl DraClient {
    /// Connects to a DRA socket, speaking `version` (`v1` or `v1beta1`).
    pub async fn connect(endpoint: &Path, version: &str) -> anyhow::Result<Self> {
        let ch = device_plugin::connect_unix(endpoint).await?;
        Ok(match version {
            "v1" => Self::V1(device_plugin::dra_v1::dra_plugin_client::DraPluginClient::new(ch)),
            "v1beta1" => Self::V1beta1(
                device_plugin::dra_v1beta1::dra_plugin_client::DraPluginClient::new(ch),
            ),
            v => anyhow::bail!("no DRA API version {v}"),
        })
    }

    /// `NodePrepareResources`, the answer in v1 messages whatever was spoken.
    pub async fn prepare(
        &mut self,
        claims: &[ClaimId<'_>],
    ) -> Result<device_plugin::dra_v1::NodePrepareResourcesResponse, Status> {
        let req = device_plugin::dra_v1::NodePrepareResourcesRequest {
            claims: claims_v1(claims),
        };
        Ok(match self {
            Self::V1(c) => c.node_prepare_resources(req).await?.into_inner(),
            Self::V1beta1(c) => recode(
                &c.node_prepare_resources(recode::<
                    _,
                    device_plugin::dra_v1beta1::NodePrepareResourcesRequest,
                >(&req))
                    .await?
                    .into_inner(),
            ),
        })
    }

    /// `NodeUnprepareResources`, the answer in v1 messages.
    pub async fn unprepare(
        &mut self,
        claims: &[ClaimId<'_>],
    ) -> Result<device_plugin::dra_v1::NodeUnprepareResourcesResponse, Status> {
        let req = device_plugin::dra_v1::NodeUnprepareResourcesRequest {
            claims: claims_v1(claims),
        };
        Ok(match self {
            Self::V1(c) => c.node_unprepare_resources(req).await?.into_inner(),
            Self::V1beta1(c) => recode(
                &c.node_unprepare_resources(recode::<
                    _,
                    device_plugin::dra_v1beta1::NodeUnprepareResourcesRequest,
                >(&req))
                    .await?
                    .into_inner(),
            ),
        })
    }
}

/// kubelet's client of one device plugin.
#[derive(Clone)]
pub struct PluginClient {
    client: api::device_plugin_client::DevicePluginClient<Channel>,
}

/// A ListAndWatch stream.
pub struct DeviceWatch {
    stream: tonic::Streaming<api::ListAndWatchResponse>,
}

impl DeviceWatch {
    /// The next device list, or `None` on timeout or end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<api::ListAndWatchResponse> {
        tokio::time::timeout(timeout, self.stream.message())
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten()
    }

    /// Lists until one satisfies `pred`, or `None` on timeout.
    pub async fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&api::ListAndWatchResponse) -> bool,
    ) -> Option<api::ListAndWatchResponse> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self.next(left).await?;
            if pred(&r) {
                return Some(r);
            }
        }
    }
}

impl PluginClient {
    /// Connects to a plugin's socket.
    pub async fn connect(socket: &Path) -> anyhow::Result<Self> {
        let ch = device_plugin::connect_unix(socket).await?;
        Ok(Self {
            client: api::device_plugin_client::DevicePluginClient::new(ch),
        })
    }

    /// `GetDevicePluginOptions`.
    pub async fn options(&mut self) -> Result<api::DevicePluginOptions, Status> {
        Ok(self
            .client
            .get_device_plugin_options(api::Empty {})
            .await?
            .into_inner())
    }

    /// Opens `ListAndWatch`.
    pub async fn list_and_watch(&mut self) -> Result<DeviceWatch, Status> {
        let stream = self
            .client
            .list_and_watch(api::Empty {})
            .await?
            .into_inner();
        Ok(DeviceWatch { stream })
    }

    /// `GetPreferredAllocation` for one container.
    pub async fn preferred(
        &mut self,
        available: &[String],
        must_include: &[String],
        size: i32,
    ) -> Result<Vec<String>, Status> {
        let req = api::PreferredAllocationRequest {
            container_requests: vec![api::ContainerPreferredAllocationRequest {
                available_device_i_ds: available.to_vec(),
                must_include_device_i_ds: must_include.to_vec(),
                allocation_size: size,
            }],
        };
        let mut r = self
            .client
            .get_preferred_allocation(req)
            .await?
            .into_inner();
        Ok(r.container_responses
            .pop()
            .map(|c| c.device_i_ds)
            .unwrap_or_default())
    }

    /// `Allocate` for one container.
    pub async fn allocate(
        &mut self,
        ids: &[String],
    ) -> Result<api::ContainerAllocateResponse, Status> {
        let req = api::AllocateRequest {
            container_requests: vec![api::ContainerAllocateRequest {
                devices_ids: ids.to_vec(),
            }],
        };
        let mut r = self.client.allocate(req).await?.into_inner();
        r.container_responses
            .pop()
            .ok_or_else(|| Status::internal("no container response"))
    }
}

/// Device IDs of a list.
pub fn ids(r: &api::ListAndWatchResponse) -> Vec<String> {
    r.devices.iter().map(|d| d.id.clone()).collect()
}

/// Healthy device IDs of a list.
pub fn healthy_ids(r: &api::ListAndWatchResponse) -> Vec<String> {
    r.devices
        .iter()
        .filter(|d| d.health == device_plugin::HEALTHY)
        .map(|d| d.id.clone())
        .collect()
}

/// Milliseconds since boot from the text of `/proc/uptime` (`"123.45
/// 678.90"`), or `None` when it is not in that form.
pub fn uptime_ms(proc_uptime: &str) -> Option<u64> {
    let first = proc_uptime.split_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    if frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let frac_ms: u64 = format!("{frac:0<3}").parse().ok()?;
    secs.checked_mul(1000)?.checked_add(frac_ms)
}

#[cfg(test)]
mod tests {
    use super::uptime_ms;

    #[test]
    fn uptime_ms_reads_the_first_field() {
        assert_eq!(uptime_ms("123.45 678.90\n"), Some(123_450));
        assert_eq!(uptime_ms("0.07 0.00"), Some(70));
        assert_eq!(uptime_ms("5 1"), Some(5000));
        assert_eq!(uptime_ms("5.123 1"), Some(5123));
    }

    #[test]
    fn uptime_ms_rejects_other_text() {
        assert_eq!(uptime_ms(""), None);
        assert_eq!(uptime_ms("x.5 1"), None);
        assert_eq!(uptime_ms("1.-5 1"), None);
        assert_eq!(uptime_ms("1. 2"), None);
        assert_eq!(uptime_ms("1.2345 2"), None);
    }
}
