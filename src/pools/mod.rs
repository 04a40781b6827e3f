//! Pools: which device goes to which kubelet resource. [`assign`] is a pure
//! function of the inventory, the reference config and a few host facts,
//! and records for every device where it landed and why (or why nowhere).

pub mod config;
mod facts;
pub mod modes;
mod render;
pub mod report;
mod select;
mod selector;

use std::collections::BTreeMap;

use serde::Serialize;

pub use config::{AllocationPolicy, Config, ConfigError, DeviceType, ResourceConfig, Selector};
pub use facts::{DeviceFacts, FactNeeds, HostFacts};
pub use render::render_table;

use crate::inventory::{Inventory, Pf, Vf};
use crate::pci::{PciAddress, PciId};
use crate::sysfs::LinkType;

/// A candidate device flattened from the inventory: a VF, or a PF without VFs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    /// Its address (the kubelet device ID).
    pub pci: PciAddress,
    /// The PF's address (`None` when the device is itself a PF).
    pub pf: Option<PciAddress>,
    /// The PF's netdev name (the device's own for a PF).
    pub pf_netdev: Option<String>,
    /// Whether the PF's link is up (`operstate` not down).
    pub pf_link_up: bool,
    /// VF index on its PF.
    pub vf_index: Option<u32>,
    /// Vendor id.
    pub vendor: Option<PciId>,
    /// Device id.
    pub device: Option<PciId>,
    /// Bound driver.
    pub driver: Option<String>,
    /// Host netdev (absent for vfio-pci VFs and VFs inside pods).
    pub netdev: Option<String>,
    /// Link type (the PF's when the VF has no netdev).
    pub link_type: Option<LinkType>,
    /// NUMA node.
    pub numa_node: Option<u32>,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
}

/// A device in a pool, with what Allocate needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDevice {
    /// The device.
    #[serde(flatten)]
    pub view: DeviceView,
    /// RDMA device names.
    pub rdma: Vec<String>,
    /// RDMA char devices under /dev/infiniband (`uverbs3`, `umad3`).
    pub rdma_chars: Vec<String>,
    /// Index of the selector object that matched.
    pub selector: usize,
    /// From the matching selector.
    pub is_rdma: bool,
    /// From the matching selector.
    pub need_vhost_net: bool,
    /// `None` when healthy, else why not.
    pub unhealthy: Option<String>,
}

impl PoolDevice {
    /// True when kubelet may hand it out.
    pub fn healthy(&self) -> bool {
        self.unhealthy.is_none()
    }
}

/// One kubelet resource and its devices.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    /// The config entry.
    pub config: ResourceConfig,
    /// Devices in address order.
    pub devices: Vec<PoolDevice>,
}

impl Pool {
    /// `<prefix>/<name>`.
    pub fn resource(&self) -> String {
        self.config.full_name()
    }

    /// The device with this ID.
    pub fn device(&self, id: &str) -> Option<&PoolDevice> {
        self.devices.iter().find(|d| d.view.pci.to_string() == id)
    }
}

/// Where one candidate device landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// The device.
    pub pci: PciAddress,
    /// `<prefix>/<name>` of its pool.
    pub pool: Option<String>,
    /// Why it is (or is not) in a pool.
    pub reasons: Vec<String>,
}

/// The outcome of [`assign`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pools {
    /// One per config entry, in file order (possibly empty).
    pub pools: Vec<Pool>,
    /// One per candidate device.
    pub assignments: Vec<Assignment>,
    /// Config-level differences from the reference.
    pub notes: Vec<String>,
}

impl Pools {
    /// The pool named `<prefix>/<name>`.
    pub fn pool(&self, resource: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.resource() == resource)
    }
}

fn link_up(operstate: Option<&str>) -> bool {
    !matches!(operstate, Some("down" | "lowerlayerdown" | "notpresent"))
}

fn view_vf(pf: &Pf, vf: &Vf) -> DeviceView {
    DeviceView {
        pci: vf.pci_address,
        pf: Some(pf.pci_address),
        pf_netdev: pf.netdev.as_ref().map(|n| n.name.clone()),
        pf_link_up: link_up(pf.netdev.as_ref().and_then(|n| n.operstate.as_deref())),
        vf_index: Some(vf.index),
        vendor: vf.ids.map(|i| i.vendor),
        device: vf.ids.map(|i| i.device),
        driver: vf.driver.clone(),
        netdev: vf.netdev.as_ref().map(|n| n.name.clone()),
        link_type: vf.link_type,
        numa_node: vf.numa_node,
        iommu_group: vf.iommu_group,
    }
}

fn view_pf(pf: &Pf) -> DeviceView {
    DeviceView {
        pci: pf.pci_address,
        pf: None,
        pf_netdev: pf.netdev.as_ref().map(|n| n.name.clone()),
        pf_link_up: link_up(pf.netdev.as_ref().and_then(|n| n.operstate.as_deref())),
        vf_index: None,
        vendor: pf.ids.map(|i| i.vendor),
        device: pf.ids.map(|i| i.device),
        driver: pf.driver.clone(),
        netdev: pf.netdev.as_ref().map(|n| n.name.clone()),
        link_type: pf.netdev.as_ref().and_then(|n| n.link_type),
        numa_node: pf.numa_node,
        iommu_group: None,
    }
}

/// Candidate devices: every VF, and every PF that has no VFs (the
/// reference does not offer a PF that has VFs).
pub fn candidates(inv: &Inventory) -> Vec<DeviceView> {
    let mut out: Vec<DeviceView> = Vec::new();
    for pf in &inv.pfs {
        if pf.vfs.is_empty() && pf.num_vfs.unwrap_or(0) == 0 {
            out.push(view_pf(pf));
        }
        out.extend(pf.vfs.iter().map(|vf| view_vf(pf, vf)));
    }
    out.sort_by_key(|d| d.pci);
    out
}

/// Why a device cannot be offered at all, before any selector runs.
fn ineligible(dev: &DeviceView, host: &HostFacts) -> Option<String> {
    if dev.driver.is_none() {
        return Some("no driver bound".into());
    }
    if let Some(nd) = &dev.netdev
        && host.default_route_interfaces.contains(nd)
    {
        let why = format!(
            "its netdev {nd} carries a default route; handing it to a pod would cut the node off"
        );
        tracing::warn!(pci = %dev.pci, "not offered: {why}");
        return Some(why);
    }
    None
}

/// Why a device is not in one pool, before it is worded.
#[derive(Debug, Clone, Copy)]
enum Miss {
    Type,
    Selectors,
}

/// Whether [`assign_with`] words why each device landed where it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasons {
    /// Every assignment says which entries and selectors matched or not
    /// (`fastpath pools`).
    Explain,
    /// Assignments carry no reasons. The agent's rescans want only the
    /// pools: wording thousands of mismatches cost milliseconds.
    Skip,
}

/// Assigns every candidate device in `inv` to the first pool whose
/// selectors match it, with the reasons. Pure: the same inputs give the
/// same pools.
pub fn assign(inv: &Inventory, cfg: &Config, host: &HostFacts) -> Pools {
    assign_with(inv, cfg, host, Reasons::Explain)
}

/// [`assign`], with reasons or without.
pub fn assign_with(inv: &Inventory, cfg: &Config, host: &HostFacts, wording: Reasons) -> Pools {
    assign_entries(
        inv,
        "resourceList",
        &cfg.resource_list,
        &cfg.notes,
        host,
        wording,
    )
}

/// [`assign_with`] over one list of entries (`resourceList` or `draPools`).
fn assign_entries(
    inv: &Inventory,
    list: &str,
    entries: &[ResourceConfig],
    notes: &[String],
    host: &HostFacts,
    wording: Reasons,
) -> Pools {
    let explain = wording == Reasons::Explain;
    let mut pools: Vec<Pool> = entries
        .iter()
        .map(|c| Pool {
            config: c.clone(),
            devices: Vec::new(),
        })
        .collect();
    let no_facts = DeviceFacts::default();
    let mut assignments = Vec::new();
    for dev in candidates(inv) {
        let facts = host.devices.get(&dev.pci).unwrap_or(&no_facts);
        if let Some(why) = ineligible(&dev, host) {
            assignments.push(Assignment {
                pci: dev.pci,
                pool: None,
                reasons: vec![why],
            });
            continue;
        }
        let mut reasons = Vec::new();
        let mut landed: Option<(usize, usize)> = None;
        for (pi, rc) in entries.iter().enumerate() {
            let hit = if !select::is_type(rc.device_type, facts) {
                Err(Miss::Type)
            } else {
                rc.selectors
                    .iter()
                    .position(|sel| select::first_mismatch(sel, &dev, facts).is_none())
                    .ok_or(Miss::Selectors)
            };
            if !explain {
                if let (Ok(si), None) = (hit, landed) {
                    landed = Some((pi, si));
                }
                continue;
            }
            let hit = hit.map_err(|miss| match miss {
                Miss::Type => select::type_mismatch(rc.device_type, facts, dev.pci),
                Miss::Selectors => rc
                    .selectors
                    .iter()
                    .enumerate()
                    .filter_map(|(si, sel)| {
                        let field = select::first_mismatch(sel, &dev, facts)?;
                        let e = select::explain(field, sel, &dev, facts);
                        Some(format!("selectors[{si}]: {e}"))
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            });
            match (hit, landed) {
                (Ok(si), None) => {
                    landed = Some((pi, si));
                    reasons.push(format!(
                        "{list}[{pi}] ({}) selectors[{si}] match",
                        rc.full_name()
                    ));
                }
                (Ok(_), Some((first, _))) => reasons.push(format!(
                    "{list}[{pi}] ({}) also matches; {list}[{first}] came first",
                    rc.full_name()
                )),
                (Err(e), None) => reasons.push(format!("{list}[{pi}] ({}): {e}", rc.full_name())),
                (Err(_), Some(_)) => {}
            }
        }
        let pool = landed.map(|(pi, si)| {
            let sel = &entries[pi].selectors[si];
            let unhealthy = (!dev.pf_link_up).then(|| {
                format!(
                    "PF {} link is down",
                    dev.pf_netdev.as_deref().unwrap_or("?")
                )
            });
            pools[pi].devices.push(PoolDevice {
                view: dev.clone(),
                rdma: facts.rdma.clone(),
                rdma_chars: facts.rdma_chars.clone(),
                selector: si,
                is_rdma: sel.is_rdma,
                need_vhost_net: sel.need_vhost_net,
                unhealthy,
            });
            pools[pi].resource()
        });
        if explain && entries.is_empty() {
            reasons.push(format!("the config has no {list} entries"));
        }
        assignments.push(Assignment {
            pci: dev.pci,
            pool,
            reasons,
        });
    }
    Pools {
        pools,
        assignments,
        notes: notes.to_vec(),
    }
}

/// `additionalInfo` for one device: `"*"` overridden key by key by the
/// device's own entry.
pub fn additional_info(rc: &ResourceConfig, pci: PciAddress) -> BTreeMap<String, String> {
    let mut out = rc.additional_info.get("*").cloned().unwrap_or_default();
    if let Some(own) = rc.additional_info.get(&pci.to_string()) {
        out.extend(own.clone());
    }
    out
}

#[cfg(test)]
mod tests;
