//! What `fastpath pools` shows when a config has both lists: the
//! device-plugin and the DRA pools side by side, every device's mode and
//! reasons from both lists, and every device both lists select.

use serde::Serialize;

use super::modes::{ModeOverlap, ModePools};
use super::{Pool, Pools};
use crate::pci::PciAddress;

/// How a device is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// A `resourceList` pool: a kubelet device plugin.
    DevicePlugin,
    /// A `draPools` entry: a DRA device in a ResourceSlice.
    Dra,
}

impl Mode {
    /// The words the table uses.
    pub fn label(self) -> &'static str {
        match self {
            Mode::DevicePlugin => "device plugin",
            Mode::Dra => "DRA",
        }
    }
}

/// Where one device landed, in which mode, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeAssignment {
    /// The device.
    pub pci: PciAddress,
    /// Its `resourceList` pool (`<prefix>/<name>`), if any.
    pub pool: Option<String>,
    /// Its `draPools` pool (`<prefix>/<name>`), if any.
    pub dra_pool: Option<String>,
    /// The mode it is served in; none when it is in no pool, or in both
    /// (a config error, in [`ModeReport::overlaps`]).
    pub mode: Option<Mode>,
    /// Every entry's verdict, `resourceList` first, then `draPools`.
    pub reasons: Vec<String>,
}

/// A device both lists select, with the error the agent stops with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverlapView {
    /// The device.
    pub device: PciAddress,
    /// The `resourceList` pool (`<prefix>/<name>`).
    pub device_plugin_pool: String,
    /// The `draPools` entry's `resourceName`.
    pub dra_pool: String,
    /// The agent's error message.
    pub error: String,
}

/// The dry run of a whole config.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeReport {
    /// The `resourceList` pools, in file order.
    pub pools: Vec<Pool>,
    /// The `draPools` pools, in file order.
    pub dra_pools: Vec<Pool>,
    /// One per candidate device, by address.
    pub assignments: Vec<ModeAssignment>,
    /// Devices both lists select; the agent refuses such a config.
    pub overlaps: Vec<OverlapView>,
    /// Config-level differences from the reference.
    pub notes: Vec<String>,
}

/// Joins both lists' assignments (each list assigned every candidate
/// device in the same address order).
pub fn report(modes: ModePools, overlaps: &[ModeOverlap]) -> ModeReport {
    let ModePools { device_plugin, dra } = modes;
    let Pools {
        pools,
        assignments,
        notes,
    } = device_plugin;
    let mut dra_by_pci: std::collections::BTreeMap<PciAddress, super::Assignment> =
        dra.assignments.into_iter().map(|a| (a.pci, a)).collect();
    let assignments = assignments
        .into_iter()
        .map(|a| {
            let d = dra_by_pci.remove(&a.pci);
            let dra_pool = d.as_ref().and_then(|d| d.pool.clone());
            let mode = match (&a.pool, &dra_pool) {
                (Some(_), None) => Some(Mode::DevicePlugin),
                (None, Some(_)) => Some(Mode::Dra),
                _ => None,
            };
            let mut reasons = a.reasons;
            if let Some(d) = d
                && d.reasons.first() != reasons.first()
            {
                // An ineligible device has the same one reason in both.
                reasons.extend(d.reasons);
            }
            ModeAssignment {
                pci: a.pci,
                pool: a.pool,
                dra_pool,
                mode,
                reasons,
            }
        })
        .collect();
    ModeReport {
        pools,
        dra_pools: dra.pools,
        assignments,
        overlaps: overlaps
            .iter()
            .map(|o| OverlapView {
                device: o.device,
                device_plugin_pool: o.device_plugin_pool.clone(),
                dra_pool: o.dra_pool.clone(),
                error: o.to_string(),
            })
            .collect(),
        notes,
    }
}
