//! The agent's side of DRA: starts the DRA kubelet plugin
//! ([`crate::dra`]) beside the device plugin, keeps its pools current
//! after every rescan, and publishes this node's DRA devices as
//! ResourceSlices ([`crate::cluster::slices`]) from a task of its own, so
//! an API server that is slow or down never holds up a rescan or a
//! prepare.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::allocate::AllocateOptions;
use super::telemetry::Telemetry;
use super::{AgentError, AgentOptions};
use crate::cluster::claims::ApiClaims;
use crate::cluster::slices::SlicePublisher;
use crate::cluster::{self, ClusterOptions};
use crate::dra::plugin::DraPlugin;
use crate::dra::prepare_run::DraContext;
use crate::dra::serve::{self, DraServer, SocketDirs};
use crate::dra::{NodeDevices, attributes, reconcile};
use crate::pci::PciAddress;
use crate::pools::Pools;
use crate::sysfs::Sysfs;

/// How long a rebind waits for the driver and netdev.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts to reach the API server for slices.
const SLICE_RETRY: Duration = Duration::from_secs(2);

/// `--dra-driver` and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraAgentOptions {
    /// The driver name (a DNS subdomain, checked by the CLI).
    pub driver: String,
    /// This node's name (the pool name and the slices' node).
    pub node: String,
    /// kubelet's plugins directory (`<dir>/<driver>/dra.sock`).
    pub plugins_dir: PathBuf,
    /// How to reach the API server.
    pub cluster: ClusterOptions,
    /// Delete this node's slices when the agent stops.
    pub delete_slices_on_exit: bool,
}

/// The running DRA side of the agent.
pub struct DraRuntime {
    pools: watch::Sender<Arc<Pools>>,
    devices: watch::Sender<NodeDevices>,
    roots: BTreeMap<PciAddress, String>,
    driver: String,
    node: String,
    server: DraServer,
    slices: JoinHandle<()>,
    stop_slices: Option<oneshot::Sender<()>>,
}

impl DraRuntime {
    /// Restores claim records whose claims are gone, serves the plugin on
    /// kubelet's sockets and starts publishing `first`.
    pub async fn start(
        o: &DraAgentOptions,
        agent: &AgentOptions,
        sysfs: &Sysfs,
        alloc: AllocateOptions,
        first: &Pools,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, AgentError> {
        let client = cluster::client(&o.cluster)
            .await
            .map_err(|e| AgentError::Dra(e.to_string()))?;
        let claims = Arc::new(ApiClaims::new(client.clone()));
        let ctx = DraContext {
            driver: o.driver.clone(),
            node: o.node.clone(),
            state_dir: agent.state_dir.clone(),
            sysfs: sysfs.clone(),
            cdi_dir: agent.cdi_dir.clone(),
            devinfo_dir: agent.devinfo_dir.clone(),
            alloc,
            rebind_timeout: REBIND_TIMEOUT,
        };
        telemetry.dra(&o.driver, |_| {});
        let report = reconcile::run(&ctx, claims.as_ref()).await;
        tracing::info!(
            restored = report.restored,
            kept = report.kept,
            failed = report.failures.len(),
            "DRA claim records reconciled"
        );
        for f in &report.failures {
            tracing::error!("DRA reconcile: {f}");
        }
        let (pools, rx) = watch::channel(Arc::new(first.clone()));
        let plugin = Arc::new(DraPlugin {
            ctx,
            claims,
            pools: rx,
            lock: Default::default(),
            telemetry: Some(telemetry.clone()),
        });
        let dirs = SocketDirs {
            plugins_registry: agent.plugins_registry_dir.clone(),
            plugins: o.plugins_dir.clone(),
        };
        let server = serve::start(plugin, &dirs).map_err(|e| AgentError::Dra(e.to_string()))?;
        let mut roots = BTreeMap::new();
        let devices = node_devices(o, first, sysfs, &mut roots);
        telemetry.dra(&o.driver, |v| v.devices = devices.devices.len());
        let (devices_tx, devices_rx) = watch::channel(devices);
        let (stop_tx, stop_rx) = oneshot::channel();
        let slices = tokio::spawn(publish_loop(
            client,
            o.clone(),
            devices_rx,
            stop_rx,
            telemetry,
        ));
        Ok(Self {
            pools,
            devices: devices_tx,
            roots,
            driver: o.driver.clone(),
            node: o.node.clone(),
            server,
            slices,
            stop_slices: Some(stop_tx),
        })
    }

    /// A rescan found `dra`: prepare sees it at once; the slices change
    /// only when a device or attribute did.
    pub fn update(&mut self, dra: &Pools, sysfs: &Sysfs, telemetry: &Telemetry) {
        self.pools.send_if_modified(|cur| {
            let changed = **cur != *dra;
            if changed {
                *cur = Arc::new(dra.clone());
            }
            changed
        });
        let roots = pcie_roots(dra, sysfs, &mut self.roots);
        let d = attributes::node_devices(&self.driver, &self.node, dra, roots);
        telemetry.dra(&self.driver, |v| v.devices = d.devices.len());
        self.devices.send_if_modified(|cur| {
            let changed = *cur != d;
            if changed {
                *cur = d;
            }
            changed
        });
    }

    /// Stops the plugin (its sockets go, kubelet deregisters it) and the
    /// slice task, which deletes the slices first when asked to.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
        if let Some(s) = self.stop_slices.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(10), &mut self.slices)
            .await
            .is_err()
        {
            self.slices.abort();
        }
    }
}

fn node_devices(
    o: &DraAgentOptions,
    dra: &Pools,
    sysfs: &Sysfs,
    roots: &mut BTreeMap<PciAddress, String>,
) -> NodeDevices {
    attributes::node_devices(&o.driver, &o.node, dra, pcie_roots(dra, sysfs, roots))
}

/// The PCIe root of every DRA device, read once per address: a device's
/// place in the PCI hierarchy does not change while it exists.
fn pcie_roots<'a>(
    dra: &Pools,
    sysfs: &Sysfs,
    cache: &'a mut BTreeMap<PciAddress, String>,
) -> &'a BTreeMap<PciAddress, String> {
    for d in dra.pools.iter().flat_map(|p| &p.devices) {
        let pci = d.view.pci;
        if cache.contains_key(&pci) {
            continue;
        }
        let link = sysfs.pci_devices_dir().join(pci.to_string());
        if let Some(root) = std::fs::read_link(&link)
            .ok()
            .and_then(|t| attributes::pcie_root(&t))
        {
            cache.insert(pci, root);
        }
    }
    cache
}

/// Publishes the latest devices whenever they change; retries while the
/// API server cannot be reached; on stop, deletes the slices when asked.
async fn publish_loop(
    client: kube::Client,
    o: DraAgentOptions,
    mut devices: watch::Receiver<NodeDevices>,
    mut stop: oneshot::Receiver<()>,
    telemetry: Arc<Telemetry>,
) {
    let failed = |e: String| {
        tracing::warn!(driver = %o.driver, "ResourceSlices: {e}; retrying");
        telemetry.dra(&o.driver, |v| v.slice_error = Some(e));
    };
    let mut publisher = loop {
        match SlicePublisher::start(client.clone(), &o.driver, &o.node).await {
            Ok(p) => break p,
            Err(e) => failed(e.to_string()),
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(SLICE_RETRY) => {}
        }
    };
    loop {
        let current = devices.borrow_and_update().clone();
        let retry = match publisher.publish(&current).await {
            Ok(p) => {
                telemetry.dra(&o.driver, |v| {
                    v.slice_generation = Some(p.generation);
                    v.slice_writes += p.written as u64;
                    v.slice_error = None;
                });
                if p.written > 0 {
                    tracing::info!(
                        generation = p.generation,
                        slices = p.written,
                        "ResourceSlices published"
                    );
                }
                false
            }
            Err(e) => {
                failed(e.to_string());
                true
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            r = devices.changed() => if r.is_err() { break },
            () = tokio::time::sleep(SLICE_RETRY), if retry => {}
        }
    }
    if o.delete_slices_on_exit {
        match publisher.delete_all().await {
            Ok(n) => tracing::info!(slices = n, "ResourceSlices deleted on exit"),
            Err(e) => tracing::error!("deleting ResourceSlices on exit: {e}"),
        }
    }
}
