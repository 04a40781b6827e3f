//! The DRA kubelet plugin's gRPC faces: `DRAPlugin` (v1 and v1beta1,
//! which share messages and field numbers, so v1beta1 calls are re-coded
//! into v1 and served by the same code) and the plugin-watcher
//! `Registration`. Claims are read through a [`ClaimSource`] and prepared
//! one at a time on a blocking thread by [`super::prepare_run`].

use std::sync::Arc;
use std::time::Instant;

use device_plugin::dra_v1 as v1;
use device_plugin::dra_v1beta1 as v1beta1;
use device_plugin::pluginregistration as reg;
use prost::Message;
use tokio::sync::{Mutex, watch};
use tonic::{Request, Response, Status};

use super::prepare_run::{self, DraContext};
use super::record::{self, ClaimRecord, Phase};
use super::{ClaimRef, ClaimSource};
use crate::agent::telemetry::{DraClaimView, Telemetry};
use crate::pools::Pools;

/// The shared state of the plugin's services.
pub struct DraPlugin {
    /// Where and as whom it works.
    pub ctx: DraContext,
    /// Where claims are read from.
    pub claims: Arc<dyn ClaimSource>,
    /// This node's DRA pools, as the last rescan found them.
    pub pools: watch::Receiver<Arc<Pools>>,
    /// Serializes prepare and unprepare: two claims never change the node
    /// at once, and a retry never races the call it retries.
    pub lock: Mutex<()>,
    /// Counters for status and metrics.
    pub telemetry: Option<Arc<Telemetry>>,
}

fn claim_ref(c: &v1::Claim) -> ClaimRef {
    ClaimRef {
        namespace: c.namespace.clone(),
        name: c.name.clone(),
        uid: c.uid.clone(),
    }
}

/// The answer kubelet gets for a prepared claim.
pub fn prepared_devices(r: &ClaimRecord) -> Vec<v1::Device> {
    r.devices
        .iter()
        .map(|d| v1::Device {
            request_names: vec![d.request.clone()],
            pool_name: d.pool.clone(),
            device_name: d.device.clone(),
            cdi_device_ids: d.cdi_ids.clone(),
        })
        .collect()
}

/// Re-codes a message between the two API versions (same field numbers).
fn recode<A: Message, B: Message + Default>(a: &A) -> Result<B, Status> {
    B::decode(a.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("re-coding between DRA API versions: {e}")))
}

impl DraPlugin {
    /// Prepares one claim; the error text is what kubelet shows.
    async fn prepare_one(&self, claim: &ClaimRef) -> Result<ClaimRecord, String> {
        let ctx = self.ctx.clone();
        // A claim prepared before (kubelet retries, kubelet restarted) is
        // answered from its record, without asking the API server.
        let uid = claim.uid.clone();
        let known =
            blocking(move || record::load(&ctx.state_dir, &uid).map_err(|e| e.to_string())).await?;
        if let Some(r) = known.filter(|r| r.phase == Phase::Prepared && r.claim == *claim) {
            return Ok(r);
        }
        let alloc = self
            .claims
            .get(claim, &self.ctx.driver, &self.ctx.node)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("ResourceClaim {}/{} not found", claim.namespace, claim.name))?;
        if alloc.claim.uid != claim.uid {
            return Err(format!(
                "ResourceClaim {}/{} has UID {}, kubelet asked for {}",
                claim.namespace, claim.name, alloc.claim.uid, claim.uid
            ));
        }
        self.release_stale_holders(&alloc).await?;
        let pools = self.pools.borrow().clone();
        let ctx = self.ctx.clone();
        blocking(move || prepare_run::prepare(&ctx, &alloc, &pools).map_err(|e| e.to_string()))
            .await
    }

    /// Restores the records of gone claims that still hold a VF of
    /// `alloc`; a VF whose holder still exists is an error naming it.
    async fn release_stale_holders(&self, alloc: &super::ClaimAllocation) -> Result<(), String> {
        let state = self.ctx.state_dir.clone();
        let records = blocking(move || Ok(record::load_all(&state))).await?;
        let holders: Vec<(crate::pci::PciAddress, ClaimRecord)> =
            super::prepare::holders(&records, alloc)
                .into_iter()
                .map(|(pci, r)| (pci, r.clone()))
                .collect();
        for (pci, old) in holders {
            let seen = super::reconcile::ClaimSeen::of(
                &self
                    .claims
                    .get(&old.claim, &self.ctx.driver, &self.ctx.node)
                    .await,
            );
            if seen != super::reconcile::ClaimSeen::Gone {
                return Err(format!(
                    "VF {pci} is still prepared for claim {}; it is released when kubelet unprepares that claim",
                    old.claim
                ));
            }
            tracing::info!(claim = %old.claim, vf = %pci, "restoring the record of a gone claim that holds a VF now allocated again");
            let ctx = self.ctx.clone();
            blocking(move || prepare_run::restore_or_keep(&ctx, &old).map_err(|e| e.to_string()))
                .await?;
        }
        Ok(())
    }

    async fn unprepare_one(&self, claim: &ClaimRef) -> Result<(), String> {
        let ctx = self.ctx.clone();
        let uid = claim.uid.clone();
        blocking(move || prepare_run::unprepare(&ctx, &uid).map_err(|e| e.to_string())).await
    }

    /// Refreshes the prepared-claims view from the records.
    async fn refresh_view(&self) {
        let Some(t) = &self.telemetry else {
            return;
        };
        let state = self.ctx.state_dir.clone();
        let Ok(records) = tokio::task::spawn_blocking(move || record::load_all(&state)).await
        else {
            return;
        };
        let prepared = records
            .iter()
            .filter(|r| r.phase == Phase::Prepared)
            .map(|r| DraClaimView {
                claim: format!("{}/{}", r.claim.namespace, r.claim.name),
                uid: r.claim.uid.clone(),
                devices: r.devices.iter().map(|d| d.pci).collect(),
            })
            .collect();
        t.dra(&self.ctx.driver, |v| v.prepared = prepared);
    }

    fn count(&self, op: &str, claim: &ClaimRef, err: Option<&str>, start: Instant) {
        if let Some(e) = err {
            tracing::error!(claim = %claim, "{op} failed: {e}");
        } else {
            tracing::info!(claim = %claim, "{op}d");
        }
        if let Some(t) = &self.telemetry {
            let name = format!("{}/{}", claim.namespace, claim.name);
            t.dra_call(op, &name, err, start.elapsed());
        }
    }

    /// `NodePrepareResources`, v1 messages.
    pub async fn node_prepare(
        &self,
        req: v1::NodePrepareResourcesRequest,
    ) -> v1::NodePrepareResourcesResponse {
        let _guard = self.lock.lock().await;
        let mut out = v1::NodePrepareResourcesResponse::default();
        for c in &req.claims {
            let claim = claim_ref(c);
            let start = Instant::now();
            let r = self.prepare_one(&claim).await;
            self.count(
                "prepare",
                &claim,
                r.as_ref().err().map(String::as_str),
                start,
            );
            let resp = match r {
                Ok(rec) => v1::NodePrepareResourceResponse {
                    devices: prepared_devices(&rec),
                    error: String::new(),
                },
                Err(error) => v1::NodePrepareResourceResponse {
                    devices: vec![],
                    error,
                },
            };
            out.claims.insert(c.uid.clone(), resp);
        }
        self.refresh_view().await;
        out
    }

    /// `NodeUnprepareResources`, v1 messages.
    pub async fn node_unprepare(
        &self,
        req: v1::NodeUnprepareResourcesRequest,
    ) -> v1::NodeUnprepareResourcesResponse {
        let _guard = self.lock.lock().await;
        let mut out = v1::NodeUnprepareResourcesResponse::default();
        for c in &req.claims {
            let claim = claim_ref(c);
            let start = Instant::now();
            let r = self.unprepare_one(&claim).await;
            self.count(
                "unprepare",
                &claim,
                r.as_ref().err().map(String::as_str),
                start,
            );
            out.claims.insert(
                c.uid.clone(),
                v1::NodeUnprepareResourceResponse {
                    error: r.err().unwrap_or_default(),
                },
            );
        }
        self.refresh_view().await;
        out
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("prepare task failed: {e}"))?
}

/// The v1 service over a shared plugin.
pub struct V1(pub Arc<DraPlugin>);
/// The v1beta1 service over the same plugin.
pub struct V1beta1(pub Arc<DraPlugin>);

#[tonic::async_trait]
impl v1::dra_plugin_server::DraPlugin for V1 {
    async fn node_prepare_resources(
        &self,
        req: Request<v1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1::NodePrepareResourcesResponse>, Status> {
        Ok(Response::new(self.0.node_prepare(req.into_inner()).await))
    }

    async fn node_unprepare_resources(
        &self,
        req: Request<v1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1::NodeUnprepareResourcesResponse>, Status> {
        Ok(Response::new(self.0.node_unprepare(req.into_inner()).await))
    }
}

#[tonic::async_trait]
impl v1beta1::dra_plugin_server::DraPlugin for V1beta1 {
    async fn node_prepare_resources(
        &self,
        req: Request<v1beta1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodePrepareResourcesResponse>, Status> {
        let r = self.0.node_prepare(recode(req.get_ref())?).await;
        Ok(Response::new(recode(&r)?))
    }

    async fn node_unprepare_resources(
        &self,
        req: Request<v1beta1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodeUnprepareResourcesResponse>, Status> {
        let r = self.0.node_unprepare(recode(req.get_ref())?).await;
        Ok(Response::new(recode(&r)?))
    }
}

/// The plugin-watcher `Registration` of the DRA plugin.
pub struct DraRegistration {
    /// The driver name (`PluginInfo.name`).
    pub driver: String,
    /// The DRA socket's path (`PluginInfo.endpoint`).
    pub endpoint: String,
    /// Where kubelet's verdicts go.
    pub telemetry: Option<Arc<Telemetry>>,
}

#[tonic::async_trait]
impl reg::registration_server::Registration for DraRegistration {
    async fn get_info(
        &self,
        _: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: device_plugin::DRA_PLUGIN_TYPE.into(),
            name: self.driver.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: device_plugin::DRA_VERSIONS.map(String::from).to_vec(),
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let r = req.into_inner();
        if r.plugin_registered {
            tracing::info!(driver = %self.driver, "DRA plugin registered with kubelet");
        } else {
            tracing::error!(driver = %self.driver, error = %r.error, "kubelet rejected the DRA plugin");
        }
        if let Some(t) = &self.telemetry {
            t.dra(&self.driver, |v| {
                v.registered = r.plugin_registered;
                v.registration_error = (!r.plugin_registered).then(|| r.error.clone());
            });
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}
