//! Resolves a policy against an inventory into the desired state of each
//! selected PF and VF, checking everything that depends on the node
//! (selectors that match nothing, numVfs above total, entries that
//! disagree about one PF or VF). Pure: no I/O.

use std::collections::BTreeMap;

use super::PlanError;
use super::facts::HostFacts;
use super::policy::{DeviceType, MacAddr, Policy, PolicyEntry};
use crate::inventory::{Inventory, Pf};
use crate::pci::PciAddress;

/// What one PF should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfTarget {
    /// The PF.
    pub pf: PciAddress,
    /// `numVfs`, and the entry that set it.
    pub num_vfs: u32,
    /// The PF netdev's MTU, when set.
    pub mtu: Option<u32>,
    /// True when every entry touching the PF allows touching a PF with the
    /// default route or primary address.
    pub force: bool,
    /// The entries (indexes into `policies`) that select this PF.
    pub entries: Vec<usize>,
    /// Desired state of each selected VF, by index.
    pub vfs: BTreeMap<u32, VfTarget>,
}

/// What one VF should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfTarget {
    /// Driver class.
    pub device_type: DeviceType,
    /// Netdev MTU (kernel VFs).
    pub mtu: Option<u32>,
    /// Admin MAC pinned through the PF.
    pub mac: Option<MacAddr>,
    /// The entry that selected it.
    pub entry: usize,
}

/// The PFs an entry selects, each with the VF indexes it covers (`None`:
/// all of them). Every selector item must match some PF on its own.
fn select(
    i: usize,
    e: &PolicyEntry,
    inv: &Inventory,
    facts: &HostFacts,
    errors: &mut Vec<PlanError>,
) -> Vec<(PciAddress, Option<crate::vfrange::VfIndexSet>)> {
    let pf_name = |pf: &Pf| pf.netdev.as_ref().map(|n| n.name.clone());
    for (j, sel) in e.pf_names.iter().enumerate() {
        if !inv
            .pfs
            .iter()
            .any(|pf| pf_name(pf).is_some_and(|n| sel.names_pf(&n)))
        {
            let field = format!("policies[{i}].pfNames[{j}]");
            errors.push(match facts.non_sriov_interface(&sel.pf) {
                Some(what) => PlanError::NotSriov { field, what },
                None => PlanError::NoMatch {
                    field,
                    value: sel.pf.clone(),
                },
            });
        }
    }
    for (j, addr) in e.root_devices.iter().enumerate() {
        if inv.pf(*addr).is_none() {
            let field = format!("policies[{i}].rootDevices[{j}]");
            errors.push(if facts.other_pci.contains(addr) {
                PlanError::NotSriov {
                    field,
                    what: addr.to_string(),
                }
            } else {
                PlanError::NoMatch {
                    field,
                    value: addr.to_string(),
                }
            });
        }
    }
    let mut out = Vec::new();
    for pf in &inv.pfs {
        if !e.root_devices.is_empty() && !e.root_devices.contains(&pf.pci_address) {
            continue;
        }
        if let Some(v) = e.vendor {
            let ids = pf.ids.as_ref();
            if ids.map(|x| x.vendor) != Some(v.0) {
                continue;
            }
            if e.device_id
                .is_some_and(|d| ids.map(|x| x.device) != Some(d.0))
            {
                continue;
            }
        }
        let vfs = if e.pf_names.is_empty() {
            None
        } else {
            let Some(name) = pf_name(pf) else { continue };
            let named: Vec<_> = e.pf_names.iter().filter(|s| s.names_pf(&name)).collect();
            if named.is_empty() {
                continue;
            }
            if named.iter().any(|s| s.vfs.is_none()) {
                None
            } else {
                let ranges = named
                    .iter()
                    .flat_map(|s| {
                        s.vfs
                            .as_ref()
                            .map(|v| v.ranges().to_vec())
                            .unwrap_or_default()
                    })
                    .collect();
                Some(crate::vfrange::VfIndexSet::from_ranges(ranges))
            }
        };
        out.push((pf.pci_address, vfs));
    }
    if out.is_empty() && errors.is_empty() {
        errors.push(PlanError::NoMatch {
            field: format!("policies[{i}]"),
            value: "its selectors together".into(),
        });
    }
    out
}

/// Resolves `policy` against `inv`. All problems are collected, so a user
/// sees every mistake at once.
pub fn resolve(
    policy: &Policy,
    inv: &Inventory,
    facts: &HostFacts,
) -> Result<Vec<PfTarget>, Vec<PlanError>> {
    let mut errors = Vec::new();
    let mut targets: BTreeMap<PciAddress, PfTarget> = BTreeMap::new();
    for (i, e) in policy.policies.iter().enumerate() {
        let mut entry_errors = Vec::new();
        let selected = select(i, e, inv, facts, &mut entry_errors);
        errors.append(&mut entry_errors);
        if !e.macs.is_empty() && selected.len() != 1 {
            errors.push(PlanError::MacsNeedOnePf {
                field: format!("policies[{i}].macs"),
                count: selected.len(),
            });
        }
        for (addr, range) in selected {
            let Some(pf) = inv.pf(addr) else { continue };
            if let Err(e) = merge(&mut targets, i, e, pf, range.as_ref()) {
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        Ok(targets.into_values().collect())
    } else {
        Err(errors)
    }
}

fn merge(
    targets: &mut BTreeMap<PciAddress, PfTarget>,
    i: usize,
    e: &PolicyEntry,
    pf: &Pf,
    range: Option<&crate::vfrange::VfIndexSet>,
) -> Result<(), PlanError> {
    let addr = pf.pci_address;
    if e.num_vfs > pf.total_vfs {
        return Err(PlanError::TooManyVfs {
            field: format!("policies[{i}].numVfs"),
            num: e.num_vfs,
            total: pf.total_vfs,
            pf: addr,
        });
    }
    if let Some(max) = range.and_then(|r| r.max()).filter(|&m| m >= e.num_vfs) {
        return Err(PlanError::RangeBeyondNumVfs {
            field: format!("policies[{i}].pfNames"),
            index: max,
            num: e.num_vfs,
            pf: addr,
        });
    }
    if !e.macs.is_empty() && pf.netdev.is_none() {
        return Err(PlanError::NoPfNetdev {
            field: format!("policies[{i}].macs"),
            pf: addr,
        });
    }
    let t = targets.entry(addr).or_insert_with(|| PfTarget {
        pf: addr,
        num_vfs: e.num_vfs,
        mtu: None,
        force: true,
        entries: Vec::new(),
        vfs: BTreeMap::new(),
    });
    if let Some(&first) = t.entries.first()
        && t.num_vfs != e.num_vfs
    {
        return Err(PlanError::NumVfsConflict {
            field: format!("policies[{i}].numVfs"),
            num: e.num_vfs,
            pf: addr,
            other: first,
            other_num: t.num_vfs,
        });
    }
    if let Some(m) = e.mtu {
        match t.mtu {
            Some(prev) if prev != m => {
                return Err(PlanError::Conflict {
                    field: format!("policies[{i}].mtu"),
                    what: format!("PF {addr} mtu {m}"),
                    other: format!("mtu {prev} from another entry"),
                });
            }
            _ => t.mtu = Some(m),
        }
    }
    t.force &= e.force;
    t.entries.push(i);
    for index in (0..e.num_vfs).filter(|x| range.is_none_or(|r| r.contains(*x))) {
        let want = VfTarget {
            device_type: e.device_type,
            mtu: e.vf_mtu,
            mac: e.macs.get(&index).copied(),
            entry: i,
        };
        if let Some(prev) = t.vfs.get(&index) {
            if prev.device_type != want.device_type || prev.mtu != want.mtu {
                return Err(PlanError::Conflict {
                    field: format!("policies[{i}].pfNames"),
                    what: format!("VF {index} of {addr} as {}", describe(&want)),
                    other: format!("{} in policies[{}]", describe(prev), prev.entry),
                });
            }
            if want.mac.is_none() {
                continue;
            }
        }
        t.vfs.insert(index, want);
    }
    Ok(())
}

fn describe(v: &VfTarget) -> String {
    match v.mtu {
        Some(m) => format!("deviceType {} vfMtu {m}", v.device_type),
        None => format!("deviceType {}", v.device_type),
    }
}
