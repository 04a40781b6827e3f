//! The gRPC faces of one pool: kubelet's `DevicePlugin` service and, in
//! plugin-watcher mode, the `pluginregistration.Registration` service on
//! the same socket. Decisions are delegated to [`super::allocate`] and
//! [`super::preferred`]; this module converts and writes files.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use device_plugin::pluginregistration as reg;
use device_plugin::v1beta1 as api;
use futures::Stream;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use super::allocate::{self, AllocateOptions, ContainerAllocation};
use super::files;
use super::preferred;
use crate::pools::Pool;

/// The device list kubelet sees for `pool`.
pub fn list_response(pool: &Pool) -> api::ListAndWatchResponse {
    let devices = pool
        .devices
        .iter()
        .map(|d| api::Device {
            id: d.view.pci.to_string(),
            health: if d.healthy() {
                device_plugin::HEALTHY
            } else {
                device_plugin::UNHEALTHY
            }
            .to_string(),
            topology: match (pool.config.exclude_topology, d.view.numa_node) {
                (false, Some(n)) => Some(api::TopologyInfo {
                    nodes: vec![api::NumaNode { id: i64::from(n) }],
                }),
                _ => None,
            },
        })
        .collect();
    api::ListAndWatchResponse { devices }
}

/// Where Allocate writes its files.
#[derive(Debug, Clone)]
pub struct FileDirs {
    /// Device Info Spec directory.
    pub devinfo: PathBuf,
    /// CDI spec directory, when `--cdi`.
    pub cdi: Option<PathBuf>,
}

/// `DevicePlugin` for one pool; the pool is replaced live through `pool`.
pub struct PluginService {
    /// Current pool.
    pub pool: watch::Receiver<Arc<Pool>>,
    /// Host switches.
    pub opts: AllocateOptions,
    /// Output directories.
    pub dirs: FileDirs,
}

type ListStream = Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send>>;

fn to_proto(a: ContainerAllocation) -> api::ContainerAllocateResponse {
    api::ContainerAllocateResponse {
        envs: a.envs.into_iter().collect(),
        mounts: Vec::new(),
        devices: a
            .devices
            .into_iter()
            .map(|d| api::DeviceSpec {
                container_path: d.path.clone(),
                host_path: d.path,
                permissions: d.permissions,
            })
            .collect(),
        annotations: a.annotations.into_iter().collect(),
        cdi_devices: a
            .cdi_devices
            .into_iter()
            .map(|name| api::CdiDevice { name })
            .collect(),
    }
}

#[tonic::async_trait]
impl api::device_plugin_server::DevicePlugin for PluginService {
    type ListAndWatchStream = ListStream;

    async fn get_device_plugin_options(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(api::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    async fn list_and_watch(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        // WatchStream yields the current pool first, then every change;
        // it ends when the pool's sender is dropped (server stopping).
        let s = WatchStream::new(self.pool.clone()).map(|p| Ok(list_response(&p)));
        Ok(Response::new(Box::pin(s)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let pool = self.pool.borrow().clone();
        let container_responses = req
            .into_inner()
            .container_requests
            .iter()
            .map(|c| {
                let size = usize::try_from(c.allocation_size).unwrap_or(0);
                api::ContainerPreferredAllocationResponse {
                    device_i_ds: preferred::preferred(
                        &pool,
                        &c.available_device_i_ds,
                        &c.must_include_device_i_ds,
                        size,
                    ),
                }
            })
            .collect();
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let pool = self.pool.borrow().clone();
        let mut out = Vec::new();
        for c in &req.get_ref().container_requests {
            let a = allocate::allocate(&pool, &c.devices_ids, self.opts)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            for (name, json) in &a.devinfo {
                files::write_atomic(&self.dirs.devinfo.join(name), json.as_bytes(), 0o644)
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            out.push(a);
        }
        if let Some(dir) = &self.dirs.cdi {
            let spec = allocate::cdi_spec(&pool, self.opts);
            let name = format!("{}.json", pool.resource().replace('/', "-"));
            files::write_atomic(&dir.join(name), spec.to_string().as_bytes(), 0o644)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        tracing::info!(pool = %pool.resource(), containers = out.len(), "allocated");
        Ok(Response::new(api::AllocateResponse {
            container_responses: out.into_iter().map(to_proto).collect(),
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}

/// What kubelet last told a pool in plugin-watcher mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatcherStatus {
    /// `plugin_registered` of the last notification.
    pub registered: bool,
    /// Its error text.
    pub error: String,
}

/// plugin-watcher `Registration` for one pool.
pub struct WatcherRegistration {
    /// `<prefix>/<name>`.
    pub resource: String,
    /// The socket path kubelet dials for the DevicePlugin service.
    pub endpoint: String,
    /// Last status from kubelet.
    pub status: Arc<Mutex<WatcherStatus>>,
    /// Counts kubelet's verdicts as registrations (the watcher's
    /// equivalent of a Register call).
    pub telemetry: Option<Arc<super::telemetry::Telemetry>>,
}

#[tonic::async_trait]
impl reg::registration_server::Registration for WatcherRegistration {
    async fn get_info(
        &self,
        _: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: device_plugin::DEVICE_PLUGIN_TYPE.into(),
            name: self.resource.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: vec![device_plugin::VERSION.into()],
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let r = req.into_inner();
        if r.plugin_registered {
            tracing::info!(pool = %self.resource, "registered with kubelet (plugin watcher)");
        } else {
            tracing::error!(pool = %self.resource, error = %r.error, "kubelet rejected registration");
        }
        if let Some(t) = &self.telemetry {
            t.registration(&self.resource, r.plugin_registered);
        }
        if let Ok(mut s) = self.status.lock() {
            *s = WatcherStatus {
                registered: r.plugin_registered,
                error: r.error,
            };
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::telemetry::Telemetry;
    use reg::registration_server::Registration;

    #[tokio::test]
    async fn watcher_verdicts_count_as_registrations() {
        let t = Arc::new(Telemetry::default());
        let w = WatcherRegistration {
            resource: "intel.com/sriov".into(),
            endpoint: "/x.sock".into(),
            status: Arc::default(),
            telemetry: Some(t.clone()),
        };
        for (ok, error) in [(true, ""), (false, "version mismatch")] {
            w.notify_registration_status(Request::new(reg::RegistrationStatus {
                plugin_registered: ok,
                error: error.into(),
            }))
            .await
            .unwrap();
        }
        let s = t.snapshot();
        let n = |res| s.registrations.get(&("intel.com/sriov".to_string(), res));
        assert_eq!((n("ok"), n("error")), (Some(&1), Some(&1)));
        let st = w.status.lock().unwrap();
        assert!(!st.registered);
        assert_eq!(st.error, "version mismatch");
    }
}
