//! What a prepared claim hands the container, as data: one CDI spec per
//! claim (kind `<driver>/vf`), the CDI device IDs kubelet gets back for
//! each device, and the device-info files Multus reads. The env and
//! device nodes are the device plugin's Allocate's own
//! ([`crate::agent::allocate`]), so a DPDK application reads
//! `PCIDEVICE_<PREFIX>_<NAME>` the same way under either mode.
//!
//! CDI devices: `<uid>-<request>` carries the env of one request's
//! devices (attached to that request's first device, so a container
//! using only that request gets it once); `<uid>-<device>` carries a
//! device's nodes (vfio) and exists only when it has some, because CDI
//! refuses a device with no edits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::prepare::DevicePlan;
use crate::agent::allocate::{self, AllocateOptions};
use crate::pools::Pool;

/// The CDI spec version written (the device plugin writes the same).
pub const CDI_VERSION: &str = "0.6.0";

/// The CDI kind of this driver's devices.
pub fn kind(driver: &str) -> String {
    format!("{driver}/vf")
}

/// The claim's spec file in `cdi_dir`. The UID was checked by
/// [`super::record::valid_uid`] and the driver is a DNS subdomain.
pub fn spec_path(cdi_dir: &Path, driver: &str, uid: &str) -> PathBuf {
    cdi_dir.join(format!("{driver}-{uid}.json"))
}

/// A prepared claim's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimOutput {
    /// The CDI spec.
    pub spec: Value,
    /// CDI device IDs per device, in the plans' order.
    pub ids: Vec<Vec<String>>,
    /// Device-info files: (file name, JSON).
    pub devinfo: Vec<(String, String)>,
}

/// The outputs of a claim whose devices are `plans`, each bound to
/// `drivers[i]` once prepared.
pub fn claim_output(
    driver: &str,
    uid: &str,
    plans: &[DevicePlan],
    drivers: &[Option<String>],
    opts: AllocateOptions,
) -> ClaimOutput {
    let kind = kind(driver);
    let opts = AllocateOptions { cdi: false, ..opts };
    // Each device as it will be once prepared (its driver decides the
    // vfio nodes); the scheduler already chose it, so health is moot.
    let pools: Vec<Pool> = plans
        .iter()
        .zip(drivers)
        .map(|(p, d)| {
            let mut pool = p.dra_pool.clone();
            pool.devices[0].view.driver = d.clone();
            pool.devices[0].unhealthy = None;
            pool
        })
        .collect();
    let mut cdi_devices = Vec::new();
    let mut ids = vec![Vec::new(); plans.len()];
    let mut devinfo = Vec::new();
    // Requests in first-seen order; within each, devices by DRA pool.
    let mut requests: Vec<&str> = Vec::new();
    for p in plans {
        if !requests.contains(&p.request.as_str()) {
            requests.push(&p.request);
        }
    }
    for req in requests {
        let idx: Vec<usize> = (0..plans.len())
            .filter(|&i| plans[i].request == req)
            .collect();
        let mut by_pool: BTreeMap<String, Pool> = BTreeMap::new();
        for &i in &idx {
            let p = &pools[i];
            by_pool
                .entry(p.resource())
                .and_modify(|acc| acc.devices.extend(p.devices.iter().cloned()))
                .or_insert_with(|| p.clone());
        }
        let mut env = Vec::new();
        for pool in by_pool.values() {
            let pci_ids: Vec<String> = pool
                .devices
                .iter()
                .map(|d| d.view.pci.to_string())
                .collect();
            // Every device is in the pool and healthy, so this cannot fail.
            if let Ok(a) = allocate::allocate(pool, &pci_ids, opts) {
                env.extend(a.envs.into_iter().map(|(k, v)| format!("{k}={v}")));
                devinfo.extend(a.devinfo);
            }
        }
        let name = format!("{uid}-{}", req.replace('/', "_"));
        cdi_devices.push(json!({ "name": name, "containerEdits": { "env": env } }));
        ids[idx[0]].push(format!("{kind}={name}"));
    }
    for (i, (p, pool)) in plans.iter().zip(&pools).enumerate() {
        let nodes: Vec<Value> = allocate::device_nodes(&pool.devices[0], opts)
            .into_iter()
            .map(|n| json!({ "path": n.path, "permissions": n.permissions }))
            .collect();
        if nodes.is_empty() {
            continue;
        }
        let name = format!("{uid}-{}", p.device);
        cdi_devices.push(json!({ "name": name, "containerEdits": { "deviceNodes": nodes } }));
        ids[i].push(format!("{kind}={name}"));
    }
    ClaimOutput {
        spec: json!({ "cdiVersion": CDI_VERSION, "kind": kind, "devices": cdi_devices }),
        ids,
        devinfo,
    }
}
