//! `--policy-source cluster` end to end against the shared stand-in API
//! server: a SriovNetworkNodePolicy object is applied on a fake sysfs (a
//! fake kernel makes the VFs) and served to a fake kubelet; the node state
//! is written by server-side apply and read back; Events are created; a
//! Node label change re-selects; a refused field is reported; an idle
//! agent writes nothing; a lost API server undoes nothing, and a restart
//! without it serves the pools last applied; a VF held by a pod holds its
//! change; SIGHUP applies again; CRDs absent means files only. The API
//! calls alone are in operator_cluster_api.rs.

#[path = "operate/kernel.rs"]
mod kernel;
#[allow(dead_code)] // the device-plugin tests use the rest
#[path = "device_plugin/rig.rs"]
mod rig;

use std::path::PathBuf;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use fake_kubelet::{DeviceWatch, FakeKubelet, PluginClient, ids};
use fastpath::agent::AgentHandle;
use fastpath::agent::cluster_policy::ClusterSource;
use fastpath::agent::node::{self, NodeOptions};
use fastpath::agent::policy::PolicyOptions;
use fastpath::cluster::ClusterOptions;
use kernel::FakeKernel;
use rig::{T, options, prepare};
use serde_json::{Value, json};
use sysfs_fixture::PfSpec;
use sysfs_fixture::presets::igb;
use tokio::sync::oneshot;

const PF: &str = "0000:05:00.0";
const NS: &str = "fastpath";
const NODE: &str = "node-a";
const STATE: (&str, &str) = ("sriovnetwork.openshift.io/v1", "SriovNetworkNodeState");
const POLICY: (&str, &str) = ("sriovnetwork.openshift.io/v1", "SriovNetworkNodePolicy");
const FILE_CONFIG: &str =
    r#"{"resourceList":[{"resourceName":"from-file","selectors":{"drivers":["igbvf"]}}]}"#;

fn pf(n: usize) -> PfSpec {
    igb(PF, "enp5s0", "0000:05:10.0", n).iommu_groups(10)
}

fn node_obj(labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}})
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": POLICY.0, "kind": POLICY.1,
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn numvfs(dir: &std::path::Path) -> String {
    std::fs::read_to_string(
        dir.join("sys/bus/pci/devices")
            .join(PF)
            .join("sriov_numvfs"),
    )
    .unwrap()
}

/// Polls `f` every 20 ms for up to 10 s.
async fn eventually<X>(what: &str, mut f: impl FnMut() -> Option<X>) -> X {
    for _ in 0..500 {
        if let Some(x) = f() {
            return x;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn events(server: &FakeApiServer) -> Vec<(String, String, String, String)> {
    server
        .list("events.k8s.io/v1", "Event")
        .iter()
        .map(|e| {
            let s = |p: &str| {
                e.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (
                s("/regarding/kind"),
                s("/regarding/name"),
                s("/type"),
                s("/reason"),
            )
        })
        .collect()
}

fn has_event(server: &FakeApiServer, kind: &str, name: &str, ty: &str, reason: &str) -> bool {
    events(server).iter().any(|e| {
        (e.0.as_str(), e.1.as_str(), e.2.as_str(), e.3.as_str()) == (kind, name, ty, reason)
    })
}

/// Events are published just after the status write of the same round.
async fn wait_event(server: &FakeApiServer, kind: &str, name: &str, ty: &str, reason: &str) {
    let what = format!("{ty} {reason} on {kind} {name}");
    eventually(&what, || {
        has_event(server, kind, name, ty, reason).then_some(())
    })
    .await;
}

/// The next pool kubelet registers, which must be `resource`, and its
/// ListAndWatch stream.
async fn next_pool(kubelet: &mut FakeKubelet, resource: &str) -> DeviceWatch {
    let reg = kubelet
        .next_registration(T)
        .await
        .unwrap_or_else(|| panic!("{resource} registers"));
    assert_eq!(reg.resource_name, resource);
    let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
        .await
        .unwrap();
    c.list_and_watch().await.unwrap()
}

struct Agent {
    dir: tempfile::TempDir,
    handle: AgentHandle,
    kubelet: FakeKubelet,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _kernel: Option<FakeKernel>,
}

async fn start_agent(server: &FakeApiServer, interval: Duration) -> Agent {
    let (dir, fs) = prepare(&[pf(0)], FILE_CONFIG);
    let kernel = FakeKernel::start(fs, PF, pf);
    launch(dir, Some(kernel), &server.url(), interval).await
}

/// Runs the agent on an existing tree in `dir`.
async fn launch(
    dir: tempfile::TempDir,
    kernel: Option<FakeKernel>,
    url: &str,
    interval: Duration,
) -> Agent {
    let mut agent = options(dir.path(), false);
    agent.rescan_interval = Duration::from_secs(60);
    let mut policy = PolicyOptions::new(
        PathBuf::new(),
        agent.state_dir.clone(),
        agent.sysfs_root.clone(),
        agent.proc_root.clone(),
    );
    policy.reconcile.wait_timeout = Duration::from_secs(2);
    policy.cluster = Some(ClusterSource {
        cluster: ClusterOptions {
            api_server: Some(url.to_string()),
            kubeconfig: None,
        },
        namespace: NS.into(),
        node_name: NODE.into(),
        resource_prefix: "openshift.io".into(),
        interval,
    });
    let kubelet = FakeKubelet::start(&agent.device_plugin_dir).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let opts = NodeOptions {
        agent,
        policy: Some(policy),
        http_addr: None,
    };
    let handle = AgentHandle::new();
    let h = handle.clone();
    let task = tokio::spawn(async move {
        let _ = node::run(opts, h, async {
            let _ = stopped.await;
        })
        .await;
    });
    Agent {
        dir,
        handle,
        kubelet,
        stop: Some(stop),
        task: Some(task),
        _kernel: kernel,
    }
}

impl Agent {
    /// Stops the agent and waits for it to remove its sockets.
    async fn shut_down(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.kubelet.stop().await;
        self.dir
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_object_drives_vfs_and_pools_live_and_is_reported() {
    let server = FakeApiServer::start().await.unwrap();
    server.seed(node_obj(json!({"sriov": "yes"}))).unwrap();
    let spec = |n: u32| {
        json!({"resourceName": "igbvf", "nodeSelector": {"sriov": "yes"},
                               "numVfs": n, "nicSelector": {"pfNames": ["enp5s0"]}})
    };
    server.seed(policy("igb-net", spec(2))).unwrap();
    let mut a = start_agent(&server, Duration::from_millis(20)).await;

    // The policy is applied, then its pool is served with both VFs.
    let mut w = next_pool(&mut a.kubelet, "openshift.io/igbvf").await;
    let first = w.until(T, |r| r.devices.len() == 2).await.expect("two VFs");
    assert_eq!(ids(&first), ["0000:05:10.0", "0000:05:10.2"]);
    assert_eq!(numvfs(a.dir.path()), "2\n");

    // The node state, written by server-side apply under "fastpath".
    let st = eventually("node state Succeeded with 2 VFs", || {
        let s = server.get(STATE.0, STATE.1, Some(NS), NODE)?;
        (s["status"]["syncStatus"] == "Succeeded" && s["status"]["interfaces"][0]["numVfs"] == 2)
            .then_some(s)
    })
    .await;
    let iface = &st["status"]["interfaces"][0];
    assert_eq!(iface["name"], "enp5s0");
    assert_eq!(iface["Vfs"][1]["pciAddress"], "0000:05:10.2");
    assert_eq!(iface["Vfs"][1]["driver"], "igbvf");
    let managers: Vec<&str> = st["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"fastpath"), "{managers:?}");
    wait_event(
        &server,
        "SriovNetworkNodePolicy",
        "igb-net",
        "Normal",
        "PolicyApplied",
    )
    .await;
    wait_event(&server, "Node", NODE, "Normal", "PolicyApplied").await;

    // A changed object: one more VF, applied and advertised live.
    server.seed(policy("igb-net", spec(3))).unwrap();
    w.until(T, |r| r.devices.len() == 3)
        .await
        .expect("pool grows");
    assert_eq!(numvfs(a.dir.path()), "3\n");

    // A policy for zone b wins its overlap once the Node is labelled so.
    let mut b = spec(3);
    b["resourceName"] = json!("igbvf-b");
    b["priority"] = json!(10);
    b["nodeSelector"]["zone"] = json!("b");
    server.seed(policy("zone-b", b)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!has_event(
        &server,
        "SriovNetworkNodePolicy",
        "zone-b",
        "Normal",
        "PolicyApplied"
    ));
    server
        .seed(node_obj(json!({"sriov": "yes", "zone": "b"})))
        .unwrap();
    let mut wb = next_pool(&mut a.kubelet, "openshift.io/igbvf-b").await;
    wb.until(T, |r| r.devices.len() == 3)
        .await
        .expect("zone-b pool has the 3 VFs");
    wait_event(
        &server,
        "SriovNetworkNodePolicy",
        "igb-net",
        "Normal",
        "PolicyOverridden",
    )
    .await;

    // A field fastpath cannot honour live is refused and reported.
    let mut sw = spec(2);
    sw["resourceName"] = json!("sw");
    sw["eSwitchMode"] = json!("switchdev");
    sw["nicSelector"] = json!({"rootDevices": [PF]});
    server.seed(policy("sw", sw)).unwrap();
    let st = eventually("syncStatus Failed naming the refusal", || {
        let s = server.get(STATE.0, STATE.1, Some(NS), NODE)?;
        (s["status"]["syncStatus"] == "Failed").then_some(s)
    })
    .await;
    let err = st["status"]["lastSyncError"].as_str().unwrap();
    assert!(
        err.contains("SriovNetworkNodePolicy sw: spec.eSwitchMode"),
        "{err}"
    );
    wait_event(
        &server,
        "SriovNetworkNodePolicy",
        "sw",
        "Warning",
        "UnsupportedField",
    )
    .await;
    wait_event(&server, "Node", NODE, "Warning", "UnsupportedField").await;
    assert_eq!(numvfs(a.dir.path()), "3\n");

    // Idle: 100 rounds (20 ms each) and not one write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clear_requests();
    tokio::time::sleep(Duration::from_millis(100 * 20 + 200)).await;
    assert_eq!(server.writes(), 0, "{:#?}", server.requests());

    // The applied pools are kept for a restart without the API server.
    let kept = std::fs::read_to_string(a.dir.path().join("state/cluster-pools.json")).unwrap();
    assert!(kept.contains("\"igbvf-b\""), "{kept}");

    // The API server goes away: the last applied policy stays.
    let server_url = server.url();
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(numvfs(a.dir.path()), "3\n");
    assert!(
        wb.next(Duration::from_millis(300)).await.is_none(),
        "the pool did not change"
    );

    // Restarted while the API server is still away: the pools last
    // applied are served again.
    let url = server_url;
    let dir = a.shut_down().await;
    let mut b = launch(dir, None, &url, Duration::from_millis(20)).await;
    let mut w = next_pool(&mut b.kubelet, "openshift.io/igbvf-b").await;
    w.until(T, |r| r.devices.len() == 3)
        .await
        .expect("the kept pool with its 3 VFs");
    b.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_absent_means_files_only() {
    let server = FakeApiServer::start().await.unwrap();
    assert!(server.unregister(
        "sriovnetwork.openshift.io",
        "v1",
        "sriovnetworknodepolicies"
    ));
    server.seed(node_obj(json!({}))).unwrap();
    let mut a = start_agent(&server, Duration::from_millis(20)).await;
    let reg = a.kubelet.next_registration(T).await.expect("registers");
    assert_eq!(reg.resource_name, "intel.com/from-file");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.writes(), 0, "{:#?}", server.requests());
    let _ = a.stop.take().map(|s| s.send(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vf_held_by_a_pod_holds_the_change_and_the_status_says_so() {
    let server = FakeApiServer::start().await.unwrap();
    server.seed(node_obj(json!({"sriov": "yes"}))).unwrap();
    let spec = |n: u32| {
        json!({"resourceName": "igbvf", "nodeSelector": {"sriov": "yes"},
                               "numVfs": n, "nicSelector": {"pfNames": ["enp5s0"]}})
    };
    server.seed(policy("igb-net", spec(2))).unwrap();
    let mut a = start_agent(&server, Duration::from_millis(20)).await;
    a.kubelet.next_registration(T).await.expect("registers");
    eventually("two VFs", || (numvfs(a.dir.path()) == "2\n").then_some(())).await;

    // A pod holds VF 1; shrinking to one VF would destroy it.
    let state = a.dir.path().join("state");
    let vf = hold_vf1(&state);
    server.seed(policy("igb-net", spec(1))).unwrap();
    let st = eventually("syncStatus InProgress naming the held VF", || {
        let s = server.get(STATE.0, STATE.1, Some(NS), NODE)?;
        (s["status"]["syncStatus"] == "InProgress"
            && s["status"]["lastSyncError"].as_str()?.contains("held back"))
        .then_some(s)
    })
    .await;
    assert!(
        st["status"]["lastSyncError"]
            .as_str()
            .unwrap()
            .contains(&vf.to_string())
    );
    wait_event(&server, "Node", NODE, "Normal", "ChangeHeld").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(numvfs(a.dir.path()), "2\n", "the held VF is not destroyed");

    // SIGHUP applies again although nothing changed.
    let applies = || {
        let s = a.handle.telemetry().snapshot();
        s.reconciles.get("ok").copied().unwrap_or(0)
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = applies();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(applies(), before, "idle rounds do not apply");
    a.handle.reload();
    eventually("a re-apply on SIGHUP", || {
        (applies() > before).then_some(())
    })
    .await;

    // The pod lets go: the change completes.
    fastpath::cni::records::remove(&state, vf).unwrap();
    eventually("one VF and Succeeded", || {
        let s = server.get(STATE.0, STATE.1, Some(NS), NODE)?;
        (numvfs(a.dir.path()) == "1\n" && s["status"]["syncStatus"] == "Succeeded").then_some(())
    })
    .await;
    let _ = a.stop.take().map(|s| s.send(()));
}

/// A CNI record for VF 1 of the PF, as an attached pod leaves it.
fn hold_vf1(state: &std::path::Path) -> fastpath::pci::PciAddress {
    use fastpath::cni::plan::Step;
    use fastpath::cni::records::{self, Durability, Original, Phase, RECORD_VERSION, Record};
    let pci: fastpath::pci::PciAddress = "0000:05:10.2".parse().unwrap();
    let r = Record {
        version: RECORD_VERSION,
        pci,
        pf_pci: PF.parse().unwrap(),
        pf_name: Some("enp5s0".into()),
        pf_driver: "igb".into(),
        vf_index: 1,
        dpdk: false,
        network: "net".into(),
        container_id: "c1".into(),
        ifname: "net1".into(),
        netns: Some("/run/netns/pod".into()),
        pod_namespace: Some("default".into()),
        pod_name: Some("pod".into()),
        pod_uid: Some("uid".into()),
        since: 1,
        original: Original {
            ifname: Some("enp5s0v1".into()),
            mac: None,
            mtu: Some(1500),
            pf_side: None,
        },
        plan: vec![Step::MoveToPod, Step::Up],
        reached: 2,
        phase: Phase::Attached,
        result: None,
        ipam: None,
    };
    records::save(state, &r, Durability::Atomic).unwrap();
    pci
}
