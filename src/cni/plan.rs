//! ADD as data: the ordered steps for a VF and a config. Each step has an
//! undo (in `undo.rs`); the executor (in `add.rs`) records the plan before
//! the first step and undoes completed steps in reverse on failure.

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::device::VfDevice;
use crate::netlink::vf::VfSetting;

/// One step of an ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A PF-side VF attribute (host netns, through the PF).
    PfSide(VfSetting),
    /// Move the VF netdev into the pod netns, renamed to CNI_IFNAME, in
    /// one message.
    MoveToPod,
    /// Set the interface's MAC in the pod.
    SetMac([u8; 6]),
    /// Set its MTU in the pod.
    SetMtu(u32),
    /// Bring it up in the pod.
    Up,
    /// Allocate addresses from the IPAM plugin.
    Ipam,
    /// Put IPAM's addresses and routes on the interface in the pod.
    Addresses,
}

impl Step {
    /// True for steps that run inside the pod netns.
    pub fn in_pod(&self) -> bool {
        matches!(
            self,
            Step::SetMac(_) | Step::SetMtu(_) | Step::Up | Step::Addresses
        )
    }

    /// A short name for logs and for the failure-injection hook.
    pub fn name(&self) -> &'static str {
        match self {
            Step::PfSide(_) => "pf_side",
            Step::MoveToPod => "move_to_pod",
            Step::SetMac(_) => "set_mac",
            Step::SetMtu(_) => "set_mtu",
            Step::Up => "up",
            Step::Ipam => "ipam",
            Step::Addresses => "addresses",
        }
    }
}

/// The steps of an ADD of `dev` with `conf`, in order.
pub fn plan_add(conf: &Config, dev: &VfDevice) -> Vec<Step> {
    let mut steps: Vec<Step> = conf.vf_settings.iter().cloned().map(Step::PfSide).collect();
    if !dev.dpdk {
        steps.push(Step::MoveToPod);
        if let Some(m) = conf.mac {
            steps.push(Step::SetMac(m));
        }
        if let Some(m) = conf.mtu {
            steps.push(Step::SetMtu(m));
        }
        steps.push(Step::Up);
    }
    if conf.ipam_type.is_some() {
        steps.push(Step::Ipam);
        if !dev.dpdk {
            steps.push(Step::Addresses);
        }
    }
    steps
}

/// A test seam: called after each step succeeds; an `Err` makes ADD fail
/// there, as if the step had failed after taking effect. Production
/// passes [`NoHook`].
pub trait StepHook: Sync {
    /// Called after `step` took effect.
    fn after(&self, step: &Step) -> Result<(), String>;
}

/// The hook that never interferes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl StepHook for NoHook {
    fn after(&self, _: &Step) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::env::CniEnv;

    fn dev(dpdk: bool) -> VfDevice {
        VfDevice {
            pci: "0000:3b:01.0".parse().unwrap(),
            pf_pci: "0000:3b:00.0".parse().unwrap(),
            pf_name: Some("ens1f0".into()),
            pf_driver: "ice".into(),
            index: 0,
            driver: if dpdk { "vfio-pci" } else { "iavf" }.into(),
            netdev: (!dpdk).then(|| "ens1f0v0".into()),
            dpdk,
        }
    }

    fn conf(v: serde_json::Value) -> Config {
        Config::parse(v.to_string().as_bytes(), &CniEnv::default()).unwrap()
    }

    #[test]
    fn a_kernel_vf_is_configured_on_the_pf_then_moved_then_addressed() {
        let c = conf(
            serde_json::json!({"cniVersion":"1.1.0","name":"n","type":"fastpath",
            "vlan": 10, "mac": "02:00:00:00:00:09", "mtu": 9000, "ipam": {"type":"static"}}),
        );
        let names: Vec<_> = plan_add(&c, &dev(false)).iter().map(Step::name).collect();
        assert_eq!(
            names,
            [
                "pf_side",
                "pf_side",
                "move_to_pod",
                "set_mac",
                "set_mtu",
                "up",
                "ipam",
                "addresses"
            ]
        );
    }

    #[test]
    fn a_dpdk_vf_gets_pf_side_settings_and_ipam_only() {
        let c = conf(
            serde_json::json!({"cniVersion":"1.1.0","name":"n","type":"fastpath",
            "trust": "on", "mtu": 9000, "ipam": {"type":"host-local"}}),
        );
        let names: Vec<_> = plan_add(&c, &dev(true)).iter().map(Step::name).collect();
        assert_eq!(names, ["pf_side", "ipam"]);
    }
}
