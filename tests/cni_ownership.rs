//! The CNI's pod ownership check, end to end: a real ADD on a veth
//! stand-in asks a fake kubelet serving the real PodResources v1 API
//! whether the pod in CNI_ARGS was given the VF, before touching anything.

mod cni_host;
#[path = "support/podresources_fake.rs"]
mod podresources_fake;

use std::time::Duration;

use cni_host::{Host, host_link, ns_link};
use podresources_fake::{FakeKubelet, FakeState, GetMode, pod};
use serde_json::json;

const RES: &str = "intel.com/sriov_net";

/// A host with two VF stand-ins; kubelet gave VF 0 to pod-c0 and VF 1 to
/// pod-other; the node's ownership settings point at the fake.
fn setup(tag: &str) -> (Host, FakeKubelet, tempfile::TempDir) {
    let h = Host::new(tag, 2);
    let dir = tempfile::tempdir().unwrap();
    let (vf0, vf1) = (h.vfs[0].pci.clone(), h.vfs[1].pci.clone());
    let fake = FakeKubelet::start(
        dir.path(),
        FakeState {
            pods: vec![
                pod("ns", "pod-c0", &[(RES, &[vf0.as_str()])]),
                pod("ns", "pod-other", &[(RES, &[vf1.as_str()])]),
            ],
            get: GetMode::Serve,
            delay: Duration::ZERO,
        },
    );
    let settings = dir.path().join("ownership.json");
    std::fs::write(
        &settings,
        json!({"podResourcesSocket": fake.socket}).to_string(),
    )
    .unwrap();
    (h, fake, dir)
}

fn env_with_settings(
    h: &Host,
    pod_netns: &str,
    dir: &tempfile::TempDir,
) -> fastpath::cni::env::Env {
    let mut env = h.env("c0", "net1", Some(pod_netns));
    env.insert(
        "FASTPATH_OWNERSHIP_CONFIG".into(),
        dir.path().join("ownership.json").display().to_string(),
    );
    env
}

#[test]
fn a_foreign_device_id_is_refused_and_nothing_changes() {
    let (mut h, _fake, dir) = setup("ow");
    let netns = h.pod(0);
    let env = env_with_settings(&h, &netns, &dir);
    // The NAD names VF 1, which kubelet gave to pod-other.
    let conf = h.conf("1.0.0", 1, json!({}));
    let (code, err) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err["code"], 7, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains("ns/pod-c0"), "{msg}");
    assert!(msg.contains(&h.vfs[1].pci), "{msg}");
    assert!(msg.contains("pod-other"), "names the holder: {msg}");
    // Nothing moved, nothing recorded, no lease taken.
    assert!(host_link(&h.vfs[1].ifname).is_some());
    assert!(ns_link(&netns, "net1").is_none());
    assert!(h.records().is_empty() && h.leases().is_empty());
}

#[test]
fn the_pods_own_device_is_attached_and_a_missing_device_id_is_resolved() {
    let (mut h, _fake, dir) = setup("oo");
    let netns = h.pod(0);
    let env = env_with_settings(&h, &netns, &dir);
    // No deviceID: resolved from PodResources by the NAD's resourceName.
    let conf = h.conf("1.1.0", 0, json!({"deviceID": null, "resourceName": RES}));
    let (code, res) = h.cni("ADD", &env, &conf);
    assert_eq!(code, 0, "{res}");
    assert_eq!(res["interfaces"][0]["pciID"], h.vfs[0].pci.as_str());
    assert!(ns_link(&netns, "net1").is_some());
    let (code, res) = h.cni("DEL", &env, &conf);
    assert_eq!(code, 0, "{res}");
    h.assert_vf_home(0);
}
