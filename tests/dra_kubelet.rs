//! The DRA kubelet plugin end to end on real unix sockets and real links
//! (run as root): kubelet's plugin watcher and DRA client from the fake
//! kubelet, a table of claims for the API server, VF stand-ins (veths on
//! a fake sysfs) whose MTU prepare really changes and unprepare restores.

mod cni_host;
mod dra_rig;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use cni_host::host_link;
use dra_rig::{DRIVER, NODE, Rig, id};
use fake_kubelet::ClaimId;
use serde_json::json;

fn ids(v: &[(String, String, String)]) -> Vec<ClaimId<'_>> {
    v.iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_prepares_a_netdevice_claim_twice_alike_and_restores_it() {
    let rig = Rig::new("drn", 2, &[]).await;
    let found = fake_kubelet::discover_plugins(&rig.dirs.plugins_registry)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let info = &found[0].info;
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(
        info.supported_versions,
        ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    );
    assert_eq!(
        info.endpoint,
        rig.dirs.service(DRIVER).display().to_string()
    );
    for s in [rig.dirs.service(DRIVER), rig.dirs.registration(DRIVER)] {
        let mode = std::fs::metadata(&s).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", s.display());
    }
    assert!(rig.telemetry.snapshot().dra.unwrap().registered);

    rig.claim(
        "u1",
        &[("net", 0)],
        json!({"driver": "netdevice", "mtu": 9000}),
    );
    let vf0 = rig.host.vfs[0].ifname.clone();
    let mtu_before = host_link(&vf0).unwrap().mtu;
    assert_ne!(mtu_before, 9000);
    let mut kubelet = rig.kubelet("v1").await;
    let claims = [id("u1")];
    let first = kubelet.prepare(&ids(&claims)).await.unwrap();
    let r = &first.claims["u1"];
    assert_eq!(r.error, "");
    assert_eq!(r.devices.len(), 1);
    let d = &r.devices[0];
    assert_eq!(
        (d.pool_name.as_str(), d.request_names.as_slice()),
        (NODE, &["net".to_string()][..])
    );
    assert_eq!(
        d.device_name,
        fastpath::dra::device_name(rig.pci(0).parse().unwrap())
    );
    assert_eq!(d.cdi_device_ids, [format!("{DRIVER}/vf=u1-net")]);
    assert_eq!(host_link(&vf0).unwrap().mtu, 9000);

    let spec = Rig::read_json(&rig.cdi_spec("u1"));
    assert_eq!(spec["kind"], format!("{DRIVER}/vf"));
    assert_eq!(spec["devices"][0]["name"], "u1-net");
    let env = spec["devices"][0]["containerEdits"]["env"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env, format!("PCIDEVICE_INTEL_COM_DRA_NET={}", rig.pci(0)));
    let info = Rig::read_json(&rig.devinfo(0));
    assert_eq!(info["pci"]["pci-address"], rig.pci(0));
    assert!(rig.record("u1").exists());
    let status = rig.telemetry.snapshot().dra.unwrap();
    assert_eq!(status.prepared.len(), 1);

    // Prepared twice (kubelet retried or restarted): the same answer, in
    // either API version.
    assert_eq!(kubelet.prepare(&ids(&claims)).await.unwrap(), first);
    let mut beta = rig.kubelet("v1beta1").await;
    assert_eq!(beta.prepare(&ids(&claims)).await.unwrap(), first);

    let un = kubelet.unprepare(&ids(&claims)).await.unwrap();
    assert_eq!(un.claims["u1"].error, "");
    assert_eq!(host_link(&vf0).unwrap().mtu, mtu_before);
    assert!(!rig.cdi_spec("u1").exists());
    assert!(!rig.devinfo(0).exists());
    assert!(!rig.record("u1").exists());
    // Again: nothing left to undo, still no error.
    let again = beta.unprepare(&ids(&claims)).await.unwrap();
    assert_eq!(again.claims["u1"].error, "");
    assert!(rig.telemetry.snapshot().dra.unwrap().prepared.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfio_claims_get_vfio_nodes_and_a_rebind_goes_through_sysfs() {
    let rig = Rig::new("drv", 2, &[1]).await;
    rig.claim("u2", &[("dpdk", 1)], json!({"driver": "vfio-pci"}));
    rig.claim(
        "u3",
        &[("dpdk", 0)],
        json!({"driver": "vfio-pci", "vlan": null}),
    );
    // `vlan: null` is no VLAN id: the claim fails before anything changes.
    let mut kubelet = rig.kubelet("v1").await;
    let claims = [id("u2"), id("u3")];
    let r = kubelet.prepare(&ids(&claims)).await.unwrap();
    assert_eq!(r.claims["u2"].error, "");
    assert!(
        r.claims["u3"].error.contains("vlan: null is not a VLAN id"),
        "{}",
        r.claims["u3"].error
    );
    assert!(!rig.record("u3").exists());
    let dev = format!(
        "u2-{}",
        fastpath::dra::device_name(rig.pci(1).parse().unwrap())
    );
    assert_eq!(
        r.claims["u2"].devices[0].cdi_device_ids,
        [format!("{DRIVER}/vf=u2-dpdk"), format!("{DRIVER}/vf={dev}")]
    );
    let spec = Rig::read_json(&rig.cdi_spec("u2"));
    assert_eq!(
        spec["devices"][1]["containerEdits"]["deviceNodes"],
        json!([{"path": "/dev/vfio/vfio", "permissions": "rw"},
               {"path": "/dev/vfio/42", "permissions": "rw"}])
    );
    let info = spec["devices"][0]["containerEdits"]["env"][1]
        .as_str()
        .unwrap();
    assert!(info.contains("\"dev-mount\":\"/dev/vfio/42\""), "{info}");

    // VF 0 has iavf: the claim asks for vfio-pci, so prepare rebinds it
    // with provisioning's actions (the fake tree records the writes).
    rig.claim("u3", &[("dpdk", 0)], json!({"driver": "vfio-pci"}));
    let r = kubelet.prepare(&ids(&[id("u3")])).await.unwrap();
    assert_eq!(r.claims["u3"].error, "");
    let bind = rig.host.sysfs.path().join("bus/pci/drivers/vfio-pci/bind");
    assert_eq!(std::fs::read_to_string(&bind).unwrap().trim(), rig.pci(0));
    let rec = Rig::read_json(&rig.record("u3"));
    assert_eq!(rec["devices"][0]["originalDriver"], "iavf");
    assert_eq!(rec["devices"][0]["rebound"], "vfio-pci");
    let spec = Rig::read_json(&rig.cdi_spec("u3"));
    assert_eq!(
        spec["devices"][1]["containerEdits"]["deviceNodes"][1]["path"],
        "/dev/vfio/41"
    );
    // Unprepare puts it back on iavf through the same actions.
    let un = kubelet
        .unprepare(&ids(&[id("u2"), id("u3")]))
        .await
        .unwrap();
    assert_eq!(
        (
            un.claims["u2"].error.as_str(),
            un.claims["u3"].error.as_str()
        ),
        ("", "")
    );
    let iavf_bind = rig.host.sysfs.path().join("bus/pci/drivers/iavf/unbind");
    assert_eq!(
        std::fs::read_to_string(iavf_bind).unwrap().trim(),
        rig.pci(0)
    );
    assert!(!rig.record("u3").exists() && !rig.cdi_spec("u3").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claims_fail_alone_and_change_nothing() {
    let rig = Rig::new("drb", 3, &[]).await;
    let vf0 = rig.host.vfs[0].ifname.clone();
    let mtu = host_link(&vf0).unwrap().mtu;
    rig.claim("bad", &[("net", 0)], json!({"mtu": 9000, "vlan": 5000}));
    rig.claim("pf", &[("net", 0)], json!({"mtu": 9000, "trust": true}));
    rig.claim("good", &[("net", 2)], json!({}));
    // Device 0 gets its MTU, then device 1 fails to rebind (no vfio-pci
    // driver on this node): the MTU goes back.
    rig.claim("half", &[("net", 0), ("dpdk", 1)], json!({"mtu": 9000}));
    let mut p = json!({"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig"});
    p["driver"] = json!("vfio-pci");
    {
        let mut t = rig.claims.0.lock().unwrap();
        let half = t.get_mut("half").unwrap();
        half.config[0].requests = vec!["net".into()];
        half.config.push(fastpath::dra::OpaqueConfig {
            requests: vec!["dpdk".into()],
            source: fastpath::dra::ConfigSource::Claim,
            parameters: p,
        });
    }
    let mut kubelet = rig.kubelet("v1").await;
    let claims = [id("bad"), id("pf"), id("good"), id("gone"), id("half")];
    let r = kubelet.prepare(&ids(&claims)).await.unwrap();
    let err = |u: &str| r.claims[u].error.clone();
    assert!(
        err("bad").contains("claim config[0] parameters.vlan: 5000 is not a VLAN id 0-4094"),
        "{}",
        err("bad")
    );
    // The PF of the stand-ins has no netdev in the kernel: reading the
    // VF's PF-side state fails before anything changes.
    assert!(
        err("pf").starts_with(&format!("reading the state of {}", rig.pci(0))),
        "{}",
        err("pf")
    );
    assert_eq!(err("good"), "");
    assert_eq!(err("gone"), "ResourceClaim ns/claim-gone not found");
    assert!(
        err("half").contains("rebinding to vfio-pci"),
        "{}",
        err("half")
    );
    assert!(
        err("half").contains("(every change undone)"),
        "{}",
        err("half")
    );
    assert_eq!(host_link(&vf0).unwrap().mtu, mtu);
    for u in ["bad", "pf", "gone", "half"] {
        assert!(!rig.record(u).exists(), "{u}");
        assert!(!rig.cdi_spec(u).exists(), "{u}");
        assert!(r.claims[u].devices.is_empty());
    }
    assert!(rig.record("good").exists());
    let last = rig.telemetry.snapshot().dra.unwrap().last_error.unwrap();
    assert!(last.starts_with("ns/claim-half: "), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_sockets_are_served_again_within_a_second() {
    let rig = Rig::new("drs", 1, &[]).await;
    rig.claim("u1", &[("net", 0)], json!({}));
    for sock in [rig.dirs.registration(DRIVER), rig.dirs.service(DRIVER)] {
        std::fs::remove_file(&sock).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while !sock.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not back",
                sock.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet.prepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(r.claims["u1"].error, "");
    // Shutting down removes both sockets (kubelet deregisters the driver).
    let mut rig = rig;
    rig.server.take().unwrap().shutdown().await;
    assert!(!rig.dirs.registration(DRIVER).exists());
    assert!(!rig.dirs.service(DRIVER).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_reconcile_restores_claims_that_are_gone() {
    let rig = Rig::new("drr", 2, &[]).await;
    let vf0 = rig.host.vfs[0].ifname.clone();
    let mtu = host_link(&vf0).unwrap().mtu;
    rig.claim("gone", &[("net", 0)], json!({"mtu": 9000}));
    rig.claim("live", &[("net", 1)], json!({}));
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet
        .prepare(&ids(&[id("gone"), id("live")]))
        .await
        .unwrap();
    assert!(r.claims.values().all(|c| c.error.is_empty()), "{r:?}");
    assert_eq!(host_link(&vf0).unwrap().mtu, 9000);
    rig.forget("gone");
    let report = fastpath::dra::reconcile::run(&rig.ctx, rig.claims.as_ref()).await;
    assert_eq!((report.restored, report.kept), (1, 1), "{report:?}");
    assert_eq!(host_link(&vf0).unwrap().mtu, mtu);
    assert!(!rig.record("gone").exists() && !rig.cdi_spec("gone").exists());
    assert!(rig.record("live").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vf_given_to_a_new_claim_leaves_the_old_claims_record_only_once_it_is_gone() {
    let rig = Rig::new("drh", 1, &[]).await;
    let vf0 = rig.host.vfs[0].ifname.clone();
    let mtu = host_link(&vf0).unwrap().mtu;
    rig.claim("old", &[("net", 0)], json!({"mtu": 9000}));
    rig.claim("new", &[("net", 0)], json!({"mtu": 4000}));
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet.prepare(&ids(&[id("old")])).await.unwrap();
    assert_eq!(r.claims["old"].error, "");
    // The old claim still exists: the new one must wait for its unprepare.
    let r = kubelet.prepare(&ids(&[id("new")])).await.unwrap();
    let e = &r.claims["new"].error;
    assert!(
        e.contains(&format!(
            "VF {} is still prepared for claim ns/claim-old (old)",
            rig.pci(0)
        )),
        "{e}"
    );
    assert_eq!(host_link(&vf0).unwrap().mtu, 9000);
    // Gone without an unprepare (the agent was down): its record is
    // restored first, then the new claim is prepared on the VF.
    rig.forget("old");
    let r = kubelet.prepare(&ids(&[id("new")])).await.unwrap();
    assert_eq!(r.claims["new"].error, "");
    assert!(!rig.record("old").exists() && !rig.cdi_spec("old").exists());
    assert_eq!(host_link(&vf0).unwrap().mtu, 4000);
    let un = kubelet.unprepare(&ids(&[id("new")])).await.unwrap();
    assert_eq!(un.claims["new"].error, "");
    assert_eq!(host_link(&vf0).unwrap().mtu, mtu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vf_a_cni_call_is_working_on_is_not_prepared_until_it_is_done() {
    let rig = Rig::new("drl", 1, &[]).await;
    rig.claim("u1", &[("net", 0)], json!({"mtu": 9000}));
    let mut kubelet = rig.kubelet("v1").await;
    let lock =
        fastpath::cni::lock::lock_vf(rig.host.state.path(), rig.pci(0).parse().unwrap()).unwrap();
    let r = kubelet.prepare(&ids(&[id("u1")])).await.unwrap();
    let e = &r.claims["u1"].error;
    assert!(e.contains("a CNI call holds the VF's lock"), "{e}");
    assert!(!rig.record("u1").exists());
    assert_ne!(host_link(&rig.host.vfs[0].ifname).unwrap().mtu, 9000);
    drop(lock);
    let r = kubelet.prepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(r.claims["u1"].error, "");
    assert_eq!(host_link(&rig.host.vfs[0].ifname).unwrap().mtu, 9000);
    let un = kubelet.unprepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(un.claims["u1"].error, "");
}
