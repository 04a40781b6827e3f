//! A blocking client for kubelet's PodResources v1 API (the unix socket
//! `/var/lib/kubelet/pod-resources/kubelet.sock`), mapped to plain data.
//!
//! The CNI is a short-lived process, so every call builds a
//! `current_thread` tokio runtime on demand, connects, asks, and drops it
//! all again; one deadline covers connect and call, so a hung kubelet costs
//! at most the timeout.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use device_plugin::podresources as api;
use device_plugin::podresources::pod_resources_lister_client::PodResourcesListerClient;
use hyper_util::rt::TokioIo;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

/// kubelet's default PodResources socket.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// Default deadline for one query (connect + call).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

/// One pod as PodResources reports it: name, namespace and its containers'
/// devices. PodResources carries no pod UID.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodDevices {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<ContainerDevices>,
}

/// The devices of one container, grouped by resource name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerDevices {
    pub name: String,
    pub resources: Vec<ResourceDevices>,
}

/// Device ids kubelet allocated for one resource (e.g. `intel.com/sriov`).
/// The ids are kept as kubelet sent them: other device plugins use ids that
/// are not PCI addresses, so parsing belongs to whoever needs a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceDevices {
    pub resource_name: String,
    pub device_ids: Vec<String>,
}

/// Which RPC produced an answer: `Get` covers one pod, `List` the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Get,
    List,
}

/// Pods returned by a query and the RPC that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodsAnswer {
    pub pods: Vec<PodDevices>,
    pub source: Source,
}

/// Errors talking to the PodResources socket.
#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    #[error("PodResources socket {} does not exist", path.display())]
    SocketAbsent { path: PathBuf },
    #[error("cannot inspect PodResources socket {}: {source}", path.display())]
    SocketStat { path: PathBuf, source: io::Error },
    #[error("PodResources socket {} is not a unix socket", path.display())]
    NotASocket { path: PathBuf },
    #[error("starting the PodResources client runtime: {0}")]
    Runtime(io::Error),
    #[error("connecting to PodResources socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("PodResources {call} on {} failed: {} ({})", path.display(), status.code(), status.message())]
    Call {
        call: &'static str,
        path: PathBuf,
        status: Box<tonic::Status>,
    },
    #[error("PodResources on {} did not answer within {} ms", path.display(), timeout.as_millis())]
    Timeout { path: PathBuf, timeout: Duration },
}

/// Where and how long to ask kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodResourcesClient {
    socket: PathBuf,
    timeout: Duration,
}

impl PodResourcesClient {
    /// A client for `socket` whose every query (connect included) ends
    /// within `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the socket exists as a unix socket (the API is served).
    pub fn socket_state(&self) -> Result<(), PodResourcesError> {
        socket_state(&self.socket)
    }

    /// The resources of one pod: `Get`, falling back to `List` (every pod
    /// on the node) when kubelet does not serve `Get`. An answer without
    /// the pod means kubelet does not know it.
    pub fn pod(&self, namespace: &str, name: &str) -> Result<PodsAnswer, PodResourcesError> {
        self.run(async |client, path| {
            let req = api::GetPodResourcesRequest {
                pod_name: name.to_owned(),
                pod_namespace: namespace.to_owned(),
            };
            match client.get(req).await {
                Ok(resp) => Ok(PodsAnswer {
                    pods: resp.into_inner().pod_resources.map(pod_from_api).into_iter().collect(),
                    source: Source::Get,
                }),
                // Unimplemented: kubelet older than Get. Unknown: kubelet's
                // plain errors, "Get method disabled" (feature gate off) and
                // "pod not found"; List answers both authoritatively.
                Err(status) if matches!(status.code(), Code::Unimplemented | Code::Unknown) => {
                    tracing::debug!(code = %status.code(), msg = status.message(), "PodResources Get refused, using List");
                    // The whole node, unfiltered: if the device is not
                    // this pod's, the answer already says whose it is.
                    Ok(PodsAnswer {
                        pods: list(client, path).await?,
                        source: Source::List,
                    })
                }
                Err(status) => Err(call_error("Get", path, status)),
            }
        })
    }

    /// Every pod on the node (`List`).
    pub fn list(&self) -> Result<PodsAnswer, PodResourcesError> {
        self.run(async |client, path| {
            Ok(PodsAnswer {
                pods: list(client, path).await?,
                source: Source::List,
            })
        })
    }

    /// Connects and runs `f` on a fresh current_thread runtime, all within
    /// the timeout.
    fn run<T>(
        &self,
        f: impl AsyncFnOnce(
            &mut PodResourcesListerClient<Channel>,
            &Path,
        ) -> Result<T, PodResourcesError>,
    ) -> Result<T, PodResourcesError> {
        socket_state(&self.socket)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(PodResourcesError::Runtime)?;
        let path = self.socket.as_path();
        rt.block_on(async {
            let work = async {
                let mut client = connect(path).await?;
                f(&mut client, path).await
            };
            tokio::time::timeout(self.timeout, work)
                .await
                .map_err(|_| PodResourcesError::Timeout {
                    path: path.to_owned(),
                    timeout: self.timeout,
                })?
        })
    }
}

fn socket_state(path: &Path) -> Result<(), PodResourcesError> {
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(_) => Err(PodResourcesError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PodResourcesError::SocketAbsent {
            path: path.to_owned(),
        }),
        Err(source) => Err(PodResourcesError::SocketStat {
            path: path.to_owned(),
            source,
        }),
    }
}

async fn connect(path: &Path) -> Result<PodResourcesListerClient<Channel>, PodResourcesError> {
    let socket = path.to_owned();
    // The URI is required by the HTTP/2 layer but never resolved: the
    // connector always dials the unix socket.
    let channel = Endpoint::from_static("http://podresources.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| PodResourcesError::Connect {
            path: path.to_owned(),
            source,
        })?;
    Ok(PodResourcesListerClient::new(channel))
}

async fn list(
    client: &mut PodResourcesListerClient<Channel>,
    path: &Path,
) -> Result<Vec<PodDevices>, PodResourcesError> {
    let resp = client
        .list(api::ListPodResourcesRequest {})
        .await
        .map_err(|status| call_error("List", path, status))?;
    Ok(resp
        .into_inner()
        .pod_resources
        .into_iter()
        .map(pod_from_api)
        .collect())
}

fn call_error(call: &'static str, path: &Path, status: tonic::Status) -> PodResourcesError {
    PodResourcesError::Call {
        call,
        path: path.to_owned(),
        status: Box::new(status),
    }
}

fn pod_from_api(p: api::PodResources) -> PodDevices {
    PodDevices {
        namespace: p.namespace,
        name: p.name,
        containers: p
            .containers
            .into_iter()
            .map(|c| {
                let mut resources: Vec<ResourceDevices> = c
                    .devices
                    .into_iter()
                    .map(|d| ResourceDevices {
                        resource_name: d.resource_name,
                        device_ids: d.device_ids,
                    })
                    .collect();
                resources.extend(dynamic_devices(&c.dynamic_resources));
                ContainerDevices {
                    name: c.name,
                    resources,
                }
            })
            .collect(),
    }
}

/// VFs a container got through DRA claims, as devices of a resource named
/// after the DRA driver: a claim's device is named after its PCI address
/// ([`crate::dra::device_name`]), so the CNI's deviceID matches it like a
/// device plugin's ID. Devices with other names (other drivers') are left
/// out.
fn dynamic_devices(dynamic: &[api::DynamicResource]) -> Vec<ResourceDevices> {
    let mut by_driver: Vec<ResourceDevices> = Vec::new();
    for r in dynamic.iter().flat_map(|d| &d.claim_resources) {
        let Some(pci) = crate::dra::device_pci(&r.device_name) else {
            continue;
        };
        let id = pci.to_string();
        match by_driver
            .iter_mut()
            .find(|x| x.resource_name == r.driver_name)
        {
            Some(x) => x.device_ids.push(id),
            None => by_driver.push(ResourceDevices {
                resource_name: r.driver_name.clone(),
                device_ids: vec![id],
            }),
        }
    }
    by_driver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dra_claim_devices_count_as_the_containers_devices() {
        let claim = |driver: &str, device: &str| api::ClaimResource {
            cdi_devices: vec![],
            driver_name: driver.into(),
            pool_name: "node-a".into(),
            device_name: device.into(),
        };
        let p = api::PodResources {
            name: "p".into(),
            namespace: "ns".into(),
            containers: vec![api::ContainerResources {
                name: "c".into(),
                devices: vec![api::ContainerDevices {
                    resource_name: "intel.com/sriov".into(),
                    device_ids: vec!["0000:3b:02.0".into()],
                    topology: None,
                }],
                dynamic_resources: vec![api::DynamicResource {
                    claim_name: "vf".into(),
                    claim_namespace: "ns".into(),
                    claim_resources: vec![
                        claim("sriov.fastpath.dev", "pci-0000-3b-02-1"),
                        claim("gpu.example.com", "gpu-0"),
                        claim("sriov.fastpath.dev", "pci-0000-3b-02-2"),
                    ],
                }],
                ..Default::default()
            }],
        };
        let got = pod_from_api(p);
        assert_eq!(
            got.containers[0].resources,
            vec![
                ResourceDevices {
                    resource_name: "intel.com/sriov".into(),
                    device_ids: vec!["0000:3b:02.0".into()],
                },
                ResourceDevices {
                    resource_name: "sriov.fastpath.dev".into(),
                    device_ids: vec!["0000:3b:02.1".into(), "0000:3b:02.2".into()],
                },
            ]
        );
    }
}
