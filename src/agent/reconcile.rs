//! The agent's start-up reconcile, decision half: given one CNI record
//! and what the node shows for it now, what to do. Pure; the effects
//! (observing, locking, restoring through the CNI's own undo) are in
//! [`super::reconcile_run`].
//!
//! A record outlives its attachment when the pod's netns is deleted
//! without a DEL (kubelet gave up, the node rebooted, the runtime
//! crashed) or when ADD or DEL was killed half-way. The kernel then
//! returns a real VF to the host netns under the name it had in the pod
//! (`net1`) or, if that is taken, a `devN` name; a veth stand-in dies
//! with the netns instead.

use serde::{Deserialize, Serialize};

use crate::cni::plan::Step;
use crate::cni::records::Record;
use crate::netlink::link::parse_mac;

/// The VF's netdev as found in the host netns (through sysfs by PCI
/// address, confirmed by netlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetdev {
    /// Its name now.
    pub name: String,
    /// Its MAC now.
    pub mac: Option<String>,
    /// Its MTU now.
    pub mtu: Option<u32>,
}

/// What the node shows for one record, observed under the VF's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The record's netns path is still a network namespace.
    pub netns_live: bool,
    /// The VF's netdev in the host netns; `None` when it is not there (in
    /// a pod, dead with its netns, or a DPDK VF).
    pub host_netdev: Option<HostNetdev>,
}

/// What the reconcile does with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The attachment is live (its netns exists): not ours to touch; the
    /// runtime's DEL or GC ends it.
    LeaveLive,
    /// The netns is gone and the VF sits in the host under another name:
    /// rename it back, restore MAC and MTU, release IPAM, drop the record.
    RenameBack {
        /// Its name now (`net1`, `devN`).
        from: String,
    },
    /// The netns is gone and something is left to restore (MAC, MTU,
    /// PF-side settings, a VF that died with the netns, a DPDK VF):
    /// everything DEL would do.
    Restore,
    /// The netns is gone and the VF is already home as it was (a DEL
    /// killed after restoring): release IPAM and drop the record.
    DropRecord,
}

fn same_mac(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(want), Some(now)) => parse_mac(want).is_some() && parse_mac(want) == parse_mac(now),
        (Some(_), None) => false,
    }
}

/// Decides what to do with `rec`, given what the node shows now.
pub fn decide(rec: &Record, seen: &Observed) -> Action {
    if seen.netns_live {
        return Action::LeaveLive;
    }
    let Some(dev) = &seen.host_netdev else {
        return Action::Restore;
    };
    let orig = &rec.original;
    if let Some(name) = &orig.ifname
        && &dev.name != name
    {
        return Action::RenameBack {
            from: dev.name.clone(),
        };
    }
    let pf_side_changed = rec.plan.iter().any(|s| matches!(s, Step::PfSide(_)));
    let mtu_home = orig.mtu.is_none() || orig.mtu == dev.mtu;
    if same_mac(orig.mac.as_deref(), dev.mac.as_deref()) && mtu_home && !pf_side_changed {
        Action::DropRecord
    } else {
        Action::Restore
    }
}

/// The outcome of one start-up reconcile, for logs, `/metrics` and
/// `fastpath status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartupReport {
    /// Unix seconds when it finished.
    pub finished_at: u64,
    /// Wall time, microseconds.
    pub duration_us: u64,
    /// Records examined.
    pub records: u64,
    /// Attachments restored (VF home, IPAM released, record dropped),
    /// including those renamed back.
    pub restored: u64,
    /// Of those, VFs renamed back from a pod-side or kernel-given name.
    pub renamed: u64,
    /// Records dropped whose VF was already home as it was.
    pub dropped: u64,
    /// Live attachments left alone.
    pub live: u64,
    /// Records skipped because a CNI call held the VF's lock.
    pub busy: u64,
    /// Records whose restore failed (kept for the next DEL, GC or start),
    /// with the PCI address and the error.
    pub failures: Vec<String>,
    /// What became of an interrupted provisioning apply, when the agent
    /// finished or rolled one back without a policy.
    pub provisioning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::records::{Original, Phase, RECORD_VERSION};
    use crate::netlink::vf::VfSetting;

    fn record(plan: Vec<Step>) -> Record {
        Record {
            version: RECORD_VERSION,
            pci: "0000:3b:01.0".parse().unwrap(),
            pf_pci: "0000:3b:00.0".parse().unwrap(),
            pf_name: Some("ens1f0".into()),
            pf_driver: "ice".into(),
            vf_index: 0,
            dpdk: false,
            network: "n".into(),
            container_id: "c".into(),
            ifname: "net1".into(),
            netns: Some("/run/netns/p".into()),
            pod_namespace: None,
            pod_name: None,
            pod_uid: None,
            since: 1,
            original: Original {
                ifname: Some("ens1f0v0".into()),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                pf_side: None,
            },
            plan,
            reached: 0,
            phase: Phase::Attached,
            result: None,
            ipam: None,
        }
    }

    fn dev(name: &str, mac: &str, mtu: u32) -> Option<HostNetdev> {
        Some(HostNetdev {
            name: name.into(),
            mac: Some(mac.into()),
            mtu: Some(mtu),
        })
    }

    #[test]
    fn each_situation_gets_its_action() {
        let moved = vec![Step::MoveToPod, Step::Up];
        let vlan = vec![Step::PfSide(VfSetting::SpoofChk(false)), Step::MoveToPod];
        let home = "02:00:00:00:00:01";
        let rename = |from: &str| Action::RenameBack { from: from.into() };
        // (what, plan, netns live, VF netdev in the host, action)
        type Case = (&'static str, Vec<Step>, bool, Option<HostNetdev>, Action);
        let cases: Vec<Case> = vec![
            (
                "netns alive, VF in it",
                moved.clone(),
                true,
                None,
                Action::LeaveLive,
            ),
            (
                "netns alive, VF in the host (ADD killed before the move)",
                moved.clone(),
                true,
                dev("ens1f0v0", home, 1500),
                Action::LeaveLive,
            ),
            (
                "netns gone, VF returned under the pod-side name",
                moved.clone(),
                false,
                dev("net1", "02:aa:00:00:00:09", 9000),
                rename("net1"),
            ),
            (
                "netns gone, VF returned under a kernel name",
                moved.clone(),
                false,
                dev("dev3", home, 1500),
                rename("dev3"),
            ),
            (
                "netns gone, VF died with it (veth) or not visible",
                moved.clone(),
                false,
                None,
                Action::Restore,
            ),
            (
                "netns gone, VF home but with the pod's MAC",
                moved.clone(),
                false,
                dev("ens1f0v0", "02:aa:00:00:00:09", 1500),
                Action::Restore,
            ),
            (
                "netns gone, VF home but with the pod's MTU",
                moved.clone(),
                false,
                dev("ens1f0v0", home, 9000),
                Action::Restore,
            ),
            (
                "netns gone, VF home as it was (DEL killed before dropping the record)",
                moved.clone(),
                false,
                dev("ens1f0v0", "02:00:00:00:00:01", 1500),
                Action::DropRecord,
            ),
            (
                "MAC compared as a MAC, not as text",
                moved.clone(),
                false,
                dev(
                    "ens1f0v0",
                    "02:00:00:00:00:01".to_uppercase().as_str(),
                    1500,
                ),
                Action::DropRecord,
            ),
            (
                "netns gone, VF home, PF-side settings to restore",
                vlan,
                false,
                dev("ens1f0v0", home, 1500),
                Action::Restore,
            ),
        ];
        for (what, plan, netns_live, host_netdev, want) in cases {
            let seen = Observed {
                netns_live,
                host_netdev,
            };
            assert_eq!(decide(&record(plan), &seen), want, "{what}");
        }
    }

    #[test]
    fn dpdk_and_adding_records_whose_netns_is_gone_are_restored() {
        let mut dpdk = record(vec![Step::Ipam]);
        dpdk.dpdk = true;
        dpdk.original = Original::default();
        let gone = Observed {
            netns_live: false,
            host_netdev: None,
        };
        assert_eq!(decide(&dpdk, &gone), Action::Restore);
        let mut adding = record(vec![Step::MoveToPod, Step::Ipam, Step::Up]);
        adding.phase = Phase::Adding;
        assert_eq!(decide(&adding, &gone), Action::Restore);
        let live = Observed {
            netns_live: true,
            ..gone
        };
        assert_eq!(decide(&adding, &live), Action::LeaveLive);
    }

    #[test]
    fn a_record_without_an_original_name_is_not_renamed() {
        let mut r = record(vec![Step::MoveToPod]);
        r.original.ifname = None;
        let seen = Observed {
            netns_live: false,
            host_netdev: dev("dev4", "02:00:00:00:00:01", 1500),
        };
        assert_eq!(decide(&r, &seen), Action::DropRecord);
    }
}
