//! Pod ownership: before a CNI ADD touches anything, confirm with kubelet's
//! PodResources API that the VF in `deviceID` was allocated to the pod in
//! CNI_ARGS (or pick the pod's device by the network's `resourceName` when
//! `deviceID` is missing). See docs/SECURITY.md for the threat model.
//!
//! [`decide`] and [`resolve_device`] are pure; [`check_add`] asks kubelet
//! and applies them. The CNI ADD calls it first thing:
//!
//! ```no_run
//! # use std::collections::BTreeSet;
//! # use fastpath::ownership::*;
//! # fn add(conf: &OwnershipNetConf, cni_args: &str, device_id: Option<fastpath::pci::PciAddress>,
//! #        attached: &BTreeSet<fastpath::pci::PciAddress>) -> Result<(), OwnershipError> {
//! let node = NodeOwnership::load(std::path::Path::new(DEFAULT_NODE_CONFIG))?;
//! let device = check_add(&node, conf, PodRef::from_cni_args(cni_args).as_ref(), device_id, attached)?.device;
//! # let _ = device; Ok(()) }
//! ```

mod decide;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use decide::{
    Answer, CheckInput, Decision, Holder, Mode, PodRef, Refusal, ResolveError, decide,
    effective_mode, resolve_device,
};

use crate::pci::PciAddress;
use crate::podresources::{self, PodResourcesClient, PodResourcesError, Source};

/// Default path of the node-level ownership settings.
pub const DEFAULT_NODE_CONFIG: &str = "/etc/fastpath/ownership.json";

/// The fields a network's CNI config (the NAD, tenant-writable) may carry;
/// the CNI config struct embeds this with `#[serde(flatten)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnershipNetConf {
    /// Can only make the node's mode stricter, never weaker.
    #[serde(default)]
    pub ownership: Option<Mode>,
    /// The NAD's `k8s.v1.cni.cncf.io/resourceName`: picks the device when
    /// `deviceID` is missing and must match the device's resource when set.
    #[serde(default)]
    pub resource_name: Option<String>,
}

/// Node-level settings (root-owned file, not the tenant's NAD): the mode
/// floor, where kubelet's socket is, how long to wait, the pool names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeOwnership {
    /// `None`: enforce when the socket exists, warn when it does not.
    #[serde(default)]
    pub ownership: Option<Mode>,
    #[serde(default = "default_socket")]
    pub pod_resources_socket: PathBuf,
    #[serde(default = "default_timeout_ms")]
    pub pod_resources_timeout_ms: u64,
    /// Full resource names of fastpath pools (`intel.com/sriov_netdevice`);
    /// when set, a device allocated under any other resource is refused.
    #[serde(default)]
    pub pool_resource_names: Option<BTreeSet<String>>,
}

fn default_socket() -> PathBuf {
    PathBuf::from(podresources::DEFAULT_SOCKET)
}

fn default_timeout_ms() -> u64 {
    podresources::DEFAULT_TIMEOUT.as_millis() as u64
}

impl Default for NodeOwnership {
    fn default() -> Self {
        Self {
            ownership: None,
            pod_resources_socket: default_socket(),
            pod_resources_timeout_ms: default_timeout_ms(),
            pool_resource_names: None,
        }
    }
}

/// Bounds for `podResourcesTimeoutMs`.
const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1..=30_000;

impl NodeOwnership {
    /// Reads the node settings from `path`; an absent file means defaults.
    pub fn load(path: &Path) -> Result<Self, OwnershipError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(OwnershipError::NodeConfigRead {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let node: Self =
            serde_json::from_str(&text).map_err(|source| OwnershipError::NodeConfigParse {
                path: path.to_owned(),
                source,
            })?;
        if !TIMEOUT_MS.contains(&node.pod_resources_timeout_ms) {
            return Err(OwnershipError::NodeConfigTimeout {
                path: path.to_owned(),
                value: node.pod_resources_timeout_ms,
            });
        }
        Ok(node)
    }

    fn client(&self) -> PodResourcesClient {
        PodResourcesClient::new(
            &self.pod_resources_socket,
            Duration::from_millis(self.pod_resources_timeout_ms),
        )
    }
}

/// The device a CNI ADD may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub device: PciAddress,
    /// True when `deviceID` was missing and PodResources picked it.
    pub resolved: bool,
    /// Set in warn mode when the check found a problem (already logged).
    pub warning: Option<Refusal>,
}

/// Why a CNI ADD must not proceed.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("ownership check refused: {0}")]
    Refused(Refusal),
    #[error("resolving deviceID by resourceName: {0}")]
    Resolve(ResolveError),
    #[error("neither deviceID nor resourceName is set in the network config")]
    NoDeviceOrResource,
    #[error(
        "deviceID is missing and CNI_ARGS carry no K8S_POD_NAMESPACE/K8S_POD_NAME to resolve resourceName {resource}"
    )]
    NoPodToResolve { resource: String },
    #[error("deviceID is missing and resourceName {resource} cannot be resolved: {source}")]
    PodResources {
        resource: String,
        source: PodResourcesError,
    },
    #[error("reading ownership settings {}: {source}", path.display())]
    NodeConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing ownership settings {}: {source}", path.display())]
    NodeConfigParse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("ownership settings {}: podResourcesTimeoutMs {value} is outside 1-30000", path.display())]
    NodeConfigTimeout { path: PathBuf, value: u64 },
}

impl OwnershipError {
    /// The CNI error code: 11 (try again later) when kubelet did not
    /// answer, 7 (invalid config) otherwise; a NAD naming a device its pod
    /// does not own is a config that is invalid for that pod.
    pub fn cni_code(&self) -> u32 {
        match self {
            Self::Refused(Refusal::Unverified { .. }) | Self::PodResources { .. } => 11,
            _ => 7,
        }
    }
}

/// The CNI ADD entry point: the device to attach, or why not. `device_id`
/// is the config's deviceID (already parsed strictly); `attached` holds the
/// devices this pod already has attached (from the CNI's records).
pub fn check_add(
    node: &NodeOwnership,
    conf: &OwnershipNetConf,
    pod: Option<&PodRef>,
    device_id: Option<PciAddress>,
    attached: &BTreeSet<PciAddress>,
) -> Result<Approved, OwnershipError> {
    let client = node.client();
    let socket_exists = !matches!(
        client.socket_state(),
        Err(PodResourcesError::SocketAbsent { .. })
    );
    let mode = effective_mode(node.ownership, conf.ownership, socket_exists);
    let (device, resolved, queried) = match device_id {
        Some(device) if mode == Mode::Off => {
            return Ok(Approved {
                device,
                resolved: false,
                warning: None,
            });
        }
        Some(device) => match pod {
            Some(p) => (device, false, query(&client, p)),
            // Nothing to ask kubelet about; the decision refuses or warns.
            None => (device, false, Queried::empty()),
        },
        None => {
            let (device, queried) = resolve(&client, conf, pod, attached)?;
            (device, true, queried)
        }
    };
    let mut input_answer = queried.answer;
    let mut decision = decide_with(mode, pod, device, &input_answer, node, conf);
    // Get shows only this pod: ask List for the holder's name before
    // refusing, so the message says who has the device.
    if queried.from_get
        && matches!(
            &decision,
            Decision::Refused(Refusal::NotAllocated { holder: None, .. })
                | Decision::Warn(Refusal::NotAllocated { holder: None, .. })
        )
        && let Ok(all) = client.list()
    {
        input_answer = Answer::Pods(all.pods);
        decision = decide_with(mode, pod, device, &input_answer, node, conf);
    }
    match decision {
        Decision::Allowed => Ok(Approved {
            device,
            resolved,
            warning: None,
        }),
        Decision::Warn(r) => {
            tracing::warn!(device = %device, "ownership check (warn mode): {r}");
            Ok(Approved {
                device,
                resolved,
                warning: Some(r),
            })
        }
        Decision::Refused(r) => Err(OwnershipError::Refused(r)),
    }
}

fn decide_with(
    mode: Mode,
    pod: Option<&PodRef>,
    device: PciAddress,
    answer: &Answer,
    node: &NodeOwnership,
    conf: &OwnershipNetConf,
) -> Decision {
    decide(&CheckInput {
        mode,
        pod,
        device,
        answer,
        pools: node.pool_resource_names.as_ref(),
        resource_name: conf.resource_name.as_deref(),
    })
}

/// A query's outcome in the decision's terms.
struct Queried {
    answer: Answer,
    from_get: bool,
}

impl Queried {
    fn empty() -> Self {
        Self {
            answer: Answer::Pods(Vec::new()),
            from_get: false,
        }
    }
}

/// Asks for the pod; a failed query becomes `Answer::Unavailable`, which
/// the decision refuses in enforce mode and warns about in warn mode.
fn query(client: &PodResourcesClient, pod: &PodRef) -> Queried {
    match client.pod(&pod.namespace, &pod.name) {
        Ok(a) => Queried {
            from_get: a.source == Source::Get,
            answer: Answer::Pods(a.pods),
        },
        Err(e) => Queried {
            answer: Answer::Unavailable(e.to_string()),
            from_get: false,
        },
    }
}

fn resolve(
    client: &PodResourcesClient,
    conf: &OwnershipNetConf,
    pod: Option<&PodRef>,
    attached: &BTreeSet<PciAddress>,
) -> Result<(PciAddress, Queried), OwnershipError> {
    let Some(resource) = conf.resource_name.as_deref() else {
        return Err(OwnershipError::NoDeviceOrResource);
    };
    let Some(pod) = pod else {
        return Err(OwnershipError::NoPodToResolve {
            resource: resource.to_owned(),
        });
    };
    let answer =
        client
            .pod(&pod.namespace, &pod.name)
            .map_err(|source| OwnershipError::PodResources {
                resource: resource.to_owned(),
                source,
            })?;
    let device =
        resolve_device(&answer.pods, pod, resource, attached).map_err(OwnershipError::Resolve)?;
    tracing::info!(pod = %pod, resource, device = %device, "deviceID resolved from PodResources");
    let queried = Queried {
        from_get: answer.source == Source::Get,
        answer: Answer::Pods(answer.pods),
    };
    Ok((device, queried))
}
