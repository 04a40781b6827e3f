//! Table tests for the pure ownership decision and device resolution.

use std::collections::BTreeSet;

use super::*;
use crate::podresources::{ContainerDevices, PodDevices, ResourceDevices};

const RES: &str = "intel.com/sriov_netdevice";

fn pod_with(ns: &str, name: &str, devs: &[(&str, &[&str])]) -> PodDevices {
    PodDevices {
        namespace: ns.into(),
        name: name.into(),
        containers: vec![ContainerDevices {
            name: "app".into(),
            resources: devs
                .iter()
                .map(|(r, ids)| ResourceDevices {
                    resource_name: (*r).into(),
                    device_ids: ids.iter().map(|s| (*s).into()).collect(),
                })
                .collect(),
        }],
    }
}

fn me() -> PodRef {
    PodRef {
        namespace: "tenant-a".into(),
        name: "web".into(),
        uid: Some("u-1".into()),
    }
}

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn node() -> Vec<PodDevices> {
    vec![
        pod_with(
            "tenant-a",
            "web",
            &[(RES, &["0000:3b:02.1", "0000:3b:02.0"])],
        ),
        pod_with("tenant-b", "db", &[(RES, &["0000:3b:02.2"])]),
        pod_with(
            "tenant-b",
            "gpu",
            &[("nvidia.com/gpu", &["GPU-1234", "0000:af:00.0"])],
        ),
        pod_with("tenant-a", "idle", &[]),
    ]
}

#[derive(Debug)]
enum Want {
    Allowed,
    Refused(&'static str),
    Warn(&'static str),
}

/// what, mode, pod, device, answer, pools, network resourceName, expected.
type Case<'a> = (
    &'a str,
    Mode,
    Option<&'a PodRef>,
    &'a str,
    &'a Answer,
    Option<&'a BTreeSet<String>>,
    Option<&'a str>,
    Want,
);

#[test]
fn decision_table() {
    let pools: BTreeSet<String> = [RES.to_owned()].into();
    let pods = Answer::Pods(node());
    let down = Answer::Unavailable("socket absent".into());
    let other = PodRef {
        namespace: "tenant-a".into(),
        name: "ghost".into(),
        uid: None,
    };
    let me = me();
    let ghost_only = Answer::Pods(vec![pod_with("tenant-a", "ghost", &[])]);
    let other_pool: BTreeSet<String> = ["intel.com/other".to_owned()].into();
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("own device", Mode::Enforce, Some(&me), "0000:3b:02.1", &pods, Some(&pools), Some(RES), Want::Allowed),
        ("own device, upper-case id in answer matches", Mode::Enforce, Some(&me), "0000:3B:02.0", &pods, None, None, Want::Allowed),
        ("foreign device names holder", Mode::Enforce, Some(&me), "0000:3b:02.2", &pods, Some(&pools), None,
            Want::Refused("device 0000:3b:02.2 is not allocated to pod tenant-a/web; kubelet allocated it to pod tenant-b/db (container app, resource intel.com/sriov_netdevice)")),
        ("foreign device warns in warn mode", Mode::Warn, Some(&me), "0000:3b:02.2", &pods, None, None,
            Want::Warn("not allocated to pod tenant-a/web; kubelet allocated it to pod tenant-b/db")),
        ("foreign device allowed when off", Mode::Off, Some(&me), "0000:3b:02.2", &pods, None, None, Want::Allowed),
        ("unallocated device (a PF)", Mode::Enforce, Some(&me), "0000:3b:00.0", &pods, None, None,
            Want::Refused("device 0000:3b:00.0 is not allocated to pod tenant-a/web; kubelet allocated it to no pod")),
        ("device of another plugin's pod", Mode::Enforce, Some(&me), "0000:af:00.0", &pods, None, None,
            Want::Refused("allocated it to pod tenant-b/gpu (container app, resource nvidia.com/gpu)")),
        ("pod with no devices", Mode::Enforce, Some(&other), "0000:3b:02.1", &ghost_only, None, None,
            Want::Refused("not allocated to pod tenant-a/ghost")),
        ("pod unknown to kubelet", Mode::Enforce, Some(&other), "0000:3b:02.1", &pods, None, None,
            Want::Refused("pod tenant-a/ghost is not listed by kubelet's PodResources API, so device 0000:3b:02.1 cannot be its")),
        ("no pod identity", Mode::Enforce, None, "0000:3b:02.1", &pods, None, None,
            Want::Refused("CNI_ARGS carry no K8S_POD_NAMESPACE/K8S_POD_NAME")),
        ("no pod identity, warn", Mode::Warn, None, "0000:3b:02.1", &pods, None, None, Want::Warn("CNI_ARGS carry no")),
        ("kubelet unavailable, enforce fails closed", Mode::Enforce, Some(&me), "0000:3b:02.1", &down, None, None,
            Want::Refused("ownership of device 0000:3b:02.1 by pod tenant-a/web not verified: socket absent")),
        ("kubelet unavailable, warn proceeds", Mode::Warn, Some(&me), "0000:3b:02.1", &down, None, None, Want::Warn("not verified")),
        ("own device under a non-pool resource", Mode::Enforce, Some(&me), "0000:3b:02.1", &pods, Some(&other_pool), None,
            Want::Refused("allocated to pod tenant-a/web as intel.com/sriov_netdevice, which is not a fastpath pool")),
        ("own device, network's resourceName differs", Mode::Enforce, Some(&me), "0000:3b:02.1", &pods, None, Some("intel.com/dpdk"),
            Want::Refused("the network's resourceName is intel.com/dpdk")),
    ];
    for (what, mode, pod, dev, answer, pools, res, want) in cases {
        let got = decide(&CheckInput {
            mode,
            pod,
            device: pci(dev),
            answer,
            pools,
            resource_name: res,
        });
        match (&want, &got) {
            (Want::Allowed, Decision::Allowed) => {}
            (Want::Refused(m), Decision::Refused(r)) | (Want::Warn(m), Decision::Warn(r)) => {
                assert!(r.to_string().contains(m), "{what}: {r} lacks {m:?}")
            }
            _ => panic!("{what}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn same_name_twice_counts_as_the_pod() {
    let pods = Answer::Pods(vec![
        pod_with("tenant-a", "web", &[]),
        pod_with("tenant-a", "web", &[(RES, &["0000:3b:02.1"])]),
    ]);
    let d = decide(&CheckInput {
        mode: Mode::Enforce,
        pod: Some(&me()),
        device: pci("0000:3b:02.1"),
        answer: &pods,
        pools: None,
        resource_name: None,
    });
    assert_eq!(d, Decision::Allowed);
}

#[test]
fn effective_mode_table() {
    use Mode::*;
    #[rustfmt::skip]
    let cases = [
        // node, network, socket exists -> effective
        (None, None, true, Enforce),
        (None, None, false, Warn),
        (None, Some(Off), true, Enforce), // a tenant cannot switch it off
        (None, Some(Warn), true, Enforce),
        (None, Some(Enforce), false, Enforce), // but can demand it
        (Some(Off), None, true, Off),
        (Some(Off), Some(Warn), true, Warn),
        (Some(Warn), None, true, Warn),
        (Some(Warn), Some(Off), false, Warn),
        (Some(Enforce), Some(Off), false, Enforce),
    ];
    for (n, c, s, want) in cases {
        assert_eq!(
            effective_mode(n, c, s),
            want,
            "node {n:?} network {c:?} socket {s}"
        );
    }
}

#[test]
fn resolve_table() {
    let pods = node();
    let none = BTreeSet::new();
    let first: BTreeSet<PciAddress> = [pci("0000:3b:02.0")].into();
    let both: BTreeSet<PciAddress> = [pci("0000:3b:02.0"), pci("0000:3b:02.1")].into();
    let idle = PodRef {
        namespace: "tenant-a".into(),
        name: "idle".into(),
        uid: None,
    };
    let ghost = PodRef {
        namespace: "x".into(),
        name: "ghost".into(),
        uid: None,
    };
    // Lowest address first regardless of kubelet's order.
    assert_eq!(
        resolve_device(&pods, &me(), RES, &none),
        Ok(pci("0000:3b:02.0"))
    );
    assert_eq!(
        resolve_device(&pods, &me(), RES, &first),
        Ok(pci("0000:3b:02.1"))
    );
    let err = |r: Result<PciAddress, ResolveError>| r.unwrap_err().to_string();
    assert_eq!(
        err(resolve_device(&pods, &me(), RES, &both)),
        "all 2 intel.com/sriov_netdevice devices of pod tenant-a/web are already attached"
    );
    assert_eq!(
        err(resolve_device(&pods, &idle, RES, &none)),
        "kubelet allocated no intel.com/sriov_netdevice device to pod tenant-a/idle"
    );
    assert!(err(resolve_device(&pods, &ghost, RES, &none)).contains("not listed"));
    // Another pod's device of the same resource is never picked.
    assert_eq!(
        err(resolve_device(&pods, &me(), "intel.com/dpdk", &none)),
        "kubelet allocated no intel.com/dpdk device to pod tenant-a/web"
    );
    let bad = vec![pod_with(
        "tenant-a",
        "web",
        &[(RES, &["0000:3b:02.1", "3b:02.1"])],
    )];
    assert_eq!(
        err(resolve_device(&bad, &me(), RES, &none)),
        "kubelet lists intel.com/sriov_netdevice device id \"3b:02.1\" for pod tenant-a/web, which is not a PCI address"
    );
}

#[test]
fn cni_args_pod() {
    let p = PodRef::from_cni_args(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u",
    )
    .unwrap();
    assert_eq!(
        (p.namespace.as_str(), p.name.as_str(), p.uid.as_deref()),
        ("ns", "p", Some("u"))
    );
    assert_eq!(PodRef::from_cni_args("K8S_POD_NAME=p"), None);
    assert_eq!(
        PodRef::from_cni_args("K8S_POD_NAMESPACE=;K8S_POD_NAME=p"),
        None
    );
    assert_eq!(PodRef::from_cni_args(""), None);
}

#[test]
fn net_conf_fields() {
    let c: OwnershipNetConf =
        serde_json::from_str(r#"{"ownership":"warn","resourceName":"intel.com/x","deviceID":"y"}"#)
            .unwrap();
    assert_eq!(c.ownership, Some(Mode::Warn));
    assert_eq!(c.resource_name.as_deref(), Some("intel.com/x"));
    let e = serde_json::from_str::<OwnershipNetConf>(r#"{"ownership":"lax"}"#).unwrap_err();
    assert!(e.to_string().contains("unknown variant `lax`"), "{e}");
}

#[test]
fn node_config_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ownership.json");
    assert_eq!(
        NodeOwnership::load(&path).unwrap(),
        NodeOwnership::default()
    );
    std::fs::write(
        &path,
        r#"{"ownership":"warn","podResourcesSocket":"/run/pr.sock","podResourcesTimeoutMs":250,"poolResourceNames":["a/b"]}"#,
    )
    .unwrap();
    let n = NodeOwnership::load(&path).unwrap();
    assert_eq!(n.ownership, Some(Mode::Warn));
    assert_eq!(n.pod_resources_socket, std::path::Path::new("/run/pr.sock"));
    assert_eq!(n.pod_resources_timeout_ms, 250);
    std::fs::write(&path, r#"{"podResourcesTimeoutMs":0}"#).unwrap();
    assert!(
        NodeOwnership::load(&path)
            .unwrap_err()
            .to_string()
            .contains("podResourcesTimeoutMs 0")
    );
    std::fs::write(&path, r#"{"ownershipp":"off"}"#).unwrap();
    assert!(
        NodeOwnership::load(&path)
            .unwrap_err()
            .to_string()
            .contains("ownershipp")
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn dev_id() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4, 0u8..2).prop_map(|(d, f)| format!("0000:3b:{d:02x}.{f}")),
            (0u8..4, 0u8..2).prop_map(|(d, f)| format!("0000:3B:{d:02X}.{f}")),
            "[ -~]{0,14}",
        ]
    }

    fn pods() -> impl Strategy<Value = Vec<PodDevices>> {
        let pod = (
            0u8..3,
            0u8..3,
            prop::collection::vec((0u8..2, prop::collection::vec(dev_id(), 0..4)), 0..3),
        )
            .prop_map(|(ns, name, res)| PodDevices {
                namespace: format!("ns{ns}"),
                name: format!("p{name}"),
                containers: vec![ContainerDevices {
                    name: "c".into(),
                    resources: res
                        .into_iter()
                        .map(|(r, ids)| ResourceDevices {
                            resource_name: format!("example.com/r{r}"),
                            device_ids: ids,
                        })
                        .collect(),
                }],
            });
        prop::collection::vec(pod, 0..6)
    }

    proptest! {
        /// The security invariant: enforce mode allows a device only if
        /// kubelet lists it (as a strict PCI address) for that very pod,
        /// and a resolved device is always one of the pod's, never attached.
        #[test]
        fn enforce_allows_only_the_pods_own_devices(
            pods in pods(), ns in 0u8..3, name in 0u8..3, d in 0u8..4, f in 0u8..2,
            attached in prop::collection::btree_set((0u8..4, 0u8..2), 0..4),
        ) {
            let me = PodRef { namespace: format!("ns{ns}"), name: format!("p{name}"), uid: None };
            let device = PciAddress::new(0, 0x3b, d, f).unwrap();
            let answer = Answer::Pods(pods.clone());
            let decision = decide(&CheckInput {
                mode: Mode::Enforce, pod: Some(&me), device, answer: &answer, pools: None, resource_name: None,
            });
            let owned = |dev: PciAddress| pods.iter()
                .filter(|p| p.namespace == me.namespace && p.name == me.name)
                .flat_map(|p| &p.containers)
                .flat_map(|c| &c.resources)
                .flat_map(|r| &r.device_ids)
                .any(|id| id.parse::<PciAddress>().ok() == Some(dev));
            prop_assert_eq!(decision == Decision::Allowed, owned(device));
            let attached: BTreeSet<PciAddress> =
                attached.into_iter().map(|(d, f)| PciAddress::new(0, 0x3b, d, f).unwrap()).collect();
            if let Ok(dev) = resolve_device(&pods, &me, "example.com/r0", &attached) {
                prop_assert!(owned(dev));
                prop_assert!(!attached.contains(&dev));
            }
        }
    }
}
