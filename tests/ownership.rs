//! The pod ownership check against a fake kubelet serving the real
//! PodResources v1 API over a unix socket.

#[path = "support/podresources_fake.rs"]
mod podresources_fake;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use fastpath::ownership::{
    Mode, NodeOwnership, OwnershipError, OwnershipNetConf, PodRef, Refusal, check_add,
};
use fastpath::pci::PciAddress;
use fastpath::podresources::{PodResourcesClient, PodResourcesError, Source};
use podresources_fake::{FakeKubelet, FakeState, GetMode, SilentSocket, pod};

const RES: &str = "intel.com/sriov_netdevice";

fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn web() -> PodRef {
    PodRef::from_cni_args(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web;K8S_POD_UID=1234",
    )
    .unwrap()
}

fn state(get: GetMode) -> FakeState {
    FakeState {
        pods: vec![
            pod(
                "tenant-a",
                "web",
                &[(RES, &["0000:3b:02.1", "0000:3b:02.0"])],
            ),
            pod("tenant-b", "db", &[(RES, &["0000:3b:02.2"])]),
            pod(
                "tenant-b",
                "odd",
                &[("example.com/thing", &["not-a-pci", "0000:3b:2.3"])],
            ),
            pod("tenant-a", "idle", &[]),
        ],
        get,
        delay: Duration::ZERO,
    }
}

fn node(socket: &Path, mode: Option<Mode>) -> NodeOwnership {
    NodeOwnership {
        ownership: mode,
        pod_resources_socket: socket.to_owned(),
        pod_resources_timeout_ms: 2000,
        pool_resource_names: Some([RES.to_owned()].into()),
    }
}

fn conf(ownership: Option<Mode>, resource: Option<&str>) -> OwnershipNetConf {
    OwnershipNetConf {
        ownership,
        resource_name: resource.map(str::to_owned),
    }
}

fn none() -> BTreeSet<PciAddress> {
    BTreeSet::new()
}

#[test]
fn refuses_a_foreign_device_in_enforce_mode_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let err = check_add(
        &node(&k.socket, None),
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.2")),
        &none(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ownership check refused: device 0000:3b:02.2 is not allocated to pod tenant-a/web; \
         kubelet allocated it to pod tenant-b/db (container app, resource intel.com/sriov_netdevice)"
    );
    assert_eq!(err.cni_code(), 7);
    // Get answered for the pod, then List named the holder.
    assert_eq!((k.gets(), k.lists()), (1, 1));
}

#[test]
fn refuses_a_pf_or_unallocated_device() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let err = check_add(
        &node(&k.socket, None),
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:00.0")),
        &none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            OwnershipError::Refused(Refusal::NotAllocated { holder: None, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("kubelet allocated it to no pod"),
        "{err}"
    );
}

#[test]
fn allows_the_pods_own_device_with_one_get() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let ok = check_add(
        &node(&k.socket, None),
        &conf(None, Some(RES)),
        Some(&web()),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap();
    assert_eq!(
        (ok.device, ok.resolved, ok.warning),
        (pci("0000:3b:02.1"), false, None)
    );
    assert_eq!((k.gets(), k.lists()), (1, 0));
}

#[test]
fn warn_mode_proceeds_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let ok = check_add(
        &node(&k.socket, Some(Mode::Warn)),
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.2")),
        &none(),
    )
    .unwrap();
    assert_eq!(ok.device, pci("0000:3b:02.2"));
    let w = ok.warning.expect("warning").to_string();
    assert!(w.contains("tenant-b/db"), "{w}");
}

#[test]
fn a_network_cannot_switch_the_check_off() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let err = check_add(
        &node(&k.socket, None),
        &conf(Some(Mode::Off), None),
        Some(&web()),
        Some(pci("0000:3b:02.2")),
        &none(),
    )
    .unwrap_err();
    assert!(matches!(err, OwnershipError::Refused(_)), "{err}");
    // The node can.
    let ok = check_add(
        &node(&k.socket, Some(Mode::Off)),
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.2")),
        &none(),
    );
    assert_eq!(ok.unwrap().warning, None);
    assert_eq!(k.gets(), 1, "off mode does not ask kubelet");
}

#[test]
fn resolves_a_missing_device_id_by_resource_name() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let n = node(&k.socket, None);
    let c = conf(None, Some(RES));
    let first = check_add(&n, &c, Some(&web()), None, &none()).unwrap();
    assert_eq!((first.device, first.resolved), (pci("0000:3b:02.0"), true));
    let attached: BTreeSet<_> = [first.device].into();
    let second = check_add(&n, &c, Some(&web()), None, &attached).unwrap();
    assert_eq!(second.device, pci("0000:3b:02.1"));
    let all: BTreeSet<_> = [first.device, second.device].into();
    let err = check_add(&n, &c, Some(&web()), None, &all).unwrap_err();
    assert!(
        err.to_string().contains(
            "all 2 intel.com/sriov_netdevice devices of pod tenant-a/web are already attached"
        ),
        "{err}"
    );
    let err = check_add(&n, &conf(None, None), Some(&web()), None, &none()).unwrap_err();
    assert!(matches!(err, OwnershipError::NoDeviceOrResource), "{err}");
    let err = check_add(&n, &c, None, None, &none()).unwrap_err();
    assert!(
        matches!(err, OwnershipError::NoPodToResolve { .. }),
        "{err}"
    );
}

#[test]
fn pod_with_no_devices() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let idle = PodRef::from_cni_args("K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=idle").unwrap();
    let n = node(&k.socket, None);
    let err = check_add(
        &n,
        &conf(None, None),
        Some(&idle),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "not allocated to pod tenant-a/idle; kubelet allocated it to pod tenant-a/web"
        ),
        "{err}"
    );
    let err = check_add(&n, &conf(None, Some(RES)), Some(&idle), None, &none()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "resolving deviceID by resourceName: kubelet allocated no intel.com/sriov_netdevice device to pod tenant-a/idle"
    );
}

#[test]
fn pod_unknown_to_kubelet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = FakeKubelet::start(dir.path(), state(GetMode::Serve));
    let ghost = PodRef::from_cni_args("K8S_POD_NAMESPACE=x;K8S_POD_NAME=ghost").unwrap();
    let err = check_add(
        &node(&k.socket, None),
        &conf(None, None),
        Some(&ghost),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("pod x/ghost is not listed"),
        "{err}"
    );
}

#[test]
fn get_unimplemented_or_disabled_falls_back_to_list() {
    for mode in [GetMode::Unimplemented, GetMode::Disabled] {
        let dir = tempfile::tempdir().unwrap();
        let k = FakeKubelet::start(dir.path(), state(mode));
        let client = PodResourcesClient::new(&k.socket, Duration::from_secs(2));
        let a = client.pod("tenant-a", "web").unwrap();
        assert_eq!(a.source, Source::List, "{mode:?}");
        assert_eq!(a.pods.len(), 4, "{mode:?}: the whole node");
        let own = a
            .pods
            .iter()
            .find(|p| p.namespace == "tenant-a" && p.name == "web")
            .unwrap();
        assert_eq!(own.containers[0].resources[0].resource_name, RES);
        assert_eq!(
            own.containers[0].resources[0].device_ids,
            ["0000:3b:02.1", "0000:3b:02.0"]
        );
        let err = check_add(
            &node(&k.socket, None),
            &conf(None, None),
            Some(&web()),
            Some(pci("0000:3b:02.2")),
            &none(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tenant-b/db"), "{mode:?}: {err}");
        assert!(
            check_add(
                &node(&k.socket, None),
                &conf(None, None),
                Some(&web()),
                Some(pci("0000:3b:02.0")),
                &none()
            )
            .is_ok()
        );
        // One List per fallback, none extra for the holder.
        assert_eq!((k.gets(), k.lists()), (3, 3), "{mode:?}");
    }
}

#[test]
fn socket_absent() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("kubelet.sock");
    let dev = Some(pci("0000:3b:02.1"));
    // Default: proceed with a warning, so clusters without the API work.
    let ok = check_add(
        &node(&absent, None),
        &conf(None, None),
        Some(&web()),
        dev,
        &none(),
    )
    .unwrap();
    let w = ok.warning.expect("warning").to_string();
    assert!(w.contains("does not exist"), "{w}");
    // Enforce, from the node or demanded by the network: fail closed.
    for (n, c) in [(Some(Mode::Enforce), None), (None, Some(Mode::Enforce))] {
        let err = check_add(
            &node(&absent, n),
            &conf(c, None),
            Some(&web()),
            dev,
            &none(),
        )
        .unwrap_err();
        assert!(
            matches!(err, OwnershipError::Refused(Refusal::Unverified { .. })),
            "{err}"
        );
        assert_eq!(err.cni_code(), 11);
    }
    let ok = check_add(
        &node(&absent, Some(Mode::Off)),
        &conf(None, None),
        Some(&web()),
        dev,
        &none(),
    )
    .unwrap();
    assert_eq!(ok.warning, None);
    // Resolution needs kubelet whatever the mode.
    let err = check_add(
        &node(&absent, Some(Mode::Off)),
        &conf(None, Some(RES)),
        Some(&web()),
        None,
        &none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            OwnershipError::PodResources {
                source: PodResourcesError::SocketAbsent { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_silent_or_slow_kubelet_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let silent = SilentSocket::bind(dir.path());
    let mut n = node(&silent.socket, None);
    n.pod_resources_timeout_ms = 200;
    let t = Instant::now();
    let err = check_add(
        &n,
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap_err();
    let took = t.elapsed();
    assert!(
        err.to_string().contains("did not answer within 200 ms"),
        "{err}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(err.cni_code(), 11);

    let dir = tempfile::tempdir().unwrap();
    let mut slow = state(GetMode::Serve);
    slow.delay = Duration::from_secs(5);
    let k = FakeKubelet::start(dir.path(), slow);
    let mut n = node(&k.socket, Some(Mode::Warn));
    n.pod_resources_timeout_ms = 200;
    let t = Instant::now();
    let ok = check_add(
        &n,
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert!(ok.warning.unwrap().to_string().contains("did not answer"));
}

#[test]
fn malformed_device_ids_in_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(GetMode::Serve);
    s.pods.push(pod(
        "tenant-c",
        "bad",
        &[(RES, &["0000:3b:02.7", "3b:02.6", "0000:3b:02.5 "])],
    ));
    let k = FakeKubelet::start(dir.path(), s);
    let n = node(&k.socket, None);
    // Other pods' garbage does not disturb the check.
    assert!(
        check_add(
            &n,
            &conf(None, None),
            Some(&web()),
            Some(pci("0000:3b:02.1")),
            &none()
        )
        .is_ok()
    );
    // A device named only by a malformed id belongs to nobody.
    let bad = PodRef::from_cni_args("K8S_POD_NAMESPACE=tenant-c;K8S_POD_NAME=bad").unwrap();
    for dev in ["0000:3b:02.6", "0000:3b:02.5"] {
        let err =
            check_add(&n, &conf(None, None), Some(&bad), Some(pci(dev)), &none()).unwrap_err();
        assert!(err.to_string().contains("allocated it to no pod"), "{err}");
    }
    assert!(
        check_add(
            &n,
            &conf(None, None),
            Some(&bad),
            Some(pci("0000:3b:02.7")),
            &none()
        )
        .is_ok()
    );
    // Resolution refuses to guess around a malformed id of the resource.
    let err = check_add(&n, &conf(None, Some(RES)), Some(&bad), None, &none()).unwrap_err();
    assert!(
        err.to_string()
            .contains("device id \"3b:02.6\" for pod tenant-c/bad, which is not a PCI address"),
        "{err}"
    );
}

#[test]
fn not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubelet.sock");
    std::fs::write(&file, "").unwrap();
    let err = check_add(
        &node(&file, None),
        &conf(None, None),
        Some(&web()),
        Some(pci("0000:3b:02.1")),
        &none(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("is not a unix socket"), "{err}");
}
