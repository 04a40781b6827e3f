//! The cluster face's API calls against the shared stand-in API server,
//! without an agent: the probe that tells absent CRDs from missing RBAC,
//! the node-state writer (create, apply, no request when unchanged, a
//! foreign owner named), and `fastpath doctor --policy-source cluster`.

use fake_apiserver::{FakeApiServer, Fault};
use fastpath::cluster::ClusterOptions;
use fastpath::cluster::policy::{Probe, probe};
use serde_json::{Value, json};

const NS: &str = "fastpath";
const NODE: &str = "node-a";
const STATE: (&str, &str) = ("sriovnetwork.openshift.io/v1", "SriovNetworkNodeState");

/// A kube client for the stand-in.
async fn client_of(server: &FakeApiServer) -> kube::Client {
    fastpath::cluster::client(&ClusterOptions {
        api_server: Some(server.url()),
        kubeconfig: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn probe_names_absent_crds_and_missing_rbac() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client_of(&server).await;
    assert_eq!(probe(&client, NS).await, Probe::Ready);
    server.fail(Fault::new(403, "sriovnetworknodepolicies", 1));
    let p = probe(&client, NS).await;
    assert!(matches!(p, Probe::Forbidden(_)), "{p:?}");
    assert!(p.to_string().contains("RBAC"), "{p}");
    server.unregister(
        "sriovnetwork.openshift.io",
        "v1",
        "sriovnetworknodepolicies",
    );
    let p = probe(&client, NS).await;
    assert_eq!(p, Probe::CrdAbsent);
    assert!(p.to_string().contains("CRDs are not installed"), "{p}");
}

#[tokio::test]
async fn node_state_is_created_then_applied_and_a_foreign_owner_is_named() {
    use fastpath::cluster::nodestate::{NodeStateError, NodeStateWriter};
    use fastpath::operator::{Decision, Outcome, node_state_status};
    let server = FakeApiServer::start().await.unwrap();
    let client = client_of(&server).await;
    let inv = fastpath::inventory::Inventory::default();
    let d: Decision =
        fastpath::operator::decide(&[], &Default::default(), &inv, &Default::default()).unwrap();
    let ok = node_state_status(&inv, &d, &Outcome::Applied { held: vec![] });

    // No object yet (nobody runs the operator): created, then its status.
    let mut w = NodeStateWriter::new(client.clone(), NS, NODE);
    assert!(w.write(&ok).await.unwrap());
    let st = server.get(STATE.0, STATE.1, Some(NS), NODE).unwrap();
    assert_eq!(st["status"]["syncStatus"], "Succeeded");
    // The same status again: no request at all.
    server.clear_requests();
    assert!(!w.write(&ok).await.unwrap());
    assert_eq!(server.requests().len(), 0);

    // Another manager (as the operator's daemon would) owns the status of
    // another node's object: created, then its status changed, since a
    // create does not record owners of status fields and an update does.
    let mut foreign = json!({"apiVersion": STATE.0, "kind": STATE.1,
                             "metadata": {"name": "node-b", "namespace": NS}});
    server.seed(foreign.clone()).unwrap();
    foreign["status"] = json!({"syncStatus": "InProgress", "lastSyncError": "draining"});
    server.seed(foreign).unwrap();
    let mut other = NodeStateWriter::new(client, NS, "node-b");
    let e = other.write(&ok).await.unwrap_err();
    assert!(matches!(e, NodeStateError::Conflict { .. }), "{e:?}");
    assert!(e.to_string().contains("config daemon"), "{e}");
}

#[test]
fn doctor_reports_absent_crds_when_asked() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(FakeApiServer::start()).unwrap();
    server.unregister(
        "sriovnetwork.openshift.io",
        "v1",
        "sriovnetworknodepolicies",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    let url = server.url();
    let cli = <fastpath::cli::Cli as clap::Parser>::try_parse_from([
        "fastpath",
        "--sysfs-root",
        &d("sys"),
        "doctor",
        "--json",
        "--proc-root",
        &d("proc"),
        "--kubelet-dir",
        &d("kubelet"),
        "--cni-bin-dir",
        &d("bin"),
        "--cni-conf-dir",
        &d("net.d"),
        "--config",
        &d("c.json"),
        "--policy-source",
        "cluster",
        "--namespace",
        NS,
        "--kube-api-server",
        &url,
    ])
    .unwrap();
    let mut out = Vec::new();
    fastpath::cli::run_to(cli, &mut out).unwrap();
    let report: Value = serde_json::from_slice(&out).unwrap();
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "cluster-policy")
        .expect("a cluster-policy finding")
        .clone();
    assert_eq!(f["status"], "warn");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("CRD is not installed"),
        "{f}"
    );
    assert!(
        f["fix"].as_str().unwrap().contains("policy-from-cluster"),
        "{f}"
    );
    drop(server);
}
