//! Allocate, decided as data: for one container's device IDs, the env,
//! device nodes, CDI names and Device Info files to hand back. Pure; the
//! gRPC server converts the result and writes the files.

use std::collections::BTreeMap;

use serde_json::json;

use crate::pools::{Pool, PoolDevice};

/// Why a container's request cannot be served; the message names the ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    /// The ID is not a device of this pool.
    #[error("device {id:?} is not in pool {resource}")]
    UnknownDevice {
        /// The requested ID.
        id: String,
        /// The pool.
        resource: String,
    },
    /// The device is in the pool but unhealthy.
    #[error("device {id} of pool {resource} is unhealthy: {why}")]
    UnhealthyDevice {
        /// The requested ID.
        id: String,
        /// The pool.
        resource: String,
        /// Why.
        why: String,
    },
    /// An empty request.
    #[error("allocate request for pool {resource} names no devices")]
    NoDevices {
        /// The pool.
        resource: String,
    },
}

/// Host-wide switches that change what Allocate returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateOptions {
    /// Return CDI device names instead of device specs.
    pub cdi: bool,
    /// VFIO groups are `/dev/vfio/noiommu-<n>`.
    pub vfio_noiommu: bool,
}

/// A device node for the container (host path = container path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceNode {
    /// Path on host and in the container.
    pub path: String,
    /// cgroup permissions (`rw`).
    pub permissions: String,
}

/// What one container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerAllocation {
    /// Environment variables.
    pub envs: BTreeMap<String, String>,
    /// Device nodes (empty in CDI mode).
    pub devices: Vec<DeviceNode>,
    /// Fully qualified CDI device names (CDI mode only).
    pub cdi_devices: Vec<String>,
    /// Annotations (CDI mode only).
    pub annotations: BTreeMap<String, String>,
    /// Device Info Spec files: (file name, JSON).
    pub devinfo: Vec<(String, String)>,
}

/// `PCIDEVICE_<PREFIX>_<NAME>`: upper case, `.` and `/` become `_`.
pub fn env_name(resource: &str) -> String {
    let mut s = String::from("PCIDEVICE_");
    s.extend(resource.chars().map(|c| match c {
        '.' | '/' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

const VFIO_CONTAINER: &str = "/dev/vfio/vfio";

fn vfio_group_path(group: u32, noiommu: bool) -> String {
    if noiommu {
        format!("/dev/vfio/noiommu-{group}")
    } else {
        format!("/dev/vfio/{group}")
    }
}

fn is_vfio(d: &PoolDevice) -> bool {
    d.view.driver.as_deref() == Some("vfio-pci")
}

/// The device nodes one device needs, in a stable order.
pub fn device_nodes(d: &PoolDevice, opts: AllocateOptions) -> Vec<DeviceNode> {
    let mut paths = Vec::new();
    if is_vfio(d) {
        paths.push(VFIO_CONTAINER.to_string());
        if let Some(g) = d.view.iommu_group {
            paths.push(vfio_group_path(g, opts.vfio_noiommu));
        }
    }
    if d.need_vhost_net {
        paths.push("/dev/vhost-net".into());
        paths.push("/dev/net/tun".into());
    }
    if d.is_rdma && !d.rdma.is_empty() {
        paths.push("/dev/infiniband/rdma_cm".into());
        paths.extend(d.rdma_chars.iter().map(|c| format!("/dev/infiniband/{c}")));
    }
    paths
        .into_iter()
        .map(|path| DeviceNode {
            path,
            permissions: "rw".into(),
        })
        .collect()
}

/// The per-device `_INFO` entry.
fn info(d: &PoolDevice, opts: AllocateOptions) -> serde_json::Value {
    let id = d.view.pci.to_string();
    let mut v = json!({ "generic": { "deviceID": id } });
    if is_vfio(d) {
        let mut vfio = json!({ "mount": VFIO_CONTAINER });
        if let Some(g) = d.view.iommu_group {
            vfio["dev-mount"] = json!(vfio_group_path(g, opts.vfio_noiommu));
        }
        v["vfio"] = vfio;
    }
    if d.is_rdma && !d.rdma.is_empty() {
        let mut rdma = json!({ "rdma_cm": "/dev/infiniband/rdma_cm" });
        for c in &d.rdma_chars {
            let key = c.trim_end_matches(|ch: char| ch.is_ascii_digit());
            rdma[key] = json!(format!("/dev/infiniband/{c}"));
        }
        v["rdma"] = rdma;
    }
    v
}

/// CDI device name `<prefix>/<name>=<id>`.
pub fn cdi_name(resource: &str, id: &str) -> String {
    format!("{resource}={id}")
}

/// Device Info Spec file name: `<prefix>-<name>-<pci>-device.json`.
pub fn devinfo_file_name(resource: &str, id: &str) -> String {
    format!("{}-{id}-device.json", resource.replace('/', "-"))
}

fn devinfo(d: &PoolDevice) -> String {
    let mut pci = json!({ "pci-address": d.view.pci.to_string() });
    if let Some(pf) = d.view.pf {
        pci["pf-pci-address"] = json!(pf.to_string());
    }
    if let Some(r) = d.rdma.first().filter(|_| d.is_rdma) {
        pci["rdma-device"] = json!(r);
    }
    json!({ "type": "pci", "version": "1.1.0", "pci": pci }).to_string()
}

/// Builds one container's allocation; every ID must be a healthy device
/// of `pool`.
pub fn allocate(
    pool: &Pool,
    ids: &[String],
    opts: AllocateOptions,
) -> Result<ContainerAllocation, AllocateError> {
    let resource = pool.resource();
    if ids.is_empty() {
        return Err(AllocateError::NoDevices { resource });
    }
    let mut devs = Vec::with_capacity(ids.len());
    for id in ids {
        let d = pool
            .device(id)
            .ok_or_else(|| AllocateError::UnknownDevice {
                id: id.clone(),
                resource: resource.clone(),
            })?;
        if let Some(why) = &d.unhealthy {
            return Err(AllocateError::UnhealthyDevice {
                id: id.clone(),
                resource: resource.clone(),
                why: why.clone(),
            });
        }
        devs.push(d);
    }
    let env = env_name(&resource);
    let mut out = ContainerAllocation::default();
    out.envs.insert(env.clone(), ids.join(","));
    let infos: serde_json::Map<String, serde_json::Value> = devs
        .iter()
        .map(|d| (d.view.pci.to_string(), info(d, opts)))
        .collect();
    out.envs.insert(
        format!("{env}_INFO"),
        serde_json::Value::Object(infos).to_string(),
    );
    for d in &devs {
        let id = d.view.pci.to_string();
        if opts.cdi {
            out.cdi_devices.push(cdi_name(&resource, &id));
        } else {
            for n in device_nodes(d, opts) {
                if !out.devices.contains(&n) {
                    out.devices.push(n);
                }
            }
        }
        out.devinfo
            .push((devinfo_file_name(&resource, &id), devinfo(d)));
    }
    if opts.cdi {
        let key = format!("cdi.k8s.io/{}", resource.replace('/', "_"));
        out.annotations.insert(key, out.cdi_devices.join(","));
    }
    Ok(out)
}

/// A CDI spec (version 0.6.0) for every device of `pool`: kind
/// `<prefix>/<name>`, one device per PCI address with its device nodes.
pub fn cdi_spec(pool: &Pool, opts: AllocateOptions) -> serde_json::Value {
    let devices: Vec<serde_json::Value> = pool
        .devices
        .iter()
        .map(|d| {
            let nodes: Vec<serde_json::Value> = device_nodes(d, opts)
                .into_iter()
                .map(|n| json!({ "path": n.path, "permissions": n.permissions }))
                .collect();
            json!({
                "name": d.view.pci.to_string(),
                "containerEdits": { "deviceNodes": nodes },
            })
        })
        .collect();
    json!({
        "cdiVersion": "0.6.0",
        "kind": pool.resource(),
        "devices": devices,
    })
}

#[cfg(test)]
#[path = "allocate_tests.rs"]
mod tests;
