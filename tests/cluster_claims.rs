//! Reading ResourceClaims through the API against the stand-in: an
//! allocated claim, a missing one, a recreated one (UID), an unallocated
//! one, and refusals by the server.

use fake_apiserver::{FakeApiServer, Fault};
use fastpath::cluster::claims::ApiClaims;
use fastpath::cluster::{ClusterOptions, client};
use fastpath::dra::{ClaimRef, ClaimSource, ClaimSourceError, ConfigSource};
use serde_json::json;

const DRIVER: &str = "sriov.fastpath.dev";

async fn setup() -> (FakeApiServer, ApiClaims) {
    let server = FakeApiServer::start().await.unwrap();
    let c = client(&ClusterOptions {
        api_server: Some(server.url()),
        kubeconfig: None,
    })
    .await
    .unwrap();
    (server, ApiClaims::new(c))
}

fn seed_claim(server: &FakeApiServer, name: &str, status: serde_json::Value) -> ClaimRef {
    let stored = server
        .seed(json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": "pods"},
            "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov"}}]}},
            "status": status}))
        .unwrap();
    ClaimRef {
        namespace: "pods".into(),
        name: name.into(),
        uid: stored["metadata"]["uid"].as_str().unwrap().into(),
    }
}

#[tokio::test]
async fn an_allocated_claim_gives_this_nodes_devices_and_configs() {
    let (server, claims) = setup().await;
    let r = seed_claim(
        &server,
        "c1",
        json!({"allocation": {"devices": {
        "results": [
            {"request": "vf", "driver": DRIVER, "pool": "node-a", "device": "pci-0000-3b-02-1"},
            {"request": "vf", "driver": DRIVER, "pool": "node-b", "device": "pci-0000-3b-02-2"},
            {"request": "vf", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}
        ],
        "config": [
            {"source": "FromClass", "opaque": {"driver": DRIVER, "parameters": {"apiVersion": "sriov.fastpath.dev/v1", "kind": "VfConfig", "driver": "vfio-pci"}}},
            {"source": "FromClaim", "requests": ["vf"], "opaque": {"driver": DRIVER, "parameters": {"apiVersion": "sriov.fastpath.dev/v1", "kind": "VfConfig", "vlan": 100}}},
            {"source": "FromClaim", "opaque": {"driver": "gpu.example.com", "parameters": {}}}
        ]}}}),
    );
    let a = claims.get(&r, DRIVER, "node-a").await.unwrap().unwrap();
    assert_eq!(a.claim, r);
    assert_eq!(a.devices.len(), 1);
    assert_eq!(
        (a.devices[0].pool.as_str(), a.devices[0].device.as_str()),
        ("node-a", "pci-0000-3b-02-1")
    );
    let sources: Vec<ConfigSource> = a.config.iter().map(|c| c.source).collect();
    assert_eq!(sources, [ConfigSource::Class, ConfigSource::Claim]);
    assert_eq!(a.config[1].requests, ["vf"]);
    assert_eq!(a.config[1].parameters["vlan"], 100);
    assert_eq!(server.count("get", "resourceclaims"), 1);
}

#[tokio::test]
async fn a_missing_claim_is_none_and_a_recreated_one_a_uid_mismatch() {
    let (server, claims) = setup().await;
    let gone = ClaimRef {
        namespace: "pods".into(),
        name: "nope".into(),
        uid: "u".into(),
    };
    assert_eq!(claims.get(&gone, DRIVER, "node-a").await.unwrap(), None);

    let old = seed_claim(&server, "c2", json!({}));
    server
        .remove("resource.k8s.io/v1", "ResourceClaim", Some("pods"), "c2")
        .unwrap();
    let new = seed_claim(&server, "c2", json!({}));
    let e = claims.get(&old, DRIVER, "node-a").await.unwrap_err();
    assert_eq!(
        e,
        ClaimSourceError::UidMismatch {
            namespace: "pods".into(),
            name: "c2".into(),
            wanted: old.uid.clone(),
            found: new.uid.clone()
        }
    );
    let e = claims.get(&new, DRIVER, "node-a").await.unwrap_err();
    assert!(matches!(e, ClaimSourceError::NotAllocated { .. }), "{e}");
}

#[tokio::test]
async fn refusals_by_the_server_say_what_to_fix() {
    let (server, claims) = setup().await;
    let r = seed_claim(&server, "c3", json!({}));
    for (code, words) in [(403, "RBAC"), (401, "credentials"), (500, "500")] {
        server.fail(Fault::new(code, "/resourceclaims/c3", 1));
        let e = claims.get(&r, DRIVER, "node-a").await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ClaimSourceError::Api { .. }), "{msg}");
        assert!(
            msg.contains("pods/c3") && msg.contains(&code.to_string()) && msg.contains(words),
            "{msg}"
        );
    }
}
