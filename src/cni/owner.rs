//! The pod ownership check at the start of ADD: before anything on the
//! node changes, kubelet (PodResources) must confirm that the pod named in
//! CNI_ARGS was allocated the VF the config names, or pick the pod's VF
//! when the config names none. The decision itself is `crate::ownership`.

use std::collections::BTreeSet;

use super::env::CniEnv;
use super::error::{CniError, CniResult};
use super::{config::Config, records};
use crate::ownership::{self, NodeOwnership, PodRef};
use crate::pci::PciAddress;

/// The VF this ADD may attach, or the CNI error naming pod and device.
pub fn approved_device(env: &CniEnv, conf: &Config) -> CniResult<PciAddress> {
    if conf.device.is_none() && conf.ownership.resource_name.is_none() {
        return Err(CniError::invalid_field(
            "deviceID",
            "(missing)",
            "is required, or resourceName to have kubelet's PodResources name it",
        ));
    }
    let refuse = |e: ownership::OwnershipError| CniError::new(e.cni_code(), e.to_string(), "");
    let node = NodeOwnership::load(&env.ownership_config).map_err(refuse)?;
    let pod = PodRef::from_cni_args(&env.args_string());
    // This pod's attached VFs: resolving by resourceName skips them.
    let attached: BTreeSet<PciAddress> = match &pod {
        Some(p) => records::load_all(&env.state_dir)?
            .into_iter()
            .filter(|r| {
                r.pod_namespace.as_deref() == Some(p.namespace.as_str())
                    && r.pod_name.as_deref() == Some(p.name.as_str())
            })
            .map(|r| r.pci)
            .collect(),
        None => BTreeSet::new(),
    };
    let approved =
        ownership::check_add(&node, &conf.ownership, pod.as_ref(), conf.device, &attached)
            .map_err(refuse)?;
    if approved.resolved {
        tracing::info!(pci = %approved.device, "deviceID resolved from PodResources by resourceName");
    }
    Ok(approved.device)
}
