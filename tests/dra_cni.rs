//! The CNI path for a DRA-prepared netdevice VF: kubelet lists the claim's
//! device under the pod's `dynamic_resources` in PodResources, released
//! Multus (its lookup replayed on that list) passes the text after `=` of
//! the CDI device ID, the PCI address, as `deviceID`, and the CNI's
//! ownership check and ADD/DEL work as for a device-plugin VF (run as
//! root: real links).

mod cni_host;
mod dra_rig;
#[path = "support/podresources_fake.rs"]
mod podresources_fake;
#[path = "support/released_multus.rs"]
mod released_multus;

use std::time::Duration;

use cni_host::{host_link, ns_link};
use device_plugin::podresources as api;
use dra_rig::{DRIVER, Rig, id};
use podresources_fake::{FakeKubelet, FakeState, GetMode, pod};
use serde_json::json;

/// A pod whose container got `devices` (pool, device, CDI IDs: the
/// NodePrepareResources answer) through claim `claim`, as kubelet lists it.
fn dra_pod(
    name: &str,
    claim: &str,
    devices: &[(String, String, Vec<String>)],
) -> api::PodResources {
    let mut p = pod("ns", name, &[]);
    p.containers[0].dynamic_resources = vec![released_multus::dynamic_resource(
        "ns", claim, DRIVER, devices,
    )];
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dra_prepared_vf_is_attached_by_the_cni_to_its_pod_only() {
    let mut rig = Rig::new("drc", 2, &[]).await;
    rig.claim(
        "u1",
        &[("net", 0)],
        json!({"driver": "netdevice", "mtu": 9000}),
    );
    let mut kubelet = rig.kubelet("v1").await;
    let c = [id("u1")];
    let claims: Vec<_> = c
        .iter()
        .map(|(a, b, u)| (a.as_str(), b.as_str(), u.as_str()))
        .collect();
    let r = kubelet.prepare(&claims).await.unwrap();
    assert_eq!(r.claims["u1"].error, "");
    let answer: Vec<(String, String, Vec<String>)> = r.claims["u1"]
        .devices
        .iter()
        .map(|d| {
            (
                d.pool_name.clone(),
                d.device_name.clone(),
                d.cdi_device_ids.clone(),
            )
        })
        .collect();
    let pods = vec![
        dra_pod("pod-c0", "claim-u1", &answer),
        pod("ns", "pod-c1", &[]),
    ];
    // Released Multus keys the device by the claim's name (the NAD's
    // resourceName must be it) and hands the text after '=' of its CDI
    // device ID to the CNI: the VF's address.
    let map = released_multus::resource_map(&pods, "ns", "pod-c0");
    let device_id = released_multus::device_id(&map, "claim-u1", 0);
    assert_eq!(device_id.as_deref(), Some(rig.pci(0).as_str()), "{map:?}");

    let dir = tempfile::tempdir().unwrap();
    let _pr = FakeKubelet::start(
        dir.path(),
        FakeState {
            pods,
            get: GetMode::Serve,
            delay: Duration::ZERO,
        },
    );
    let settings = dir.path().join("ownership.json");
    std::fs::write(
        &settings,
        json!({"podResourcesSocket": dir.path().join("kubelet.sock")}).to_string(),
    )
    .unwrap();
    let mine = rig.host.pod(0);
    let other = rig.host.pod(1);
    let h = &rig.host;
    let env_for = |container: &str, netns: &str| {
        let mut e = h.env(container, "net1", Some(netns));
        e.insert(
            "FASTPATH_OWNERSHIP_CONFIG".into(),
            settings.display().to_string(),
        );
        e
    };
    // The deviceID released Multus found.
    let conf = h.conf("1.1.0", 0, json!({ "deviceID": device_id }));
    let (other_env, my_env) = (env_for("c1", &other), env_for("c0", &mine));
    let (refused, added) = std::thread::scope(|s| {
        let refused = s.spawn(|| h.cni("ADD", &other_env, &conf)).join().unwrap();
        let added = s.spawn(|| h.cni("ADD", &my_env, &conf)).join().unwrap();
        (refused, added)
    });
    assert_eq!(refused.0, 1, "{}", refused.1);
    let msg = refused.1["msg"].as_str().unwrap();
    assert!(msg.contains("ns/pod-c1") && msg.contains("pod-c0"), "{msg}");
    assert_eq!(added.0, 0, "{}", added.1);
    assert_eq!(added.1["interfaces"][0]["pciID"], rig.pci(0).as_str());
    // The MTU the claim asked for went into the pod with the VF.
    assert_eq!(ns_link(&mine, "net1").unwrap().mtu, 9000);

    let (code, res) =
        std::thread::scope(|s| s.spawn(|| h.cni("DEL", &my_env, &conf)).join().unwrap());
    assert_eq!(code, 0, "{res}");
    assert!(host_link(&rig.host.vfs[0].ifname).is_some());
    let un = kubelet.unprepare(&claims).await.unwrap();
    assert_eq!(un.claims["u1"].error, "");
    assert_ne!(host_link(&rig.host.vfs[0].ifname).unwrap().mtu, 9000);
}
