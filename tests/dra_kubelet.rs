//! The DRA kubelet plugin end to end on real unix sockets and real links
//! (run as root): kubelet's plugin watcher and DRA client from the fake
//! kubelet, a table of claims for the API server, VF stand-ins (veths on
//! a fake sysfs) whose MTU prepare really changes and unprepare restores.

mod cni_host;
mod dra_rig;
#[path = "support/released_multus.rs"]
mod released_multus;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
    // Named by the VF's address: released Multus hands the text after
    // '=' to the CNI as its deviceID.
    assert_eq!(d.cdi_device_ids, [format!("{DRIVER}/vf={}", rig.pci(0))]);
    assert_eq!(host_link(&vf0).unwrap().mtu, 9000);

    let spec = Rig::read_json(&rig.cdi_spec("u1"));
    assert_eq!(spec["kind"], format!("{DRIVER}/vf"));
    assert_eq!(spec["devices"][0]["name"], rig.pci(0));
    let env = spec["devices"][0]["containerEdits"]["env"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env, format!("PCIDEVICE_INTEL_COM_DRA_NET={}", rig.pci(0)));
    let info = Rig::read_json(&rig.devinfo(0));
    assert_eq!(info["pci"]["pci-address"], rig.pci(0));
    // The same file under the claim's name, where released Multus looks.
    let by_claim = rig.devinfo_by_claim("u1", 0);
    assert_eq!(Rig::read_json(&by_claim), info);
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
    assert!(!rig.devinfo(0).exists() && !by_claim.exists());
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
    // One CDI device per VF: env and vfio nodes together.
    assert_eq!(
        r.claims["u2"].devices[0].cdi_device_ids,
        [format!("{DRIVER}/vf={}", rig.pci(1))]
    );
    let spec = Rig::read_json(&rig.cdi_spec("u2"));
    assert_eq!(spec["devices"].as_array().unwrap().len(), 1);
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"],
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
        spec["devices"][0]["containerEdits"]["deviceNodes"][1]["path"],
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

/// Every fully-qualified CDI device name the specs in `dir` define, with
/// how many specs define it.
fn cdi_names(dir: &Path) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let spec = Rig::read_json(&e.unwrap().path());
        for d in spec["devices"].as_array().unwrap() {
            let n = format!(
                "{}={}",
                spec["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            );
            *names.entry(n).or_default() += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_multus_finds_each_vfs_address_under_the_claims_name() {
    let rig = Rig::new("drm", 2, &[1]).await;
    rig.claim("u9", &[("dpdk", 1), ("net", 0)], json!({}));
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet.prepare(&ids(&[id("u9")])).await.unwrap();
    let c = &r.claims["u9"];
    assert_eq!(c.error, "");
    let answer: Vec<(String, String, Vec<String>)> = c
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
    // What kubelet lists for a pod whose container uses the claim, beside
    // a device-plugin VF and another driver's device.
    let mut pod = fastpath_pod("upf-0");
    pod.containers[0].devices = vec![device_plugin::podresources::ContainerDevices {
        resource_name: "intel.com/sriov".into(),
        device_ids: vec!["0000:3b:02.0".into()],
        topology: None,
    }];
    pod.containers[0].dynamic_resources = vec![
        released_multus::dynamic_resource("ns", "claim-u9", DRIVER, &answer),
        released_multus::dynamic_resource(
            "ns",
            "gpu",
            "gpu.example.com",
            &[(
                NODE.into(),
                "gpu-0".into(),
                vec!["gpu.example.com/gpu=gpu-0".into()],
            )],
        ),
    ];
    let map = released_multus::resource_map(&[pod], "ns", "upf-0");
    let mut vfs = vec![rig.pci(0), rig.pci(1)];
    vfs.sort();
    assert_eq!(map["claim-u9"], vfs, "{map:?}");
    assert_eq!(map["intel.com/sriov"], ["0000:3b:02.0"]);
    // Two networks whose NADs name the claim get one VF each.
    assert_eq!(
        released_multus::device_id(&map, "claim-u9", 1),
        Some(vfs[1].clone())
    );
    assert_eq!(released_multus::device_id(&map, "claim-u9", 2), None);
    // Released Multus copies the device-info file named by the claim and
    // the address into the pod's network-status.
    for (i, _) in vfs.iter().enumerate() {
        let f = rig.devinfo_by_claim("u9", i);
        assert_eq!(Rig::read_json(&f)["pci"]["pci-address"], rig.pci(i));
    }
    let un = kubelet.unprepare(&ids(&[id("u9")])).await.unwrap();
    assert_eq!(un.claims["u9"].error, "");
    assert!(!rig.devinfo_by_claim("u9", 0).exists());
}

fn fastpath_pod(name: &str) -> device_plugin::podresources::PodResources {
    device_plugin::podresources::PodResources {
        name: name.into(),
        namespace: "ns".into(),
        containers: vec![device_plugin::podresources::ContainerResources {
            name: "app".into(),
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_spec_without_a_record_never_defines_a_vf_twice() {
    let rig = Rig::new("drd", 2, &[]).await;
    rig.claim("old", &[("net", 0), ("net", 1)], json!({}));
    rig.claim("new", &[("net", 0)], json!({}));
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet.prepare(&ids(&[id("old")])).await.unwrap();
    assert_eq!(r.claims["old"].error, "");
    // The old claim's record is lost (a crash left it unreadable) and the
    // claim is gone: its spec stays, naming both VFs.
    std::fs::write(rig.record("old"), "{").unwrap();
    rig.forget("old");
    let r = kubelet.prepare(&ids(&[id("new")])).await.unwrap();
    assert_eq!(r.claims["new"].error, "");
    let names = cdi_names(&rig.ctx.cdi_dir);
    let vf0 = format!("{DRIVER}/vf={}", rig.pci(0));
    let vf1 = format!("{DRIVER}/vf={}", rig.pci(1));
    assert_eq!(names, BTreeMap::from([(vf0, 1), (vf1, 1)]), "{names:?}");
    // The old spec keeps only the VF nobody took; the new one has its own.
    let old = Rig::read_json(&rig.cdi_spec("old"));
    assert_eq!(old["devices"].as_array().unwrap().len(), 1);
    assert_eq!(old["devices"][0]["name"], rig.pci(1));
    assert_eq!(
        Rig::read_json(&rig.cdi_spec("new"))["devices"][0]["name"],
        rig.pci(0)
    );
    // Preparing again answers from the record and changes no file.
    let before = std::fs::read(rig.cdi_spec("old")).unwrap();
    assert_eq!(kubelet.prepare(&ids(&[id("new")])).await.unwrap(), r);
    assert_eq!(std::fs::read(rig.cdi_spec("old")).unwrap(), before);
    let un = kubelet.unprepare(&ids(&[id("new")])).await.unwrap();
    assert_eq!(un.claims["new"].error, "");
    assert!(!rig.cdi_spec("new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_prepared_under_the_previous_cdi_names_unprepares_cleanly() {
    let rig = Rig::new("dro", 1, &[]).await;
    let vf0 = rig.host.vfs[0].ifname.clone();
    let mtu = host_link(&vf0).unwrap().mtu;
    rig.claim("u1", &[("net", 0)], json!({"mtu": 9000}));
    let mut kubelet = rig.kubelet("v1").await;
    let r = kubelet.prepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(r.claims["u1"].error, "");
    // Turn it into what the previous version left: CDI device `<uid>-<request>`
    // in the record and the spec, no device-info file under the claim's name.
    let by_claim = rig.devinfo_by_claim("u1", 0);
    let mut rec = Rig::read_json(&rig.record("u1"));
    rec["devices"][0]["cdiIds"] = json!([format!("{DRIVER}/vf=u1-net")]);
    rec["devinfo"] = json!([rig.devinfo(0)]);
    std::fs::write(rig.record("u1"), rec.to_string()).unwrap();
    std::fs::remove_file(&by_claim).unwrap();
    let mut spec = Rig::read_json(&rig.cdi_spec("u1"));
    spec["devices"][0]["name"] = json!("u1-net");
    std::fs::write(rig.cdi_spec("u1"), spec.to_string()).unwrap();

    // kubelet asking again gets the answer it got then, from the record.
    let again = kubelet.prepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(
        again.claims["u1"].devices[0].cdi_device_ids,
        [format!("{DRIVER}/vf=u1-net")]
    );
    let un = kubelet.unprepare(&ids(&[id("u1")])).await.unwrap();
    assert_eq!(un.claims["u1"].error, "");
    assert_eq!(host_link(&vf0).unwrap().mtu, mtu);
    assert!(!rig.cdi_spec("u1").exists());
    assert!(!rig.devinfo(0).exists());
    assert!(!rig.record("u1").exists());
}
