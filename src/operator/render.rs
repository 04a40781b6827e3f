//! The merged per-PF wishes as the two inputs fastpath already takes: the
//! node policy provisioning applies, and the device-plugin config (one
//! pool per resourceName). Pools are rendered from the VF groups actually
//! configured (each PF and range named), not from the policies' broad
//! selectors, so a pool never offers a VF that no policy configured.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::OperatorError;
use super::merge::{IfaceSpec, VfGroup};
use crate::inventory::Inventory;
use crate::pools;
use crate::provision::policy::PolicyEntry;
use crate::provision::{DeviceType, Policy};
use crate::vfrange::{PfVfSelector, VfIndexSet};

/// One group as a selector that names only its VFs; `None` when the PF
/// has no netdev name to carry a partial range.
fn pf_selector(iface: &IfaceSpec, g: &VfGroup, num_vfs: u32) -> Option<(Vec<String>, String)> {
    let whole = g.range == (0, num_vfs.saturating_sub(1));
    let root = iface.pf.to_string();
    match &iface.name {
        Some(n) => Some((vec![format!("{n}#{}-{}", g.range.0, g.range.1)], root)),
        None if whole => Some((Vec::new(), root)),
        None => None,
    }
}

/// The VF count provisioning is asked for: the policy's, or for an
/// externally managed PF the count it already has (fastpath then only
/// binds drivers, as the operator's daemon does).
fn target_vfs(iface: &IfaceSpec, inv: &Inventory) -> u32 {
    if iface.externally_managed {
        inv.pf(iface.pf)
            .and_then(|p| p.num_vfs)
            .unwrap_or(iface.num_vfs)
    } else {
        iface.num_vfs
    }
}

/// What the merge renders to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The node policy.
    pub policy: Policy,
    /// The device-plugin config.
    pub pools: pools::Config,
    /// The same config as the reference's JSON (what the operator would
    /// have put in its ConfigMap), for logs and `fastpath pools`.
    pub pools_json: String,
}

/// Renders `interfaces`; groups that cannot be expressed are refused.
pub fn render(
    interfaces: &[IfaceSpec],
    inv: &Inventory,
    resource_prefix: &str,
    refused: &mut Vec<OperatorError>,
) -> Result<Rendered, OperatorError> {
    let mut entries = Vec::new();
    let mut resources: BTreeMap<&str, (bool, Vec<Value>)> = BTreeMap::new();
    for iface in interfaces {
        let num_vfs = target_vfs(iface, inv);
        for g in &iface.groups {
            let Some((pf_names, root)) = pf_selector(iface, g, num_vfs) else {
                refused.push(OperatorError::NotOnNode {
                    policy: g.policy.clone(),
                    field: "spec.nicSelector".into(),
                    reason: format!(
                        "PF {} has no netdev, so VFs {}-{} cannot be told apart from its \
                         other VFs",
                        iface.pf, g.range.0, g.range.1
                    ),
                });
                continue;
            };
            entries.push(entry(iface, g, &pf_names, num_vfs));
            let mut sel = json!({ "rootDevices": [root] });
            if !pf_names.is_empty() {
                sel["pfNames"] = json!(pf_names);
            }
            if g.device_type == DeviceType::VfioPci {
                // A VF not yet rebound must not be offered as a DPDK device.
                sel["drivers"] = json!([crate::provision::plan::VFIO_PCI]);
            } else if let Some(l) = g.link_type {
                // The operator leaves linkTypes out for vfio-pci: no netdev
                // to read it from.
                sel["linkTypes"] = json!([l.selector_value()]);
            }
            if g.is_rdma {
                sel["isRdma"] = json!(true);
            }
            if g.need_vhost_net {
                sel["needVhostNet"] = json!(true);
            }
            let r = resources
                .entry(&g.resource_name)
                .or_insert((g.exclude_topology, Vec::new()));
            r.1.push(sel);
        }
    }
    let list: Vec<Value> = resources
        .into_iter()
        .map(|(name, (exclude, selectors))| {
            json!({
                "resourceName": name,
                "resourcePrefix": resource_prefix,
                "excludeTopology": exclude,
                "selectors": selectors,
            })
        })
        .collect();
    let pools_json = serde_json::to_string_pretty(&json!({ "resourceList": list }))
        .map_err(|e| OperatorError::Render(e.to_string()))?;
    let pools = pools::config::parse(&pools_json, resource_prefix)
        .map_err(|e| OperatorError::Render(e.to_string()))?;
    let policy = Policy {
        allow_no_iommu: false,
        policies: entries,
    };
    policy
        .check()
        .map_err(|e| OperatorError::Render(e.to_string()))?;
    Ok(Rendered {
        policy,
        pools,
        pools_json,
    })
}

fn entry(iface: &IfaceSpec, g: &VfGroup, pf_names: &[String], num_vfs: u32) -> PolicyEntry {
    PolicyEntry {
        name: Some(format!("SriovNetworkNodePolicy {}", g.policy)),
        pf_names: iface
            .name
            .iter()
            .filter(|_| !pf_names.is_empty())
            .map(|n| PfVfSelector {
                pf: n.clone(),
                vfs: Some(VfIndexSet::from_ranges(vec![g.range])),
            })
            .collect(),
        root_devices: vec![iface.pf],
        vendor: None,
        device_id: None,
        num_vfs,
        device_type: g.device_type,
        // An externally managed PF's MTU is someone else's; the merge has
        // already checked the policy does not ask for more.
        mtu: iface.mtu.filter(|_| !iface.externally_managed),
        vf_mtu: g.mtu.filter(|_| g.device_type == DeviceType::Netdevice),
        macs: BTreeMap::new(),
        force: false,
    }
}
