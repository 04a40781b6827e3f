//! Named crash points for the fault-injection matrix (issue 7: "crash
//! anywhere, recover everything").
//!
//! With the cargo feature `fault-injection`, [`crash_point`] sends the
//! process SIGKILL when env `FASTPATH_CRASH_AT` names the point being
//! passed, so the matrix tests can kill the real binary right after each
//! step and check that the recovery path (DEL, GC, the next `apply`)
//! restores everything. Without the feature (every release build) the
//! call compiles to nothing: no env read, no branch.
//!
//! Points sit only at the real step boundaries: after the CNI record is
//! first written and after every ADD step, after every restore step and
//! just before a record is removed (DEL, GC), and after every provisioning
//! action and journal write. [`POINTS`] lists them all, so the matrix can
//! prove it covers each one.

use crate::cni::plan::Step;
use crate::netlink::vf::VfSetting;
use crate::provision::plan::Action;

/// The environment variable naming the point to crash at.
pub const CRASH_AT_ENV: &str = "FASTPATH_CRASH_AT";

/// Every crash point, in the order a run passes them.
pub const POINTS: &[&str] = &[
    // CNI ADD: the record written into its slot but not yet synced (only
    // when the VF's slot file exists from an earlier ADD), the record on
    // disk, then each step of the plan.
    "cni.add.before.record_sync",
    "cni.add.after.record",
    "cni.add.after.pf_side.mac",
    "cni.add.after.pf_side.vlan",
    "cni.add.after.pf_side.spoofchk",
    "cni.add.after.pf_side.trust",
    "cni.add.after.pf_side.rate",
    "cni.add.after.pf_side.link_state",
    "cni.add.after.move_to_pod",
    "cni.add.after.set_mac",
    "cni.add.after.set_mtu",
    "cni.add.after.up",
    "cni.add.after.ipam",
    "cni.add.after.addresses",
    // Restoring an attachment (DEL, GC, a failed ADD's undo): each undo
    // step, then the record's removal.
    "cni.restore.after.restore_mtu",
    "cni.restore.after.restore_mac",
    "cni.restore.after.move_home",
    "cni.restore.after.host_fixup",
    "cni.restore.after.ipam_release",
    "cni.restore.after.pf_side.mac",
    "cni.restore.after.pf_side.vlan",
    "cni.restore.after.pf_side.spoofchk",
    "cni.restore.after.pf_side.trust",
    "cni.restore.after.pf_side.rate",
    "cni.restore.after.pf_side.link_state",
    "cni.restore.before.record_remove",
    // GC: after each VF it restored.
    "cni.gc.after.vf",
    // Provisioning apply: the journal writes, then each kind of action.
    "provision.after.journal_begin",
    "provision.after.journal_advance",
    "provision.after.load_module",
    "provision.after.set_pf_mtu",
    "provision.after.numvfs_zero",
    "provision.after.numvfs",
    "provision.after.wait_vfs",
    "provision.after.pin_vf_mac",
    "provision.after.unbind",
    "provision.after.set_driver_override",
    "provision.after.bind",
    "provision.after.clear_driver_override",
    "provision.after.drivers_probe",
    "provision.after.wait_netdev",
    "provision.after.set_vf_mtu",
    // DRA NodePrepareResources: the claim record is on disk, each device
    // is configured, the CDI and device-info files are written; the
    // restore (unprepare, the start-up reconcile, a retried half-done
    // prepare) before the record goes.
    "dra.prepare.after.record",
    "dra.prepare.after.device",
    "dra.prepare.after.files",
    "dra.restore.before.record_remove",
];

/// Crashes (SIGKILL) here when the feature is on and `FASTPATH_CRASH_AT`
/// names `point`; otherwise does nothing.
#[inline(always)]
pub fn crash_point(point: &'static str) {
    #[cfg(feature = "fault-injection")]
    armed::crash_if_named(point);
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::OnceLock;

    /// The point named in the environment, read once per process.
    fn target() -> Option<&'static str> {
        static TARGET: OnceLock<Option<String>> = OnceLock::new();
        TARGET
            .get_or_init(|| std::env::var(super::CRASH_AT_ENV).ok())
            .as_deref()
    }

    pub(super) fn crash_if_named(point: &'static str) {
        debug_assert!(
            super::POINTS.contains(&point),
            "unlisted crash point {point}"
        );
        if target() == Some(point) {
            // stderr is unbuffered: the line is out before the signal.
            eprintln!("fastpath: fault injection: SIGKILL at {point}");
            // SIGKILL cannot be caught: no destructor, no flush, no unlock
            // runs, exactly like the OOM killer or a node power cut of
            // the process.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The CNI ADD point after `step`.
pub fn add_step_point(step: &Step) -> &'static str {
    match step {
        Step::PfSide(s) => match s {
            VfSetting::Mac(_) => "cni.add.after.pf_side.mac",
            VfSetting::Vlan { .. } => "cni.add.after.pf_side.vlan",
            VfSetting::SpoofChk(_) => "cni.add.after.pf_side.spoofchk",
            VfSetting::Trust(_) => "cni.add.after.pf_side.trust",
            VfSetting::Rate { .. } => "cni.add.after.pf_side.rate",
            VfSetting::LinkState(_) => "cni.add.after.pf_side.link_state",
        },
        Step::MoveToPod => "cni.add.after.move_to_pod",
        Step::SetMac(_) => "cni.add.after.set_mac",
        Step::SetMtu(_) => "cni.add.after.set_mtu",
        Step::Up => "cni.add.after.up",
        Step::Ipam => "cni.add.after.ipam",
        Step::Addresses => "cni.add.after.addresses",
    }
}

/// The restore point after a PF-side setting was put back.
pub fn restore_pf_side_point(setting: &VfSetting) -> &'static str {
    match setting {
        VfSetting::Mac(_) => "cni.restore.after.pf_side.mac",
        VfSetting::Vlan { .. } => "cni.restore.after.pf_side.vlan",
        VfSetting::SpoofChk(_) => "cni.restore.after.pf_side.spoofchk",
        VfSetting::Trust(_) => "cni.restore.after.pf_side.trust",
        VfSetting::Rate { .. } => "cni.restore.after.pf_side.rate",
        VfSetting::LinkState(_) => "cni.restore.after.pf_side.link_state",
    }
}

/// The provisioning point after `action`.
pub fn action_point(action: &Action) -> &'static str {
    match action {
        Action::LoadModule { .. } => "provision.after.load_module",
        Action::SetPfMtu { .. } => "provision.after.set_pf_mtu",
        Action::SetNumVfs { count: 0, .. } => "provision.after.numvfs_zero",
        Action::SetNumVfs { .. } => "provision.after.numvfs",
        Action::WaitVfs { .. } => "provision.after.wait_vfs",
        Action::PinVfMac { .. } => "provision.after.pin_vf_mac",
        Action::Unbind { .. } => "provision.after.unbind",
        Action::SetDriverOverride { .. } => "provision.after.set_driver_override",
        Action::Bind { .. } => "provision.after.bind",
        Action::ClearDriverOverride { .. } => "provision.after.clear_driver_override",
        Action::DriversProbe { .. } => "provision.after.drivers_probe",
        Action::WaitNetdev { .. } => "provision.after.wait_netdev",
        Action::SetVfMtu { .. } => "provision.after.set_vf_mtu",
    }
}

/// The [`crate::cni::StepHook`] the binary's CNI entry passes under the
/// feature: a crash point after every ADD step.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrashHook;

impl crate::cni::StepHook for CrashHook {
    fn after(&self, step: &Step) -> Result<(), String> {
        crash_point(add_step_point(step));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::vf::{LinkState, VlanProto};
    use std::collections::HashSet;

    #[test]
    fn every_named_point_is_listed_once() {
        let listed: HashSet<_> = POINTS.iter().copied().collect();
        assert_eq!(listed.len(), POINTS.len(), "duplicates in POINTS");
        let settings = [
            VfSetting::Mac([2, 0, 0, 0, 0, 1]),
            VfSetting::Vlan {
                vlan: 1,
                qos: 0,
                proto: VlanProto::Dot1Q,
            },
            VfSetting::SpoofChk(true),
            VfSetting::Trust(true),
            VfSetting::Rate { min: 0, max: 1 },
            VfSetting::LinkState(LinkState::Auto),
        ];
        let mut named: Vec<&str> = settings
            .iter()
            .flat_map(|s| {
                [
                    add_step_point(&Step::PfSide(s.clone())),
                    restore_pf_side_point(s),
                ]
            })
            .collect();
        for step in [
            Step::MoveToPod,
            Step::SetMac([2, 0, 0, 0, 0, 1]),
            Step::SetMtu(1400),
            Step::Up,
            Step::Ipam,
            Step::Addresses,
        ] {
            named.push(add_step_point(&step));
        }
        let pf: crate::pci::PciAddress = "0000:01:00.0".parse().unwrap();
        let vf: crate::pci::PciAddress = "0000:01:10.0".parse().unwrap();
        for a in [
            Action::SetNumVfs { pf, count: 0 },
            Action::SetNumVfs { pf, count: 2 },
            Action::WaitVfs { pf, count: 2 },
            Action::Unbind {
                vf,
                driver: "igbvf".into(),
            },
            Action::ClearDriverOverride { vf },
            Action::DriversProbe { vf },
            Action::WaitNetdev { vf },
        ] {
            named.push(action_point(&a));
        }
        for n in named {
            assert!(listed.contains(n), "{n} is not in POINTS");
        }
    }
}
