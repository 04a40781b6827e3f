//! A node for DRA plugin tests: the CNI tests' VF stand-ins (veths on a
//! fake sysfs, real MTUs), this node's DRA pools assigned from a
//! `draPools` config, the plugin served on real unix sockets, a table of
//! claims standing in for the API server, and kubelet's side from the
//! fake kubelet.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_kubelet::{DraClient, discover_plugins};
use fastpath::agent::telemetry::Telemetry;
use fastpath::dra::plugin::DraPlugin;
use fastpath::dra::prepare_run::DraContext;
use fastpath::dra::serve::{self, DraServer, SocketDirs};
use fastpath::dra::{
    AllocatedDevice, ClaimAllocation, ClaimRef, ClaimSource, ClaimSourceError, ConfigSource,
    OpaqueConfig, device_name,
};
use fastpath::pools::{self, FactNeeds, HostFacts, Reasons};
use fastpath::procfs::Procfs;
use fastpath::sysfs::Sysfs;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sysfs_fixture::FakeSysfs;

use crate::cni_host::Host;

pub const DRIVER: &str = "sriov.fastpath.dev";
pub const NODE: &str = "node-a";

/// Claims by UID: the stand-in for the API server's ResourceClaims.
#[derive(Default)]
pub struct Table(pub Mutex<BTreeMap<String, ClaimAllocation>>);

impl ClaimSource for Table {
    fn get<'a>(
        &'a self,
        claim: &'a ClaimRef,
        _driver: &'a str,
        _node: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClaimAllocation>, ClaimSourceError>> {
        let found = self.0.lock().unwrap().get(&claim.uid).cloned();
        async move { Ok(found) }.boxed()
    }
}

pub struct Rig {
    pub host: Host,
    pub dir: tempfile::TempDir,
    pub ctx: DraContext,
    pub dirs: SocketDirs,
    pub claims: Arc<Table>,
    pub telemetry: Arc<Telemetry>,
    pub server: Option<DraServer>,
}

impl Rig {
    /// `n` VF stand-ins; VFs in `vfio` are bound to vfio-pci (no netdev),
    /// VF i is in IOMMU group 41 + i. Every VF is in the DRA pool.
    pub async fn new(tag: &str, n: usize, vfio: &[usize]) -> Self {
        let mut host = Host::new(tag, n);
        let fake = FakeSysfs::new(host.sysfs.path()).unwrap();
        fake.remove_vfs(&host.pf).unwrap();
        host.pf = host.pf.clone().iommu_groups(40);
        for &i in vfio {
            host.pf.vfs[i].driver = Some("vfio-pci".into());
            host.pf.vfs[i].netdev = None;
        }
        fake.add_pf(&host.pf).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        std::fs::create_dir_all(proc_root.join("net")).unwrap();
        std::fs::write(proc_root.join("net/route"), "Iface\tDestination\n").unwrap();
        let sysfs = Sysfs::new(host.sysfs.path());
        let cfg = pools::config::parse(
            &json!({"draPools": [{"resourceName": "dra_net", "selectors": {"pfNames": [host.pf.netdev.as_ref().unwrap().name]}}]}).to_string(),
            "intel.com",
        )
        .unwrap();
        let inv = fastpath::inventory::scan(&sysfs).unwrap();
        let facts = HostFacts::gather(&sysfs, &Procfs::new(&proc_root), &inv, FactNeeds::of(&cfg));
        let modes = pools::modes::assign_modes(&inv, &cfg, &facts, Reasons::Skip).unwrap();
        assert_eq!(modes.dra.pools[0].devices.len(), n);
        let ctx = DraContext {
            driver: DRIVER.into(),
            node: NODE.into(),
            state_dir: host.state.path().to_path_buf(),
            sysfs,
            cdi_dir: dir.path().join("cdi"),
            devinfo_dir: dir.path().join("devinfo"),
            alloc: Default::default(),
            rebind_timeout: Duration::from_millis(200),
        };
        let dirs = SocketDirs {
            plugins_registry: dir.path().join("plugins_registry"),
            plugins: dir.path().join("plugins"),
        };
        let claims = Arc::new(Table::default());
        let telemetry = Arc::new(Telemetry::default());
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(modes.dra));
        let plugin = Arc::new(DraPlugin {
            ctx: ctx.clone(),
            claims: claims.clone(),
            pools: rx,
            lock: Default::default(),
            telemetry: Some(telemetry.clone()),
        });
        let server = serve::start(plugin, &dirs).unwrap();
        Self {
            host,
            dir,
            ctx,
            dirs,
            claims,
            telemetry,
            server: Some(server),
        }
    }

    /// kubelet's plugin watcher, then a client on the endpoint it named.
    pub async fn kubelet(&self, version: &str) -> DraClient {
        let found = discover_plugins(&self.dirs.plugins_registry).await.unwrap();
        assert_eq!(found.len(), 1);
        DraClient::connect(Path::new(&found[0].info.endpoint), version)
            .await
            .unwrap()
    }

    /// Adds claim `uid` with `devices` (request, VF index) and claim
    /// parameters `params` (merged over apiVersion/kind).
    pub fn claim(&self, uid: &str, devices: &[(&str, usize)], params: Value) {
        let mut p = json!({"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig"});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        let a = ClaimAllocation {
            claim: claim_ref(uid),
            devices: devices
                .iter()
                .map(|(r, i)| AllocatedDevice {
                    request: r.to_string(),
                    pool: NODE.into(),
                    device: device_name(self.pci(*i).parse().unwrap()),
                })
                .collect(),
            config: vec![OpaqueConfig {
                requests: vec![],
                source: ConfigSource::Claim,
                parameters: p,
            }],
        };
        self.claims.0.lock().unwrap().insert(uid.into(), a);
    }

    pub fn forget(&self, uid: &str) {
        self.claims.0.lock().unwrap().remove(uid);
    }

    pub fn pci(&self, i: usize) -> String {
        self.host.vfs[i].pci.clone()
    }

    pub fn record(&self, uid: &str) -> PathBuf {
        self.host
            .state
            .path()
            .join(format!("dra/claims/{uid}.json"))
    }

    pub fn cdi_spec(&self, uid: &str) -> PathBuf {
        self.ctx.cdi_dir.join(format!("{DRIVER}-{uid}.json"))
    }

    pub fn devinfo(&self, i: usize) -> PathBuf {
        self.ctx
            .devinfo_dir
            .join(format!("intel.com-dra_net-{}-device.json", self.pci(i)))
    }

    /// The device-info file of VF `i` under claim `uid`'s name.
    pub fn devinfo_by_claim(&self, uid: &str, i: usize) -> PathBuf {
        let name = claim_ref(uid).name;
        self.ctx
            .devinfo_dir
            .join(format!("{name}-{}-device.json", self.pci(i)))
    }

    pub fn read_json(p: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }
}

pub fn claim_ref(uid: &str) -> ClaimRef {
    ClaimRef {
        namespace: "ns".into(),
        name: format!("claim-{uid}"),
        uid: uid.into(),
    }
}

/// kubelet's name for a claim.
pub fn id(uid: &str) -> (String, String, String) {
    let c = claim_ref(uid);
    (c.namespace, c.name, c.uid)
}
