//! Publishing ResourceSlices against the stand-in API server: layout,
//! owner references and attributes; no writes when nothing changed;
//! one write per slice on a change; adoption after a restart; deletion on
//! shutdown; a clear error on 403.

use std::collections::BTreeMap;

use fake_apiserver::{FakeApiServer, Fault};
use fastpath::cluster::slices::{SliceError, SlicePublisher};
use fastpath::cluster::{ClusterOptions, client};
use fastpath::dra::{AttrValue, DraDevice, NodeDevices, device_name};
use serde_json::{Value, json};

const DRIVER: &str = "sriov.fastpath.dev";
const SLICE: (&str, &str) = ("resource.k8s.io/v1", "ResourceSlice");

async fn server_with_nodes() -> FakeApiServer {
    let server = FakeApiServer::start().await.unwrap();
    for n in ["node-a", "node-b"] {
        server
            .seed(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}))
            .unwrap();
    }
    server
}

async fn kube(server: &FakeApiServer) -> kube::Client {
    client(&ClusterOptions {
        api_server: Some(server.url()),
        kubeconfig: None,
    })
    .await
    .unwrap()
}

fn devices(node: &str, n: usize) -> NodeDevices {
    NodeDevices {
        driver: DRIVER.into(),
        node: node.into(),
        devices: (0..n)
            .map(|i| DraDevice {
                name: device_name(
                    format!("0000:{:02x}:{:02x}.{}", 0x3b + i / 256, (i / 8) % 32, i % 8)
                        .parse()
                        .unwrap(),
                ),
                attributes: BTreeMap::from([
                    ("vfIndex".into(), AttrValue::Int(i as i64)),
                    ("rdma".into(), AttrValue::Bool(i % 2 == 1)),
                    ("pfName".into(), AttrValue::String("ens1f0".into())),
                    ("firmware".into(), AttrValue::Version("4.1.0".into())),
                ]),
            })
            .collect(),
    }
}

fn slices_of(server: &FakeApiServer, node: &str) -> Vec<Value> {
    let mut v: Vec<Value> = server
        .list(SLICE.0, SLICE.1)
        .into_iter()
        .filter(|s| s["spec"]["nodeName"] == node)
        .collect();
    v.sort_by_key(|s| s["metadata"]["name"].as_str().unwrap_or("").to_string());
    v
}

#[tokio::test]
async fn three_hundred_devices_are_three_slices_owned_by_the_node() {
    let server = server_with_nodes().await;
    let mut p = SlicePublisher::start(kube(&server).await, DRIVER, "node-a")
        .await
        .unwrap();
    let out = p.publish(&devices("node-a", 300)).await.unwrap();
    assert_eq!((out.generation, out.written, out.deleted), (1, 3, 0));
    assert_eq!(server.count("patch", "resourceslices"), 3);

    let node_uid = server.get("v1", "Node", None, "node-a").unwrap()["metadata"]["uid"].clone();
    let slices = slices_of(&server, "node-a");
    let names: Vec<&str> = slices
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            format!("node-a-{DRIVER}-0"),
            format!("node-a-{DRIVER}-1"),
            format!("node-a-{DRIVER}-2")
        ]
    );
    let sizes: Vec<usize> = slices
        .iter()
        .map(|s| s["spec"]["devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [128, 128, 44]);
    for s in &slices {
        assert_eq!(s["spec"]["driver"], DRIVER);
        assert_eq!(
            s["spec"]["pool"],
            json!({"name": "node-a", "generation": 1, "resourceSliceCount": 3})
        );
        let owner = &s["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"], &owner["uid"]),
            (&json!("Node"), &json!("node-a"), &node_uid)
        );
        assert_eq!(owner["controller"], true);
    }
    let first = &slices[0]["spec"]["devices"][1];
    assert_eq!(first["name"], "pci-0000-3b-00-1");
    assert_eq!(
        first["attributes"],
        json!({"vfIndex": {"int": 1}, "rdma": {"bool": true}, "pfName": {"string": "ens1f0"}, "firmware": {"version": "4.1.0"}})
    );
}

#[tokio::test]
async fn unchanged_devices_make_no_requests_over_100_publishes() {
    let server = server_with_nodes().await;
    let mut p = SlicePublisher::start(kube(&server).await, DRIVER, "node-a")
        .await
        .unwrap();
    let d = devices("node-a", 300);
    p.publish(&d).await.unwrap();
    server.clear_requests();
    for _ in 0..100 {
        let out = p.publish(&d).await.unwrap();
        assert_eq!((out.generation, out.written, out.deleted), (1, 0, 0));
    }
    assert_eq!(server.requests(), []);
}

#[tokio::test]
async fn one_changed_attribute_bumps_the_generation_and_writes_each_slice_once() {
    let server = server_with_nodes().await;
    let mut p = SlicePublisher::start(kube(&server).await, DRIVER, "node-a")
        .await
        .unwrap();
    let mut d = devices("node-a", 300);
    p.publish(&d).await.unwrap();
    server.clear_requests();
    d.devices[200]
        .attributes
        .insert("pfName".into(), AttrValue::String("ens1f1".into()));
    let out = p.publish(&d).await.unwrap();
    assert_eq!((out.generation, out.written, out.deleted), (2, 3, 0));
    assert_eq!(
        (
            server.requests().len(),
            server.count("patch", "resourceslices")
        ),
        (3, 3)
    );
    for s in slices_of(&server, "node-a") {
        assert_eq!(s["spec"]["pool"]["generation"], 2);
    }
    assert_eq!(
        slices_of(&server, "node-a")[1]["spec"]["devices"][72]["attributes"]["pfName"]["string"],
        "ens1f1"
    );
}

#[tokio::test]
async fn a_restarted_publisher_adopts_its_slices_and_drops_surplus() {
    let server = server_with_nodes().await;
    let c = kube(&server).await;
    let mut first = SlicePublisher::start(c.clone(), DRIVER, "node-a")
        .await
        .unwrap();
    first.publish(&devices("node-a", 300)).await.unwrap();
    let mut other = SlicePublisher::start(c.clone(), DRIVER, "node-b")
        .await
        .unwrap();
    other.publish(&devices("node-b", 10)).await.unwrap();
    drop(first);

    // The same devices after a restart: adopted, nothing written.
    server.clear_requests();
    let mut again = SlicePublisher::start(c.clone(), DRIVER, "node-a")
        .await
        .unwrap();
    assert_eq!(again.generation(), 1);
    let out = again.publish(&devices("node-a", 300)).await.unwrap();
    assert_eq!((out.written, out.deleted), (0, 0));
    assert_eq!(server.writes(), 0);
    assert_eq!(server.count("list", "resourceslices"), 1);

    // Fewer devices: the generation continues, one write, two deletions;
    // node-b's pool is untouched.
    let out = again.publish(&devices("node-a", 100)).await.unwrap();
    assert_eq!((out.generation, out.written, out.deleted), (2, 1, 2));
    assert_eq!(slices_of(&server, "node-a").len(), 1);
    assert_eq!(slices_of(&server, "node-b").len(), 1);

    // A stray slice of this pool (another name) makes the adopted pool
    // incomplete: the next publish rewrites at a new generation and
    // deletes the stray.
    server
        .seed(json!({"apiVersion": SLICE.0, "kind": SLICE.1, "metadata": {"name": "stray"},
            "spec": {"driver": DRIVER, "nodeName": "node-a", "pool": {"name": "node-a", "generation": 1, "resourceSliceCount": 1}}}))
        .unwrap();
    let mut third = SlicePublisher::start(c, DRIVER, "node-a").await.unwrap();
    let out = third.publish(&devices("node-a", 100)).await.unwrap();
    assert_eq!((out.generation, out.written, out.deleted), (3, 1, 1));
    assert!(server.get(SLICE.0, SLICE.1, None, "stray").is_none());
}

#[tokio::test]
async fn delete_all_removes_only_this_pools_slices() {
    let server = server_with_nodes().await;
    let c = kube(&server).await;
    let mut a = SlicePublisher::start(c.clone(), DRIVER, "node-a")
        .await
        .unwrap();
    a.publish(&devices("node-a", 300)).await.unwrap();
    let mut b = SlicePublisher::start(c.clone(), DRIVER, "node-b")
        .await
        .unwrap();
    b.publish(&devices("node-b", 3)).await.unwrap();
    assert_eq!(a.delete_all().await.unwrap(), 3);
    assert!(slices_of(&server, "node-a").is_empty());
    assert_eq!(slices_of(&server, "node-b").len(), 1);
    // Publishing after a delete writes everything again.
    let out = a.publish(&devices("node-a", 3)).await.unwrap();
    assert_eq!((out.generation, out.written), (2, 1));
}

#[tokio::test]
async fn forbidden_and_missing_node_give_clear_errors() {
    let server = server_with_nodes().await;
    let c = kube(&server).await;
    let e = SlicePublisher::start(c.clone(), DRIVER, "node-z")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, SliceError::Node { node, .. } if node == "node-z"),
        "{e}"
    );
    assert!(e.to_string().contains("404"), "{e}");

    let mut p = SlicePublisher::start(c, DRIVER, "node-a").await.unwrap();
    server.fail(Fault::new(403, "/resourceslices/", 1).method("PATCH"));
    let e = p.publish(&devices("node-a", 3)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, SliceError::Write { .. }), "{msg}");
    assert!(
        msg.contains(&format!("node-a-{DRIVER}-0")) && msg.contains("403") && msg.contains("RBAC"),
        "{msg}"
    );
    // Nothing was published; the next try writes it all.
    assert!(slices_of(&server, "node-a").is_empty());
    let out = p.publish(&devices("node-a", 3)).await.unwrap();
    assert_eq!(out.written, 1);
}

#[tokio::test]
async fn a_failed_deletion_of_surplus_is_retried_alone() {
    let server = server_with_nodes().await;
    let mut p = SlicePublisher::start(kube(&server).await, DRIVER, "node-a")
        .await
        .unwrap();
    p.publish(&devices("node-a", 300)).await.unwrap();
    server.fail(Fault::new(403, "/resourceslices/", 1).method("DELETE"));
    let e = p.publish(&devices("node-a", 10)).await.unwrap_err();
    assert!(matches!(e, SliceError::Delete { .. }), "{e}");
    server.clear_requests();
    let out = p.publish(&devices("node-a", 10)).await.unwrap();
    assert_eq!((out.generation, out.written, out.deleted), (2, 0, 2));
    assert_eq!(
        (
            server.requests().len(),
            server.count("delete", "resourceslices")
        ),
        (2, 2)
    );
    assert_eq!(slices_of(&server, "node-a").len(), 1);
}

#[tokio::test]
async fn bad_devices_are_refused_before_any_request() {
    let server = server_with_nodes().await;
    let mut p = SlicePublisher::start(kube(&server).await, DRIVER, "node-a")
        .await
        .unwrap();
    server.clear_requests();
    let e = p.publish(&devices("node-b", 3)).await.unwrap_err();
    assert!(matches!(e, SliceError::WrongPool { .. }), "{e}");
    let mut d = devices("node-a", 3);
    d.devices[1].name = d.devices[0].name.clone();
    let e = p.publish(&d).await.unwrap_err();
    assert!(e.to_string().contains(&d.devices[0].name), "{e}");
    assert_eq!(server.requests(), []);
}
