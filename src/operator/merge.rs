//! Which policies apply to this node and what they add up to, per PF, by
//! the operator's rules: policies sorted by priority (99 first, 0 last, so
//! the smallest number wins) then by name; each selected policy in turn
//! writes its PFs, and a PF already written keeps the earlier VF groups
//! that neither overlap the new group's range nor share its resource name.
//! PF-wide settings (numVfs, mtu) take the larger value when groups were
//! kept or the priorities are equal, else the later policy's.
//!
//! Where the operator silently drops an earlier group, the drop is
//! reported: as a conflict (an error on the dropped policy) when the two
//! have the same priority, since the operator's webhook would have refused
//! the overlap; as an override note otherwise.

use std::collections::BTreeMap;

use super::OperatorError;
use super::spec::{LinkType, NodePolicy};
use crate::inventory::{Inventory, Pf};
use crate::pci::PciAddress;
use crate::provision::DeviceType;
use crate::sysfs;

/// The policies' wishes for one PF (the operator's `spec.interfaces[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceSpec {
    /// The PF.
    pub pf: PciAddress,
    /// Its netdev name, when it has one.
    pub name: Option<String>,
    /// VFs the PF must have.
    pub num_vfs: u32,
    /// MTU of the PF (and of its netdevice VFs, per group).
    pub mtu: Option<u32>,
    /// VFs made by someone else: the count and PF MTU are only checked.
    pub externally_managed: bool,
    /// VF groups, one per (policy, range).
    pub groups: Vec<VfGroup>,
}

/// A VF range of one PF and what it is for (the operator's `vfGroups[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfGroup {
    /// The pool's resource name.
    pub resource_name: String,
    /// Driver class.
    pub device_type: DeviceType,
    /// Inclusive VF index range.
    pub range: (u32, u32),
    /// The policy that set it.
    pub policy: String,
    /// Its priority.
    pub priority: u32,
    /// VF netdev MTU.
    pub mtu: Option<u32>,
    /// Pool selector `isRdma`.
    pub is_rdma: bool,
    /// Pool `needVhostNet`.
    pub need_vhost_net: bool,
    /// Pool selector `linkTypes`.
    pub link_type: Option<LinkType>,
    /// Pool `excludeTopology`.
    pub exclude_topology: bool,
}

impl VfGroup {
    fn overlaps(&self, other: &VfGroup) -> bool {
        self.range.0 <= other.range.1 && other.range.0 <= self.range.1
    }
}

/// Something about a policy worth telling its owner that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The policy it is about.
    pub policy: String,
    /// What happened.
    pub message: String,
}

/// The merge's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Policies selecting this node, in the order they were applied.
    pub selected: Vec<String>,
    /// Per-PF wishes, in PCI address order.
    pub interfaces: Vec<IfaceSpec>,
    /// Policies (or their part on one PF) refused, with why.
    pub refused: Vec<OperatorError>,
    /// Overrides and policies that select no PF here.
    pub notes: Vec<Note>,
}

/// The policy name the operator reserves and ignores (deprecated).
const DEFAULT_POLICY_NAME: &str = "default";

/// True when every `nodeSelector` label is on the node with that value.
pub fn node_selected(p: &NodePolicy, labels: &BTreeMap<String, String>) -> bool {
    p.node_selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

/// True when the policy's `nicSelector` picks this PF.
pub fn nic_selected(p: &NodePolicy, pf: &Pf) -> bool {
    let s = &p.nic;
    let ids = pf.ids.as_ref();
    if s.vendor.is_some_and(|v| ids.map(|i| i.vendor) != Some(v)) {
        return false;
    }
    if s.device_id
        .is_some_and(|d| ids.map(|i| i.device) != Some(d))
    {
        return false;
    }
    if !s.root_devices.is_empty() && !s.root_devices.contains(&pf.pci_address) {
        return false;
    }
    if !s.pf_names.is_empty() {
        let name = pf.netdev.as_ref().map(|n| n.name.as_str());
        if !s.pf_names.iter().any(|n| Some(n.name.as_str()) == name) {
            return false;
        }
    }
    true
}

/// Sorts as the operator does: priority 99 first, 0 last; then by name.
pub fn apply_order(policies: &mut [NodePolicy]) {
    policies.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
}

/// Merges the policies that select this node over its PFs.
pub fn merge(
    policies: &[NodePolicy],
    labels: &BTreeMap<String, String>,
    inv: &Inventory,
) -> Merged {
    let mut sorted: Vec<NodePolicy> = policies
        .iter()
        .filter(|p| p.name != DEFAULT_POLICY_NAME && node_selected(p, labels))
        .cloned()
        .collect();
    apply_order(&mut sorted);
    let mut out = Merged::default();
    let sorted = refuse_topology_conflicts(sorted, &mut out.refused);
    let mut ifaces: BTreeMap<PciAddress, IfaceSpec> = BTreeMap::new();
    let mut previous_priority = None;
    for p in &sorted {
        out.selected.push(p.name.clone());
        let equal = previous_priority == Some(p.priority);
        previous_priority = Some(p.priority);
        let mut any = false;
        for pf in inv.pfs.iter().filter(|pf| nic_selected(p, pf)) {
            any = true;
            if let Err(e) = fits(p, pf) {
                out.refused.push(e);
                continue;
            }
            let new = iface_for(p, pf);
            match ifaces.get(&pf.pci_address) {
                None => {
                    ifaces.insert(pf.pci_address, new);
                }
                Some(old) if old.externally_managed != p.externally_managed => {
                    out.refused.push(OperatorError::Conflict {
                        policy: p.name.clone(),
                        field: "spec.externallyManaged".into(),
                        other: old.groups[0].policy.clone(),
                        reason: format!(
                            "PF {} is externallyManaged in one and not the other",
                            pf.pci_address
                        ),
                    });
                }
                Some(old) => {
                    let merged = combine(old, new, equal, &mut out);
                    ifaces.insert(pf.pci_address, merged);
                }
            }
        }
        if !any {
            out.notes.push(Note {
                policy: p.name.clone(),
                message: "its nicSelector matches no SR-IOV PF on this node".into(),
            });
        }
    }
    out.interfaces = ifaces.into_values().collect();
    out
}

/// The operator's webhook refuses two policies for one resource that
/// disagree about `excludeTopology`; the later one in apply order is refused.
fn refuse_topology_conflicts(
    sorted: Vec<NodePolicy>,
    refused: &mut Vec<OperatorError>,
) -> Vec<NodePolicy> {
    let mut first: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut kept = Vec::new();
    for p in sorted {
        match first.get(&p.resource_name) {
            Some((other, ex)) if *ex != p.exclude_topology => {
                refused.push(OperatorError::Conflict {
                    policy: p.name.clone(),
                    field: "spec.excludeTopology".into(),
                    other: other.clone(),
                    reason: format!(
                        "both serve resource {:?} but disagree about excludeTopology",
                        p.resource_name
                    ),
                });
            }
            _ => {
                first
                    .entry(p.resource_name.clone())
                    .or_insert((p.name.clone(), p.exclude_topology));
                kept.push(p);
            }
        }
    }
    kept
}

/// Checks that depend on the PF: VF count, link type, and for externally
/// managed PFs what the operator's daemon checks before touching VFs.
fn fits(p: &NodePolicy, pf: &Pf) -> Result<(), OperatorError> {
    let not_here = |field: &str, reason: String| OperatorError::NotOnNode {
        policy: p.name.clone(),
        field: field.into(),
        reason,
    };
    if p.num_vfs == 0 {
        return Err(not_here(
            "spec.numVfs",
            format!("0 VFs for PF {} is not allowed", pf.pci_address),
        ));
    }
    if p.num_vfs > pf.total_vfs {
        return Err(not_here(
            "spec.numVfs",
            format!(
                "{} exceeds sriov_totalvfs {} of PF {}",
                p.num_vfs, pf.total_vfs, pf.pci_address
            ),
        ));
    }
    let current = pf.netdev.as_ref().and_then(|n| n.link_type);
    if let (Some(want), Some(have)) = (p.link_type, current) {
        let have_op = match have {
            sysfs::LinkType::Ether => LinkType::Eth,
            sysfs::LinkType::Infiniband => LinkType::Ib,
        };
        if want != have_op {
            return Err(OperatorError::Unsupported {
                policy: p.name.clone(),
                field: "spec.linkType".into(),
                value: format!("{want:?}").to_lowercase(),
                reason: format!(
                    "PF {} is {}; changing a port's link type is a firmware setting \
                     that needs a reboot, which fastpath does not do",
                    pf.pci_address,
                    have_op_name(have_op)
                ),
            });
        }
    }
    if p.externally_managed {
        let have = pf.num_vfs.unwrap_or(0);
        if p.num_vfs > have {
            return Err(not_here(
                "spec.numVfs",
                format!(
                    "{} is more than the {have} VFs PF {} has, and the policy is \
                     externallyManaged (VFs are created outside fastpath)",
                    p.num_vfs, pf.pci_address
                ),
            ));
        }
        let pf_mtu = pf.netdev.as_ref().and_then(|n| n.mtu);
        if let (Some(want), Some(have)) = (p.mtu, pf_mtu)
            && want > have
        {
            return Err(not_here(
                "spec.mtu",
                format!(
                    "{want} is above PF {}'s MTU {have}, and the policy is externallyManaged",
                    pf.pci_address
                ),
            ));
        }
    }
    Ok(())
}

fn have_op_name(l: LinkType) -> &'static str {
    match l {
        LinkType::Eth => "eth",
        LinkType::Ib => "ib",
    }
}

fn iface_for(p: &NodePolicy, pf: &Pf) -> IfaceSpec {
    let name = pf.netdev.as_ref().map(|n| n.name.clone());
    let range = p
        .nic
        .pf_names
        .iter()
        .find(|n| Some(&n.name) == name.as_ref())
        .and_then(|n| n.range)
        .unwrap_or((0, p.num_vfs - 1));
    IfaceSpec {
        pf: pf.pci_address,
        name,
        num_vfs: p.num_vfs,
        mtu: p.mtu,
        externally_managed: p.externally_managed,
        groups: vec![VfGroup {
            resource_name: p.resource_name.clone(),
            device_type: p.device_type,
            range,
            policy: p.name.clone(),
            priority: p.priority,
            mtu: p.mtu,
            is_rdma: p.is_rdma,
            need_vhost_net: p.need_vhost_net,
            link_type: p.link_type,
            exclude_topology: p.exclude_topology,
        }],
    }
}

/// The operator's `mergeConfigs`, reporting every group it drops.
fn combine(old: &IfaceSpec, mut new: IfaceSpec, equal: bool, out: &mut Merged) -> IfaceSpec {
    let head = new.groups[0].clone();
    let mut kept_any = false;
    for g in &old.groups {
        let same_resource = g.resource_name == head.resource_name;
        let overlap = g.overlaps(&head);
        if !same_resource && !overlap {
            kept_any = true;
            new.groups.push(g.clone());
            continue;
        }
        let pf = old.name.clone().unwrap_or_else(|| old.pf.to_string());
        let what = format!("VFs {}-{} of {pf}", g.range.0, g.range.1);
        if overlap && g.priority == head.priority {
            out.refused.push(OperatorError::Conflict {
                policy: g.policy.clone(),
                field: "spec.nicSelector.pfNames".into(),
                other: head.policy.clone(),
                reason: format!(
                    "{what} overlap VFs {}-{} at the same priority {}; {} is applied \
                     (later by name) and this policy's group is dropped",
                    head.range.0, head.range.1, head.priority, head.policy
                ),
            });
        } else {
            let why = if overlap {
                format!("overlap its VFs {}-{}", head.range.0, head.range.1)
            } else {
                format!("share its resource {:?}", head.resource_name)
            };
            out.notes.push(Note {
                policy: g.policy.clone(),
                message: format!(
                    "{what} are overridden by policy {} (priority {}), whose VFs {why}",
                    head.policy, head.priority
                ),
            });
        }
    }
    if equal || kept_any {
        new.mtu = new.mtu.max(old.mtu);
        new.num_vfs = new.num_vfs.max(old.num_vfs);
    }
    new
}
