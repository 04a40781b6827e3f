//! The stand-in against the real `kube` client: typed requests, the
//! watcher's list+watch with 410 and re-list, bookmarks, server-side apply
//! ownership, the status subresource, and injected 401/403.

use std::collections::BTreeMap;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Fault};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeStatus};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::json;

fn client(server: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c
}

fn api_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn typed_get_list_create_replace_patch_delete() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns1");
    let pp = PostParams::default();

    let made = api.create(&pp, &cm("a", &[("k", "1")])).await.unwrap();
    let meta = &made.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("ns1"));
    let rv1: u64 = meta.resource_version.as_ref().unwrap().parse().unwrap();
    let (code, reason) = api_code(api.create(&pp, &cm("a", &[])).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut b = cm("b", &[("k", "2")]);
    b.metadata.labels = Some(BTreeMap::from([("tier".to_string(), "db".to_string())]));
    api.create(&pp, &b).await.unwrap();

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "1");
    assert_eq!(api_code(api.get("zzz").await.unwrap_err()).0, 404);
    assert!(api.get_opt("zzz").await.unwrap().is_none());

    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let list_rv: u64 = all.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv > rv1);
    let db = api
        .list(&ListParams::default().labels("tier=db"))
        .await
        .unwrap();
    assert_eq!(db.items.len(), 1);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(by_name.items[0].metadata.name.as_deref(), Some("a"));
    let other_ns: Api<ConfigMap> = Api::namespaced(client(&server), "ns2");
    assert!(
        other_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let everywhere: Api<ConfigMap> = Api::all(client(&server));
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    // Replace with the current version works; with the old one conflicts.
    let mut newer = got_again(&api).await;
    newer.data = Some(BTreeMap::from([("k".into(), "3".into())]));
    let replaced = api.replace("a", &pp, &newer).await.unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        newer.metadata.resource_version
    );
    let (code, reason) = api_code(api.replace("a", &pp, &newer).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"j": "x"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!((data["k"].as_str(), data["j"].as_str()), ("3", "x"));

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert_eq!(
        api_code(api.delete("a", &DeleteParams::default()).await.unwrap_err()).0,
        404
    );
    assert_eq!(server.count("create", "configmaps"), 3);
    assert_eq!(server.count("delete", ""), 2);
}

async fn got_again(api: &Api<ConfigMap>) -> ConfigMap {
    api.get("a").await.unwrap()
}

#[tokio::test]
async fn server_side_apply_tracks_owners_conflicts_and_force() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns");
    let apply = |m: &str| PatchParams::apply(m);
    let body = |data: serde_json::Value| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}),
        )
    };

    // Apply creates.
    let c = api
        .patch(
            "c",
            &apply("alice"),
            &body(json!({"a": "1", "shared": "s"})),
        )
        .await
        .unwrap();
    assert_eq!(c.metadata.generation, Some(1));
    let rv = c.metadata.resource_version.clone();
    // The same apply again changes nothing, not even the version.
    let again = api
        .patch(
            "c",
            &apply("alice"),
            &body(json!({"a": "1", "shared": "s"})),
        )
        .await
        .unwrap();
    assert_eq!(again.metadata.resource_version, rv);

    // Bob sets the same value of a field: shared, no conflict.
    api.patch("c", &apply("bob"), &body(json!({"shared": "s", "b": "2"})))
        .await
        .unwrap();
    // Bob sets another value of alice's field: a conflict naming both.
    let e = api
        .patch("c", &apply("bob"), &body(json!({"a": "9"})))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else {
        panic!("{e:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("\"alice\"") && s.message.contains(".data.a"),
        "{}",
        s.message
    );
    assert_eq!(api.get("c").await.unwrap().data.unwrap()["a"], "1");

    // Force takes it over; alice no longer owns it.
    let forced = api
        .patch(
            "c",
            &apply("bob").force(),
            &body(json!({"a": "9", "shared": "s", "b": "2"})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");
    let owners = forced.metadata.managed_fields.unwrap();
    let alice = owners
        .iter()
        .find(|m| m.manager.as_deref() == Some("alice"))
        .unwrap();
    let alice_fields = serde_json::to_string(&alice.fields_v1).unwrap();
    assert!(!alice_fields.contains("f:a\""), "{alice_fields}");
    assert!(alice_fields.contains("f:shared"), "{alice_fields}");

    // Alice stops applying "shared": bob still owns it, so it stays; bob
    // drops "b", which only he owned, so it goes.
    api.patch("c", &apply("alice"), &body(json!({})))
        .await
        .unwrap();
    let c = api
        .patch("c", &apply("bob"), &body(json!({"a": "9", "shared": "s"})))
        .await
        .unwrap();
    let data = c.data.unwrap();
    assert_eq!(data.get("shared").map(String::as_str), Some("s"));
    assert!(!data.contains_key("b"), "{data:?}");

    // Apply without a field manager is refused by the client or server.
    assert!(
        api.patch("c", &PatchParams::default(), &body(json!({})))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn create_drops_status_and_strategic_merge_is_refused_as_unsupported() {
    let server = FakeApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(client(&server));
    let mut n = Node::default();
    n.metadata.name = Some("n1".into());
    n.status = Some(NodeStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    let made = nodes.create(&PostParams::default(), &n).await.unwrap();
    assert_eq!(made.status, None);
    let e = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (415, "UnsupportedMediaType".to_string()));
}

#[tokio::test]
async fn status_subresource_changes_only_status() {
    let server = FakeApiServer::start().await.unwrap();
    server
        .seed(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}}))
        .unwrap();
    let nodes: Api<Node> = Api::all(client(&server));
    let status = json!({"status": {"phase": "Running"}, "metadata": {"labels": {"a": "changed"}}});
    let n = nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(n.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(n.metadata.labels.unwrap()["a"], "b");

    let mut main = nodes.get("n1").await.unwrap();
    main.status = Some(NodeStatus::default());
    main.metadata.labels = Some(BTreeMap::from([("a".into(), "c".into())]));
    let n = nodes
        .replace("n1", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(n.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(n.metadata.labels.unwrap()["a"], "c");

    // The status subresource cannot be deleted or created.
    for method in ["DELETE", "POST"] {
        let req = http::Request::builder()
            .method(method)
            .uri("/api/v1/nodes/n1/status")
            .body(Vec::new())
            .unwrap();
        let e = client(&server).request_text(req).await.unwrap_err();
        assert_eq!(api_code(e).0, 404, "{method}");
    }
    assert!(nodes.get_opt("n1").await.unwrap().is_some());
}

#[tokio::test]
async fn watcher_lists_watches_and_relists_after_410() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    let cfg = watcher::Config::default().timeout(30);
    let mut events = watcher(api.clone(), cfg).boxed();
    let mut next = async || tokio::time::timeout(Duration::from_secs(10), events.try_next()).await;

    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::InitApply(c)) if c.metadata.name.as_deref() == Some("one"))
    );
    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::InitDone)
    ));

    api.create(&PostParams::default(), &cm("two", &[]))
        .await
        .unwrap();
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::Apply(c)) if c.metadata.name.as_deref() == Some("two"))
    );

    // A broken watch is resumed from its version: nothing is re-listed and
    // the change made meanwhile arrives.
    server.end_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.delete("one", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::Delete(c)) if c.metadata.name.as_deref() == Some("one"))
    );
    let lists = server.count("list", "configmaps");
    assert_eq!(lists, 1);

    // The watch breaks, a change happens, history is compacted past the
    // watcher's version: the resumed watch gets 410 and the watcher
    // re-lists, seeing the change.
    server.end_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &cm("three", &[]))
        .await
        .unwrap();
    server.compact();
    let err = next().await.unwrap();
    assert!(
        matches!(&err, Err(watcher::Error::WatchError(s)) if s.code == 410),
        "{err:?}"
    );
    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::InitApply(c)) if c.metadata.name.as_deref() == Some("three"))
    );
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::InitApply(c)) if c.metadata.name.as_deref() == Some("two"))
    );
    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::InitDone)
    ));
    assert_eq!(server.count("list", "configmaps"), 2);
    // Watching again from the new list's version works.
    api.delete("two", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::Delete(c)) if c.metadata.name.as_deref() == Some("two"))
    );
}

#[tokio::test]
async fn watches_send_bookmarks_and_honour_selectors() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().labels("pick=yes").timeout(30);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();

    let mut skipped = cm("skipped", &[]);
    skipped.metadata.labels = Some(BTreeMap::from([("pick".into(), "no".into())]));
    api.create(&PostParams::default(), &skipped).await.unwrap();
    let mut picked = cm("picked", &[]);
    picked.metadata.labels = Some(BTreeMap::from([("pick".into(), "yes".into())]));
    api.create(&PostParams::default(), &picked).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("picked")));

    // Leaving the selection is a DELETED, entering it an ADDED.
    let mut c = api.get("picked").await.unwrap();
    c.metadata.labels = Some(BTreeMap::from([("pick".into(), "no".into())]));
    let c = api
        .replace("picked", &PostParams::default(), &c)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Deleted(c) if c.metadata.name.as_deref() == Some("picked")));
    let mut c = c;
    c.metadata.labels = Some(BTreeMap::from([("pick".into(), "yes".into())]));
    api.replace("picked", &PostParams::default(), &c)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("picked")));

    server.bookmark();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let WatchEvent::Bookmark(b) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(
        b.metadata.resource_version,
        server.resource_version().to_string()
    );
}

#[tokio::test]
async fn injected_401_and_403_surface_as_api_errors_then_clear() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns");
    server.fail(Fault::new(403, "/configmaps", 1).method("post"));
    server.fail(Fault::new(401, "/configmaps", 1).method("get"));
    let (code, reason) = api_code(
        api.create(&PostParams::default(), &cm("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    let (code, reason) = api_code(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
    api.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    assert_eq!(server.writes(), 2);
}

#[tokio::test]
async fn unregistered_resources_are_404_like_absent_crds() {
    let server = FakeApiServer::start().await.unwrap();
    let gvk = GroupVersionKind::gvk("sriovnetwork.openshift.io", "v1", "SriovNetworkNodePolicy");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "sriovnetworknodepolicies");
    let api: Api<DynamicObject> = Api::namespaced_with(client(&server), "sriov", &ar);
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(server.unregister(
        "sriovnetwork.openshift.io",
        "v1",
        "sriovnetworknodepolicies"
    ));
    let (code, _) = api_code(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 404);
    let slices: Api<DynamicObject> = Api::namespaced_with(
        client(&server),
        "ns",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("resource.k8s.io", "v1", "ResourceSlice"),
            "resourceslices",
        ),
    );
    // A cluster-scoped type under a namespace path does not exist either.
    assert_eq!(
        api_code(slices.list(&ListParams::default()).await.unwrap_err()).0,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_changes() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "ns");
    api.create(&PostParams::default(), &cm("one", &[]))
        .await
        .unwrap();
    let cfg = watcher::Config::default().streaming_lists().timeout(30);
    let mut events = watcher(api.clone(), cfg).boxed();
    let mut next = async || tokio::time::timeout(Duration::from_secs(10), events.try_next()).await;
    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::Init)
    ));
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::InitApply(c)) if c.metadata.name.as_deref() == Some("one"))
    );
    assert!(matches!(
        next().await.unwrap().unwrap(),
        Some(watcher::Event::InitDone)
    ));
    api.create(&PostParams::default(), &cm("two", &[]))
        .await
        .unwrap();
    assert!(
        matches!(next().await.unwrap().unwrap(), Some(watcher::Event::Apply(c)) if c.metadata.name.as_deref() == Some("two"))
    );
    assert_eq!(server.count("list", "configmaps"), 0);
}

#[tokio::test]
async fn the_event_recorder_creates_then_patches_a_series() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = FakeApiServer::start().await.unwrap();
    let reporter = Reporter {
        controller: "fastpath".into(),
        instance: Some("node-a".into()),
    };
    let recorder = Recorder::new(client(&server), reporter);
    let node = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some("node-a".into()),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "PolicyApplied".into(),
        note: Some("4 VFs on ens1f0".into()),
        action: "Provision".into(),
        secondary: None,
    };
    recorder.publish(&ev, &node).await.unwrap();
    recorder.publish(&ev, &node).await.unwrap();
    let stored = server.list("events.k8s.io/v1", "Event");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["reason"], "PolicyApplied");
    assert_eq!(stored[0]["series"]["count"], 2);
    assert_eq!(
        (
            server.count("create", "events"),
            server.count("patch", "events")
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn status_apply_on_a_custom_resource_leaves_spec_and_generation() {
    let server = FakeApiServer::start().await.unwrap();
    let gvk = GroupVersionKind::gvk("sriovnetwork.openshift.io", "v1", "SriovNetworkNodeState");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "sriovnetworknodestates");
    server
        .seed(json!({"apiVersion": "sriovnetwork.openshift.io/v1", "kind": "SriovNetworkNodeState",
            "metadata": {"name": "node-a", "namespace": "sriov"}, "spec": {"interfaces": [{"name": "ens1f0", "numVfs": 4}]}}))
        .unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client(&server), "sriov", &ar);
    let status = json!({"apiVersion": "sriovnetwork.openshift.io/v1", "kind": "SriovNetworkNodeState",
        "metadata": {"name": "node-a"}, "status": {"syncStatus": "Succeeded", "spec": "ignored"}, "spec": {"interfaces": []}});
    let got = api
        .patch_status(
            "node-a",
            &PatchParams::apply("fastpath"),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(got.data["status"]["syncStatus"], "Succeeded");
    assert_eq!(got.data["spec"]["interfaces"][0]["numVfs"], 4);
    assert_eq!(got.metadata.generation, Some(1));
    let owners = got.metadata.managed_fields.unwrap();
    let mine = owners
        .iter()
        .find(|m| m.manager.as_deref() == Some("fastpath"))
        .unwrap();
    assert_eq!(mine.subresource.as_deref(), Some("status"));
    // Applying to the main resource cannot set status.
    let main = json!({"apiVersion": "sriovnetwork.openshift.io/v1", "kind": "SriovNetworkNodeState",
        "metadata": {"name": "node-a"}, "status": {"syncStatus": "Failed"}});
    let got = api
        .patch("node-a", &PatchParams::apply("other"), &Patch::Apply(&main))
        .await
        .unwrap();
    assert_eq!(got.data["status"]["syncStatus"], "Succeeded");
}
