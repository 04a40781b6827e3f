//! `fastpath agent --dra-driver` as a whole: the device plugin and the
//! DRA plugin in one process on a fake sysfs, the API server stand-in
//! for ResourceSlices and ResourceClaims, the fake kubelet for both
//! plugin kinds.

#[allow(dead_code)]
#[path = "device_plugin/rig.rs"]
mod rig;

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use fake_kubelet::{DraClient, discover_plugins};
use fastpath::agent::AgentError;
use fastpath::agent::dra::DraAgentOptions;
use fastpath::cluster::ClusterOptions;
use rig::{Rig, T, options, prepare, wait_for};
use serde_json::{Value, json};
use sysfs_fixture::presets::e810;

const DRIVER: &str = "sriov.fastpath.dev";
const SLICE: (&str, &str) = ("resource.k8s.io/v1", "ResourceSlice");

const CONFIG: &str = r#"{
  "resourceList": [{"resourceName": "sriov_net", "selectors": {"pfNames": ["ens1f0#0-1"]}}],
  "draPools": [{"resourceName": "dra_dpdk", "selectors": {"pfNames": ["ens1f0#2-3"]}}]
}"#;

async fn start(config: &str) -> (FakeApiServer, Rig) {
    let server = FakeApiServer::start().await.unwrap();
    server
        .seed(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}))
        .unwrap();
    let pf = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4)
        .iommu_groups(40)
        .vfio(2..4);
    let (dir, fs) = prepare(&[pf], config);
    let mut opts = options(dir.path(), true);
    opts.dra = Some(DraAgentOptions {
        driver: DRIVER.into(),
        node: "node-a".into(),
        plugins_dir: dir.path().join("plugins"),
        cluster: ClusterOptions {
            api_server: Some(server.url()),
            kubeconfig: None,
        },
        delete_slices_on_exit: true,
    });
    (server, Rig::start_with(dir, fs, opts))
}

async fn slices(server: &FakeApiServer) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let s = server.list(SLICE.0, SLICE.1);
        if !s.is_empty() {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ResourceSlice published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_serves_device_plugin_pools_and_dra_claims() {
    let (server, rig) = start(CONFIG).await;
    let registry = rig.opts.plugins_registry_dir.clone();
    wait_for(&registry.join(format!("{DRIVER}-reg.sock"))).await;
    wait_for(&registry.join("intel.com_sriov_net.sock")).await;
    let found = discover_plugins(&registry).await.unwrap();
    let types: Vec<&str> = found.iter().map(|p| p.info.r#type.as_str()).collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types.contains(&"DRAPlugin") && types.contains(&"DevicePlugin"));

    // The DRA devices, and only those, are in this node's slice.
    let s = slices(&server).await;
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["spec"]["driver"], DRIVER);
    assert_eq!(s[0]["spec"]["pool"]["name"], "node-a");
    let devices = s[0]["spec"]["devices"].as_array().unwrap();
    let names: Vec<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pci-0000-3b-01-2", "pci-0000-3b-01-3"]);
    let attrs = &devices[0]["attributes"];
    assert_eq!(attrs["pfName"]["string"], "ens1f0");
    assert_eq!(attrs["driver"]["string"], "vfio-pci");
    assert_eq!(attrs["iommuGroup"]["int"], 43);
    assert_eq!(
        attrs["resource.kubernetes.io/pcieRoot"]["string"],
        "pci0000:00"
    );
    assert_eq!(
        attrs["resource.kubernetes.io/pciBusID"]["string"],
        "0000:3b:01.2"
    );

    // A claim allocated by the scheduler, read from the API server.
    let claim = server
        .seed(json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "dpdk", "namespace": "cnf"},
            "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov"}}]}},
            "status": {"allocation": {"devices": {
                "results": [{"request": "vf", "driver": DRIVER, "pool": "node-a", "device": "pci-0000-3b-01-3"}],
                "config": [{"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters":
                    {"apiVersion": "sriov.fastpath.dev/v1alpha1", "kind": "VfConfig", "driver": "vfio-pci"}}}]}}}}))
        .unwrap();
    let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
    let dra = found.iter().find(|p| p.info.r#type == "DRAPlugin").unwrap();
    let mut kubelet = DraClient::connect(std::path::Path::new(&dra.info.endpoint), "v1")
        .await
        .unwrap();
    let r = kubelet.prepare(&[("cnf", "dpdk", &uid)]).await.unwrap();
    let c = &r.claims[&uid];
    assert_eq!(c.error, "");
    assert_eq!(
        c.devices[0].cdi_device_ids,
        [format!("{DRIVER}/vf=0000:3b:01.3")]
    );
    let spec = rig.opts.cdi_dir.join(format!("{DRIVER}-{uid}.json"));
    assert!(spec.exists());
    let st = rig.handle.telemetry().snapshot().dra.unwrap();
    assert_eq!((st.devices, st.prepared.len()), (2, 1));
    assert!(st.registered);
    let un = kubelet.unprepare(&[("cnf", "dpdk", &uid)]).await.unwrap();
    assert_eq!(un.claims[&uid].error, "");
    assert!(!spec.exists());

    // Rescans every 100 ms write nothing while nothing changed.
    let writes = server.count("patch", "resourceslices");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.count("patch", "resourceslices"), writes);

    rig.stop().await.unwrap();
    assert!(!registry.join(format!("{DRIVER}-reg.sock")).exists());
    assert!(
        server.list(SLICE.0, SLICE.1).is_empty(),
        "deleted on exit when asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_in_both_modes_stops_the_agent_naming_both_pools() {
    let overlap = r#"{
      "resourceList": [{"resourceName": "sriov_net", "selectors": {"pfNames": ["ens1f0#0-2"]}}],
      "draPools": [{"resourceName": "dra_dpdk", "selectors": {"pfNames": ["ens1f0#2-3"]}}]
    }"#;
    let (_server, rig) = start(overlap).await;
    let e = rig.stop().await.unwrap_err();
    assert!(matches!(e, AgentError::ModeOverlap { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("device 0000:3b:01.2 is selected by resourceList entry \"intel.com/sriov_net\" and by draPools entry \"dra_dpdk\""),
        "{msg}"
    );
}

/// The NetworkAttachmentDefinition annotation a user writes for the
/// `draPools` entry `dra_dpdk` (prefix `intel.com`).
const NAD_RESOURCE_NAME: &str = "intel.com/dra_dpdk";

/// What Multus (master's `pkg/draclient`, `GetPodResourceMap` and
/// `ensureDriverCachePopulated`) does for a pod: each
/// `status.resourceClaimStatuses[].resourceClaimName` is read, each
/// allocation result's device looked up in the ResourceSlices listed with
/// the field selector `spec.nodeName=<node>,spec.driver=<driver>` by
/// `<driver>/<pool>` and device name, and its string attributes
/// `k8s.cni.cncf.io/deviceID` and `k8s.cni.cncf.io/resourceName` make the
/// resource map: resourceName -> deviceIDs.
async fn multus_resource_map(
    client: &kube::Client,
    ns: &str,
    pod: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
    use kube::Api;
    use kube::api::ListParams;

    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get(pod)
        .await
        .unwrap();
    let node = pod.spec.unwrap().node_name.unwrap();
    let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for st in pod.status.unwrap().resource_claim_statuses.unwrap() {
        let claim = Api::<ResourceClaim>::namespaced(client.clone(), ns)
            .get(&st.resource_claim_name.unwrap())
            .await
            .unwrap();
        let results = claim
            .status
            .unwrap()
            .allocation
            .unwrap()
            .devices
            .unwrap()
            .results;
        for r in results.unwrap_or_default() {
            let fields = format!("spec.nodeName={node},spec.driver={}", r.driver);
            let slices = Api::<ResourceSlice>::all(client.clone())
                .list(&ListParams::default().fields(&fields))
                .await
                .unwrap();
            let device = slices
                .items
                .iter()
                .filter(|s| {
                    format!("{}/{}", s.spec.driver, s.spec.pool.name)
                        == format!("{}/{}", r.driver, r.pool)
                })
                .flat_map(|s| s.spec.devices.iter().flatten())
                .find(|d| d.name == r.device)
                .expect("the allocated device is in a slice");
            let attrs = device.attributes.as_ref().unwrap();
            let string = |k: &str| attrs.get(k).and_then(|a| a.string.clone());
            let id = string("k8s.cni.cncf.io/deviceID").expect("deviceID attribute");
            let name = string("k8s.cni.cncf.io/resourceName").expect("resourceName attribute");
            map.entry(name).or_default().push(id);
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multus_finds_a_dra_vfs_device_id_and_device_info() {
    let (server, rig) = start(CONFIG).await;
    let registry = rig.opts.plugins_registry_dir.clone();
    wait_for(&registry.join(format!("{DRIVER}-reg.sock"))).await;
    slices(&server).await;
    let claim = server
        .seed(json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "upf-0-vf-x7k2p", "namespace": "cnf"},
            "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov"}}]}},
            "status": {"allocation": {"devices": {
                "results": [{"request": "vf", "driver": DRIVER, "pool": "node-a", "device": "pci-0000-3b-01-2"}]}}}}))
        .unwrap();
    server
        .seed(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "upf-0", "namespace": "cnf"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "upf", "image": "upf"}],
                "resourceClaims": [{"name": "vf", "resourceClaimTemplateName": "upf-vf"}]},
            "status": {"resourceClaimStatuses": [{"name": "vf", "resourceClaimName": "upf-0-vf-x7k2p"}]}}))
        .unwrap();
    let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
    let found = discover_plugins(&registry).await.unwrap();
    let dra = found.iter().find(|p| p.info.r#type == "DRAPlugin").unwrap();
    let mut kubelet = DraClient::connect(std::path::Path::new(&dra.info.endpoint), "v1")
        .await
        .unwrap();
    let r = kubelet
        .prepare(&[("cnf", "upf-0-vf-x7k2p", &uid)])
        .await
        .unwrap();
    assert_eq!(r.claims[&uid].error, "");

    // Multus's resource map for the pod: the NAD's resourceName
    // annotation selects the VF's PCI address as the delegate's deviceID.
    let client = fastpath::cluster::client(&ClusterOptions {
        api_server: Some(server.url()),
        kubeconfig: None,
    })
    .await
    .unwrap();
    let map = multus_resource_map(&client, "cnf", "upf-0").await;
    assert_eq!(
        map,
        [(
            NAD_RESOURCE_NAME.to_string(),
            vec!["0000:3b:01.2".to_string()]
        )]
        .into()
    );

    // Multus then copies the device-info file the device plugin would
    // have written (network-attachment-definition-client
    // `getDPDeviceInfoPath`: `<devinfo>/dp/<resourceName, / -> ->-<deviceID, / -> ->-device.json`);
    // the agent's devinfo_dir is that `dp` directory.
    let file = |resource: &str, id: &str| {
        rig.opts.devinfo_dir.join(format!(
            "{}-{}-device.json",
            resource.replace('/', "-"),
            id.replace('/', "-")
        ))
    };
    let path = file(NAD_RESOURCE_NAME, "0000:3b:01.2");
    let info: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(info["type"], "pci");
    assert_eq!(info["version"], "1.1.0");
    assert_eq!(info["pci"]["pci-address"], "0000:3b:01.2");
    assert_eq!(info["pci"]["pf-pci-address"], "0000:3b:00.0");

    let un = kubelet
        .unprepare(&[("cnf", "upf-0-vf-x7k2p", &uid)])
        .await
        .unwrap();
    assert_eq!(un.claims[&uid].error, "");
    assert!(!path.exists(), "removed on unprepare");
    rig.stop().await.unwrap();
}
