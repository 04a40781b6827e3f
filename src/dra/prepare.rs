//! NodePrepareResources, decided as data: which VFs a claim's allocation
//! names on this node, the config each gets, and (given what was observed
//! on the node) what prepare will change and how to undo it. Pure; the
//! effects live in [`super::prepare_run`].

use super::claim_config::{self, ClaimConfigError, VfConfig, VfDriver};
use super::record::{ClaimRecord, DeviceRecord, PfRef};
use super::{ClaimAllocation, device_pci};
use crate::netlink::vf::{VfSetting, VfState, VlanProto};
use crate::pools::{Pool, PoolDevice, Pools};

/// One allocated device, found in this node's DRA pools, with its config.
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePlan {
    /// The claim's request.
    pub request: String,
    /// The pool (this node).
    pub pool: String,
    /// The device name.
    pub device: String,
    /// The DRA pool it is in, holding only this device.
    pub dra_pool: Pool,
    /// The merged config of its request.
    pub config: VfConfig,
}

impl DevicePlan {
    /// The device as the pools saw it.
    pub fn dev(&self) -> &PoolDevice {
        &self.dra_pool.devices[0]
    }
}

/// Why a claim cannot be prepared on this node; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The allocation names another pool than this node's.
    #[error(
        "device {device} of request {request} is in pool {pool:?}, not this node's pool {node:?}"
    )]
    WrongPool {
        /// The device.
        device: String,
        /// The request.
        request: String,
        /// Its pool.
        pool: String,
        /// This node.
        node: String,
    },
    /// The device is not (or no longer) a DRA device of this node.
    #[error("device {device:?} of request {request} is not a DRA device of this node")]
    UnknownDevice {
        /// The device.
        device: String,
        /// The request.
        request: String,
    },
    /// The claim's config is invalid.
    #[error("request {request}: {source}")]
    Config {
        /// The request.
        request: String,
        /// What is wrong.
        source: ClaimConfigError,
    },
    /// PF-side settings on a device without a PF netdev.
    #[error(
        "device {device} of request {request}: {field} is set through the PF, and the VF's PF has no netdev"
    )]
    NoPf {
        /// The device.
        device: String,
        /// The request.
        request: String,
        /// The first PF-side field asked for.
        field: &'static str,
    },
    /// The allocation has no device of this driver on this node.
    #[error("the claim has no device of this driver on this node")]
    NoDevices,
}

/// The devices of `alloc` in `dra` (this node's DRA pools), each with its
/// config. Fails on the first device or config this node cannot serve.
pub fn plan(
    alloc: &ClaimAllocation,
    node: &str,
    dra: &Pools,
) -> Result<Vec<DevicePlan>, PlanError> {
    if alloc.devices.is_empty() {
        return Err(PlanError::NoDevices);
    }
    let mut out = Vec::with_capacity(alloc.devices.len());
    for a in &alloc.devices {
        if a.pool != node {
            return Err(PlanError::WrongPool {
                device: a.device.clone(),
                request: a.request.clone(),
                pool: a.pool.clone(),
                node: node.into(),
            });
        }
        let unknown = || PlanError::UnknownDevice {
            device: a.device.clone(),
            request: a.request.clone(),
        };
        let pci = device_pci(&a.device).ok_or_else(unknown)?;
        let (pool, dev) = dra
            .pools
            .iter()
            .find_map(|p| p.devices.iter().find(|d| d.view.pci == pci).map(|d| (p, d)))
            .ok_or_else(unknown)?;
        let config = claim_config::resolve(&alloc.config, &a.request).map_err(|source| {
            PlanError::Config {
                request: a.request.clone(),
                source,
            }
        })?;
        let pf_field = [
            ("vlan", config.vlan.is_some()),
            ("mac", config.mac.is_some()),
            ("trust", config.trust.is_some()),
            ("spoofChk", config.spoof_chk.is_some()),
        ]
        .into_iter()
        .find_map(|(f, set)| set.then_some(f));
        if let Some(field) = pf_field
            && (dev.view.pf_netdev.is_none() || dev.view.vf_index.is_none())
        {
            return Err(PlanError::NoPf {
                device: a.device.clone(),
                request: a.request.clone(),
                field,
            });
        }
        out.push(DevicePlan {
            request: a.request.clone(),
            pool: a.pool.clone(),
            device: a.device.clone(),
            dra_pool: Pool {
                config: pool.config.clone(),
                devices: vec![dev.clone()],
            },
            config,
        });
    }
    Ok(out)
}

/// The records of other claims that still hold a VF `alloc` names, with
/// that VF: the scheduler gave it away again, so the old claim is gone or
/// about to be, but its record would undo the VF under the new claim.
pub fn holders<'a>(
    records: &'a [ClaimRecord],
    alloc: &ClaimAllocation,
) -> Vec<(crate::pci::PciAddress, &'a ClaimRecord)> {
    let wanted: Vec<_> = alloc
        .devices
        .iter()
        .filter_map(|d| device_pci(&d.device))
        .collect();
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.claim.uid != alloc.claim.uid) {
        if let Some(d) = r.devices.iter().find(|d| wanted.contains(&d.pci)) {
            out.push((d.pci, r));
        }
    }
    out
}

/// Drivers that leave a VF without a netdev (DPDK's).
pub fn is_userspace(driver: Option<&str>) -> bool {
    matches!(driver, Some("vfio-pci" | "uio_pci_generic" | "igb_uio"))
}

/// What the node looked like before prepare, for one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Bound driver now.
    pub driver: Option<String>,
    /// The VF's netdev in the host, when it has one.
    pub netdev: Option<String>,
    /// Its MTU.
    pub mtu: Option<u32>,
    /// The PF's driver.
    pub pf_driver: Option<String>,
    /// The PF's view of the VF (read only when PF-side settings are asked).
    pub saved_vf: Option<VfState>,
}

/// The PF-side settings a config asks for, in the order they are applied.
pub fn vf_settings(c: &VfConfig) -> Vec<VfSetting> {
    let mut s = Vec::new();
    if let Some(m) = c.mac {
        s.push(VfSetting::Mac(m.0));
    }
    if let Some(v) = c.vlan {
        s.push(VfSetting::Vlan {
            vlan: v.into(),
            qos: 0,
            proto: VlanProto::Dot1Q,
        });
    }
    if let Some(b) = c.spoof_chk {
        s.push(VfSetting::SpoofChk(b));
    }
    if let Some(b) = c.trust {
        s.push(VfSetting::Trust(b));
    }
    s
}

/// The driver kind a device is rebound to, if its config asks for the
/// kind it does not have.
pub fn rebind(c: &VfConfig, driver: Option<&str>) -> Option<VfDriver> {
    match c.driver? {
        VfDriver::VfioPci if driver != Some("vfio-pci") => Some(VfDriver::VfioPci),
        VfDriver::Netdevice if driver.is_none() || is_userspace(driver) => {
            Some(VfDriver::Netdevice)
        }
        _ => None,
    }
}

/// The record of one device before anything changes: its originals and
/// the changes prepare is about to make. `cdi_ids` are filled in by the
/// caller from [`super::cdi`].
pub fn device_record(p: &DevicePlan, obs: &Observed) -> DeviceRecord {
    let v = &p.dev().view;
    let rebound = rebind(&p.config, obs.driver.as_deref());
    let settings = vf_settings(&p.config);
    let pf = (!settings.is_empty())
        .then(|| v.pf_netdev.clone())
        .flatten()
        .map(|name| PfRef {
            name,
            driver: obs.pf_driver.clone().unwrap_or_default(),
        });
    // After a rebind to the kernel driver the netdev is new and goes back
    // with the rebind; only an existing netdev needs its MTU restored.
    let (netdev, original_mtu) = match (p.config.mtu, rebound) {
        (Some(_), None) => (obs.netdev.clone(), obs.mtu),
        _ => (None, None),
    };
    DeviceRecord {
        request: p.request.clone(),
        pool: p.pool.clone(),
        device: p.device.clone(),
        pci: v.pci,
        cdi_ids: Vec::new(),
        original_driver: obs.driver.clone(),
        rebound: rebound.map(|d| d.as_str().to_string()),
        pf,
        vf_index: v.vf_index,
        saved_vf: obs.saved_vf.clone(),
        vf_settings: settings,
        netdev,
        original_mtu,
        mtu: p.config.mtu,
    }
}

#[cfg(test)]
#[path = "prepare_tests.rs"]
mod tests;
