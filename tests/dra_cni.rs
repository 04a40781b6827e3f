//! The CNI path for a DRA-prepared netdevice VF: kubelet lists the claim's
//! device under the pod's `dynamic_resources` in PodResources, Multus
//! passes its PCI address as `deviceID`, and the CNI's ownership check and
//! ADD/DEL work as for a device-plugin VF (run as root: real links).

mod cni_host;
mod dra_rig;
#[path = "support/podresources_fake.rs"]
mod podresources_fake;

use std::time::Duration;

use cni_host::{host_link, ns_link};
use device_plugin::podresources as api;
use dra_rig::{DRIVER, NODE, Rig, id};
use podresources_fake::{FakeKubelet, FakeState, GetMode, pod};
use serde_json::json;

/// A pod whose container got `device` through claim `claim`.
fn dra_pod(name: &str, claim: &str, device: &str) -> api::PodResources {
    let mut p = pod("ns", name, &[]);
    p.containers[0].dynamic_resources = vec![api::DynamicResource {
        claim_name: claim.into(),
        claim_namespace: "ns".into(),
        claim_resources: vec![api::ClaimResource {
            cdi_devices: vec![],
            driver_name: DRIVER.into(),
            pool_name: NODE.into(),
            device_name: device.into(),
        }],
    }];
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
    let device = r.claims["u1"].devices[0].device_name.clone();

    let dir = tempfile::tempdir().unwrap();
    let _pr = FakeKubelet::start(
        dir.path(),
        FakeState {
            pods: vec![
                dra_pod("pod-c0", "claim-u1", &device),
                pod("ns", "pod-c1", &[]),
            ],
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
    // Multus passes the VF's address as deviceID.
    let conf = h.conf("1.1.0", 0, json!({}));
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
