//! The pure half of the ownership check: given what kubelet's PodResources
//! said, decide whether a pod may have a device, and pick a device for a
//! pod by resource name. No I/O here.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pci::PciAddress;
use crate::podresources::PodDevices;

/// How strictly the check acts; ordered from weakest to strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No check.
    Off,
    /// Check, log a warning on a mismatch, proceed.
    Warn,
    /// Check, refuse the ADD on a mismatch (fail closed).
    Enforce,
}

/// The pod a CNI call is for, from CNI_ARGS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// K8S_POD_UID; carried for messages only, PodResources has no UIDs.
    pub uid: Option<String>,
}

impl PodRef {
    /// Reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from a CNI_ARGS
    /// string (`K=V;K=V`); `None` unless both namespace and name are set.
    pub fn from_cni_args(args: &str) -> Option<Self> {
        let (mut namespace, mut name, mut uid) = (None, None, None);
        for pair in args.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "K8S_POD_NAMESPACE" if !v.is_empty() => namespace = Some(v.to_owned()),
                "K8S_POD_NAME" if !v.is_empty() => name = Some(v.to_owned()),
                "K8S_POD_UID" if !v.is_empty() => uid = Some(v.to_owned()),
                _ => {}
            }
        }
        Some(Self {
            namespace: namespace?,
            name: name?,
            uid,
        })
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if let Some(uid) = &self.uid {
            write!(f, " (uid {uid})")?;
        }
        Ok(())
    }
}

/// What the PodResources query gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Pods as reported (one pod from `Get`, or the node from `List`).
    Pods(Vec<PodDevices>),
    /// No answer: socket absent, timeout, kubelet error; the text says which.
    Unavailable(String),
}

/// Where a device was found allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `namespace/name`.
    pub pod: String,
    pub container: String,
    pub resource: String,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pod {} (container {}, resource {})",
            self.pod, self.container, self.resource
        )
    }
}

/// Why a device was not confirmed as the pod's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("device {device} is not allocated to pod {pod}; {}", held_by(holder))]
    NotAllocated {
        pod: String,
        device: PciAddress,
        holder: Option<Holder>,
    },
    #[error(
        "device {device} is allocated to pod {pod} as {resource}, which is not a fastpath pool"
    )]
    NotAPool {
        pod: String,
        device: PciAddress,
        resource: String,
    },
    #[error(
        "device {device} is allocated to pod {pod} as {actual}, but the network's resourceName is {wanted}"
    )]
    ResourceMismatch {
        pod: String,
        device: PciAddress,
        actual: String,
        wanted: String,
    },
    #[error(
        "pod {pod} is not listed by kubelet's PodResources API, so device {device} cannot be its"
    )]
    PodNotListed { pod: String, device: PciAddress },
    #[error(
        "CNI_ARGS carry no K8S_POD_NAMESPACE/K8S_POD_NAME, so the owner of device {device} cannot be checked"
    )]
    NoPodIdentity { device: PciAddress },
    #[error("ownership of device {device} by pod {pod} not verified: {reason}")]
    Unverified {
        pod: String,
        device: PciAddress,
        reason: String,
    },
}

fn held_by(holder: &Option<Holder>) -> String {
    match holder {
        Some(h) => format!("kubelet allocated it to {h}"),
        None => "kubelet allocated it to no pod".to_owned(),
    }
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Refused(Refusal),
    Warn(Refusal),
}

/// Everything the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    pub mode: Mode,
    pub pod: Option<&'a PodRef>,
    pub device: PciAddress,
    pub answer: &'a Answer,
    /// Full resource names of fastpath pools, when the caller knows them.
    pub pools: Option<&'a BTreeSet<String>>,
    /// The network's `resourceName`, when set.
    pub resource_name: Option<&'a str>,
}

/// The effective mode: the node's setting (default: enforce when the
/// socket exists, warn when it does not) raised, never lowered, by the
/// network's, because a NetworkAttachmentDefinition is tenant-writable.
pub fn effective_mode(node: Option<Mode>, network: Option<Mode>, socket_exists: bool) -> Mode {
    let node = node.unwrap_or(if socket_exists {
        Mode::Enforce
    } else {
        Mode::Warn
    });
    node.max(network.unwrap_or(Mode::Off))
}

/// Decides whether `input.pod` may have `input.device`.
pub fn decide(input: &CheckInput<'_>) -> Decision {
    if input.mode == Mode::Off {
        return Decision::Allowed;
    }
    match find_problem(input) {
        None => Decision::Allowed,
        Some(r) if input.mode == Mode::Warn => Decision::Warn(r),
        Some(r) => Decision::Refused(r),
    }
}

fn find_problem(input: &CheckInput<'_>) -> Option<Refusal> {
    let device = input.device;
    let Some(pod) = input.pod else {
        return Some(Refusal::NoPodIdentity { device });
    };
    let pod_name = format!("{}/{}", pod.namespace, pod.name);
    let pods = match input.answer {
        Answer::Pods(pods) => pods,
        Answer::Unavailable(reason) => {
            return Some(Refusal::Unverified {
                pod: pod_name,
                device,
                reason: reason.clone(),
            });
        }
    };
    let own: Vec<&PodDevices> = pods.iter().filter(|p| is_pod(p, pod)).collect();
    if own.is_empty() {
        return Some(Refusal::PodNotListed {
            pod: pod_name,
            device,
        });
    }
    // The same namespace/name may appear twice while an old incarnation
    // terminates; both are the same tenant identity.
    let Some(mine) = own.iter().find_map(|p| holding(p, device)) else {
        let holder = pods
            .iter()
            .filter(|p| !is_pod(p, pod))
            .find_map(|p| holding(p, device));
        return Some(Refusal::NotAllocated {
            pod: pod_name,
            device,
            holder,
        });
    };
    if let Some(pools) = input.pools
        && !pools.contains(&mine.resource)
    {
        return Some(Refusal::NotAPool {
            pod: pod_name,
            device,
            resource: mine.resource,
        });
    }
    if let Some(wanted) = input.resource_name
        && wanted != mine.resource
    {
        return Some(Refusal::ResourceMismatch {
            pod: pod_name,
            device,
            actual: mine.resource,
            wanted: wanted.to_owned(),
        });
    }
    None
}

fn is_pod(p: &PodDevices, pod: &PodRef) -> bool {
    p.namespace == pod.namespace && p.name == pod.name
}

/// Where in `p` the device is allocated. Ids that are not strict PCI
/// addresses (other plugins' devices, garbage) never match.
fn holding(p: &PodDevices, device: PciAddress) -> Option<Holder> {
    p.containers.iter().find_map(|c| {
        c.resources.iter().find_map(|r| {
            r.device_ids
                .iter()
                .any(|id| id.parse::<PciAddress>().ok() == Some(device))
                .then(|| Holder {
                    pod: format!("{}/{}", p.namespace, p.name),
                    container: c.name.clone(),
                    resource: r.resource_name.clone(),
                })
        })
    })
}

/// Why no device could be picked by resource name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "pod {pod} is not listed by kubelet's PodResources API; cannot pick a {resource} device"
    )]
    PodNotListed { pod: String, resource: String },
    #[error("kubelet allocated no {resource} device to pod {pod}")]
    NoDevices { pod: String, resource: String },
    #[error("all {count} {resource} devices of pod {pod} are already attached")]
    AllAttached {
        pod: String,
        resource: String,
        count: usize,
    },
    #[error("kubelet lists {resource} device id {id:?} for pod {pod}, which is not a PCI address")]
    MalformedDeviceId {
        pod: String,
        resource: String,
        id: String,
    },
}

/// Picks the pod's lowest-addressed `resource` device not in `attached`.
/// kubelet's id order is not stable between calls, so "first" is by PCI
/// address: separate ADDs of one pod then agree on the order.
pub fn resolve_device(
    pods: &[PodDevices],
    pod: &PodRef,
    resource: &str,
    attached: &BTreeSet<PciAddress>,
) -> Result<PciAddress, ResolveError> {
    let pod_name = format!("{}/{}", pod.namespace, pod.name);
    let own: Vec<&PodDevices> = pods.iter().filter(|p| is_pod(p, pod)).collect();
    if own.is_empty() {
        return Err(ResolveError::PodNotListed {
            pod: pod_name,
            resource: resource.to_owned(),
        });
    }
    let mut devices = BTreeSet::new();
    let ids = own
        .iter()
        .flat_map(|p| &p.containers)
        .flat_map(|c| &c.resources)
        .filter(|r| r.resource_name == resource)
        .flat_map(|r| &r.device_ids);
    for id in ids {
        let addr = id
            .parse::<PciAddress>()
            .map_err(|_| ResolveError::MalformedDeviceId {
                pod: pod_name.clone(),
                resource: resource.to_owned(),
                id: id.clone(),
            })?;
        devices.insert(addr);
    }
    if devices.is_empty() {
        return Err(ResolveError::NoDevices {
            pod: pod_name,
            resource: resource.to_owned(),
        });
    }
    let count = devices.len();
    devices
        .into_iter()
        .find(|d| !attached.contains(d))
        .ok_or(ResolveError::AllAttached {
            pod: pod_name,
            resource: resource.to_owned(),
            count,
        })
}
