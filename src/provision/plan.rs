//! The provisioning plan: a pure function of (inventory, policy, held VFs,
//! host facts) to ordered steps of sysfs/netlink actions. Everything is
//! validated here, so an invalid policy fails before the first write.
//!
//! Actions on VFs that do not exist yet (being created) or netdevs that
//! appear only after a driver probe cannot be planned from this scan; they
//! are listed as `deferred`, and apply plans again after each round.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::PlanError;
pub use super::action::Action;
use super::desired::{PfTarget, VfTarget, resolve};
use super::facts::HostFacts;
use super::policy::{DeviceType, MacAddr, Policy};
use crate::inventory::{Inventory, Pf, Vf};
use crate::pci::PciAddress;

/// The driver VFs are bound to for `vfio-pci`.
pub const VFIO_PCI: &str = "vfio-pci";

/// `Unbind` from whatever driver the VF has (in undo steps).
pub const ANY_DRIVER: &str = "(any)";

/// Drivers that leave a VF without a host netdev (userspace I/O).
const USERSPACE_DRIVERS: [&str; 3] = [VFIO_PCI, "uio_pci_generic", "igb_uio"];

/// A unit of change (one PF's count, one VF's rebinding); the journal
/// records which step was reached, and recovery re-runs a whole step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Step {
    /// What the step achieves, for humans.
    pub summary: String,
    /// Its actions in order.
    pub actions: Vec<Action>,
    /// What puts things back as they were if the step fails half-way.
    #[serde(default)]
    pub undo: Vec<Action>,
}

/// Something the plan leaves alone because a pod holds a VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The held VF.
    pub vf: PciAddress,
    /// The change that waits for the pod to release it.
    pub pending: String,
}

/// An ordered plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
    /// Changes planned after the steps have run (VFs being created,
    /// netdevs appearing after a probe).
    pub deferred: Vec<String>,
    /// Changes withheld because a pod holds a VF.
    pub held: Vec<Held>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

impl Plan {
    /// True when the node is already as the policy wants (nothing to do
    /// now or later, held changes aside).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.deferred.is_empty()
    }
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Plans the changes that bring the node to `policy`. VFs in `held` are
/// never unbound or destroyed.
pub fn plan(
    inv: &Inventory,
    policy: &Policy,
    held: &BTreeSet<PciAddress>,
    facts: &HostFacts,
) -> Result<Plan, PlanErrors> {
    let targets = resolve(policy, inv, facts).map_err(PlanErrors)?;
    let mut errors = Vec::new();
    let mut out = Plan::default();
    let mut needs_vfio = false;
    let mut noiommu = false;
    for t in &targets {
        let Some(pf) = inv.pf(t.pf) else { continue };
        let before = (out.steps.len(), out.deferred.len());
        plan_pf(pf, t, held, facts, &mut out);
        let touched = out.steps.len() > before.0 || out.deferred.len() > before.1;
        for (vf_index, v) in &t.vfs {
            if v.device_type != DeviceType::VfioPci {
                continue;
            }
            let vf = pf.vfs.iter().find(|x| x.index == *vf_index);
            if vf.is_some_and(|x| x.driver.as_deref() == Some(VFIO_PCI)) {
                continue;
            }
            needs_vfio = true;
            let has_group = match vf {
                Some(x) => x.iommu_group.is_some(),
                None => facts.iommu_present,
            };
            if !has_group {
                if policy.allow_no_iommu {
                    noiommu = true;
                } else {
                    errors.push(PlanError::NoIommu {
                        field: format!("policies[{}].deviceType", v.entry),
                        vf: match vf {
                            Some(x) => x.pci_address.to_string(),
                            None => format!("VF {vf_index} of {}", t.pf),
                        },
                    });
                }
            }
        }
        if touched && !t.force {
            check_host_interface(pf, t, facts, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(PlanErrors(errors));
    }
    if needs_vfio && !facts.pci_drivers.contains(VFIO_PCI) {
        let mut load = Vec::new();
        if noiommu {
            load.push(Action::LoadModule {
                module: "vfio".into(),
                params: vec!["enable_unsafe_noiommu_mode=1".into()],
            });
        }
        load.push(Action::LoadModule {
            module: "vfio_pci".into(),
            params: Vec::new(),
        });
        out.steps.insert(
            0,
            Step {
                summary: "load vfio-pci".into(),
                actions: load,
                undo: Vec::new(),
            },
        );
    }
    if noiommu {
        out.warnings
            .push("binding vfio-pci without an IOMMU (allowNoIommu): no DMA isolation".into());
    }
    Ok(out)
}

fn check_host_interface(pf: &Pf, t: &PfTarget, facts: &HostFacts, errors: &mut Vec<PlanError>) {
    let Some(nd) = &pf.netdev else { return };
    let entry = t
        .entries
        .iter()
        .map(|i| format!("policies[{i}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if facts.default_route_interfaces.contains(&nd.name) {
        Some("the default route")
    } else if facts.primary_address_interfaces.contains(&nd.name) {
        Some("the node's primary address")
    } else {
        None
    };
    if let Some(what) = what {
        errors.push(PlanError::HostInterface {
            entry,
            pf: pf.pci_address,
            ifname: nd.name.clone(),
            what,
        });
    }
}

fn plan_pf(pf: &Pf, t: &PfTarget, held: &BTreeSet<PciAddress>, facts: &HostFacts, out: &mut Plan) {
    let addr = pf.pci_address;
    if let Some(mtu) = t.mtu {
        match &pf.netdev {
            Some(nd) if nd.mtu != Some(mtu) => out.steps.push(Step {
                summary: format!("PF {addr} ({}) mtu {mtu}", nd.name),
                actions: vec![Action::SetPfMtu {
                    pf: addr,
                    ifname: nd.name.clone(),
                    mtu,
                }],
                undo: nd
                    .mtu
                    .map(|old| Action::SetPfMtu {
                        pf: addr,
                        ifname: nd.name.clone(),
                        mtu: old,
                    })
                    .into_iter()
                    .collect(),
            }),
            Some(_) => {}
            None => out
                .warnings
                .push(format!("PF {addr} has no netdev; mtu {mtu} not set")),
        }
    }
    let current = pf.num_vfs.unwrap_or(pf.vfs.len() as u32);
    if current != t.num_vfs {
        let held_here: Vec<PciAddress> = pf
            .vfs
            .iter()
            .map(|v| v.pci_address)
            .filter(|a| held.contains(a))
            .collect();
        if held_here.is_empty() {
            let mut actions = Vec::new();
            if current != 0 {
                actions.push(Action::SetNumVfs { pf: addr, count: 0 });
            }
            if t.num_vfs != 0 {
                actions.push(Action::SetNumVfs {
                    pf: addr,
                    count: t.num_vfs,
                });
                actions.push(Action::WaitVfs {
                    pf: addr,
                    count: t.num_vfs,
                });
            }
            let mut undo = vec![Action::SetNumVfs { pf: addr, count: 0 }];
            if current != 0 {
                undo.push(Action::SetNumVfs {
                    pf: addr,
                    count: current,
                });
                undo.push(Action::WaitVfs {
                    pf: addr,
                    count: current,
                });
            }
            out.steps.push(Step {
                summary: format!("PF {addr} numVfs {current} -> {}", t.num_vfs),
                actions,
                undo,
            });
            let defaults = |v: &&VfTarget| {
                v.device_type == DeviceType::Netdevice && v.mtu.is_none() && v.mac.is_none()
            };
            for (index, v) in t.vfs.iter().filter(|(_, v)| !defaults(v)) {
                out.deferred.push(format!(
                    "VF {index} of {addr}: {} once created",
                    describe_target(v)
                ));
            }
            return;
        }
        for vf in held_here {
            out.held.push(Held {
                vf,
                pending: format!("numVfs {current} -> {} of {addr}", t.num_vfs),
            });
        }
    }
    for vf in &pf.vfs {
        let Some(v) = t.vfs.get(&vf.index) else {
            continue;
        };
        let steps = plan_vf(pf, vf, v, facts, out);
        if steps.is_empty() {
            continue;
        }
        if held.contains(&vf.pci_address) {
            for s in steps {
                out.held.push(Held {
                    vf: vf.pci_address,
                    pending: s.summary,
                });
            }
        } else {
            out.steps.extend(steps);
        }
    }
}

fn describe_target(v: &VfTarget) -> String {
    let mut s = format!("deviceType {}", v.device_type);
    if let Some(m) = v.mtu {
        s.push_str(&format!(", mtu {m}"));
    }
    if let Some(m) = v.mac {
        s.push_str(&format!(", admin MAC {m}"));
    }
    s
}

fn is_userspace(driver: Option<&str>) -> bool {
    driver.is_some_and(|d| USERSPACE_DRIVERS.contains(&d))
}

/// The steps for one existing VF (not yet filtered by `held`).
fn plan_vf(pf: &Pf, vf: &Vf, v: &VfTarget, facts: &HostFacts, out: &mut Plan) -> Vec<Step> {
    let addr = vf.pci_address;
    let driver = vf.driver.as_deref();
    let mut actions = Vec::new();
    let mut undo = Vec::new();
    let old_mac = facts.vf_admin_macs.get(&(pf.pci_address, vf.index));
    if let Some(mac) = v.mac
        && old_mac != Some(&mac.0)
    {
        actions.push(pin(pf, vf, mac));
        if let Some(old) = old_mac.filter(|m| **m != [0; 6]) {
            undo.push(pin(pf, vf, MacAddr(*old)));
        }
    }
    undo.extend(rebind_undo(addr, driver));
    match v.device_type {
        DeviceType::VfioPci if driver == Some(VFIO_PCI) => {}
        DeviceType::VfioPci => {
            actions.extend(super::rebind::to_vfio(addr, driver));
            return vec![Step {
                summary: format!("VF {addr} ({}) to vfio-pci", from(driver)),
                actions,
                undo,
            }];
        }
        DeviceType::Netdevice if driver.is_none() || is_userspace(driver) => {
            actions.extend(super::rebind::to_kernel(addr, driver));
            if let Some(m) = v.mtu {
                out.deferred
                    .push(format!("VF {addr}: mtu {m} once its netdev appears"));
            }
            return vec![Step {
                summary: format!("VF {addr} ({}) to its kernel driver", from(driver)),
                actions,
                undo,
            }];
        }
        DeviceType::Netdevice => match (&vf.netdev, v.mtu) {
            (Some(nd), Some(m)) if nd.mtu != Some(m) => {
                actions.push(Action::SetVfMtu {
                    vf: addr,
                    ifname: nd.name.clone(),
                    mtu: m,
                });
                if let Some(old) = nd.mtu {
                    undo.insert(
                        0,
                        Action::SetVfMtu {
                            vf: addr,
                            ifname: nd.name.clone(),
                            mtu: old,
                        },
                    );
                }
            }
            (None, Some(m)) => out.warnings.push(format!(
                "VF {addr} has no netdev in the host namespace (in a pod?); mtu {m} not set"
            )),
            _ => {}
        },
    }
    if actions.is_empty() {
        return Vec::new();
    }
    // No rebinding happened: only the settings need undoing.
    undo.retain(|a| matches!(a, Action::PinVfMac { .. } | Action::SetVfMtu { .. }));
    vec![Step {
        summary: format!("VF {addr} settings"),
        actions,
        undo,
    }]
}

/// Puts a VF back on `driver` (or leaves it unbound) after a failed rebind.
fn rebind_undo(vf: PciAddress, driver: Option<&str>) -> Vec<Action> {
    super::rebind::back_to(vf, driver)
}

fn from(driver: Option<&str>) -> String {
    match driver {
        Some(d) => format!("from {d}"),
        None => "unbound".into(),
    }
}

fn pin(pf: &Pf, vf: &Vf, mac: MacAddr) -> Action {
    Action::PinVfMac {
        pf_ifname: pf
            .netdev
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default(),
        index: vf.index,
        vf: vf.pci_address,
        mac: mac.to_string(),
    }
}
