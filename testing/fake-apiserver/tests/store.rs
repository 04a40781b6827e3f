//! The store without HTTP: versions, generation, no-op writes, the status
//! scope, and history compaction.

use fake_apiserver::apply::Scope;
use fake_apiserver::store::{By, ChangeType, PatchBody, Store};
use fake_apiserver::{Registry, StoreError};
use serde_json::json;

const BY: By = By {
    manager: "m",
    now: "2026-01-01T00:00:00Z",
};

#[test]
fn versions_generation_and_no_op_writes() {
    let mut s = Store::new(Registry::default());
    let rt = s
        .registry
        .by_kind("sriovnetwork.openshift.io/v1", "SriovNetworkNodePolicy")
        .unwrap()
        .clone();
    let ns = Some("sriov");
    let main = Scope::Main {
        status_subresource: true,
    };
    let made = s
        .create(
            &rt,
            ns,
            json!({"metadata": {"name": "p"}, "spec": {"numVfs": 4}}),
            BY,
        )
        .unwrap();
    assert_eq!(
        (
            made["metadata"]["generation"].as_i64(),
            made["metadata"]["namespace"].as_str()
        ),
        (Some(1), Some("sriov"))
    );
    let rv = s.resource_version();

    // The same body again: no new version.
    let same = s
        .update(
            &rt,
            ns,
            "p",
            json!({"metadata": {"name": "p"}, "spec": {"numVfs": 4}}),
            main,
            BY,
        )
        .unwrap();
    assert_eq!(s.resource_version(), rv);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        made["metadata"]["resourceVersion"]
    );

    // Status through /status: a new version, the same generation.
    let st = s
        .patch(
            &rt,
            ns,
            "p",
            PatchBody::Merge(json!({"status": {"syncStatus": "Succeeded"}, "spec": {"numVfs": 9}})),
            Scope::Status,
            BY,
        )
        .unwrap();
    assert_eq!(
        (
            st["metadata"]["generation"].as_i64(),
            st["spec"]["numVfs"].as_i64()
        ),
        (Some(1), Some(4))
    );
    assert_eq!(st["status"]["syncStatus"], "Succeeded");
    // Spec through the main path: generation 2, status kept.
    let sp = s
        .patch(
            &rt,
            ns,
            "p",
            PatchBody::Merge(json!({"spec": {"numVfs": 8}, "status": null})),
            main,
            BY,
        )
        .unwrap();
    assert_eq!(
        (
            sp["metadata"]["generation"].as_i64(),
            sp["status"]["syncStatus"].as_str()
        ),
        (Some(2), Some("Succeeded"))
    );

    // A stale version is refused, a body naming another object too.
    let stale = json!({"metadata": {"name": "p", "resourceVersion": made["metadata"]["resourceVersion"]}, "spec": {}});
    assert!(matches!(
        s.update(&rt, ns, "p", stale, main, BY),
        Err(StoreError::Stale(_))
    ));
    let other = json!({"metadata": {"name": "q"}});
    assert!(
        matches!(s.update(&rt, ns, "p", other, main, BY), Err(StoreError::Invalid(m)) if m.contains("\"q\""))
    );
    assert!(matches!(
        s.create(&rt, ns, json!({"metadata": {}}), BY),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn json_patches_apply_in_order_and_a_failing_one_changes_nothing() {
    let mut s = Store::new(Registry::default());
    let rt = s.registry.by_kind("v1", "ConfigMap").unwrap().clone();
    let ns = Some("ns");
    let main = Scope::Main {
        status_subresource: false,
    };
    s.create(
        &rt,
        ns,
        json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
        BY,
    )
    .unwrap();
    let ops = |v| PatchBody::Json(serde_json::from_value(v).unwrap());
    let ok = ops(
        json!([{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}]),
    );
    let c = s.patch(&rt, ns, "c", ok, main, BY).unwrap();
    assert_eq!(c["data"], json!({"b": "2"}));
    let rv = s.resource_version();
    let bad = ops(
        json!([{"op": "add", "path": "/data/x", "value": "1"}, {"op": "test", "path": "/data/b", "value": "9"}]),
    );
    assert!(matches!(
        s.patch(&rt, ns, "c", bad, main, BY),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.resource_version(), rv);
    let missing = ops(json!([]));
    assert!(
        matches!(s.patch(&rt, ns, "nope", missing, main, BY), Err(StoreError::NotFound(m)) if m.contains("configmaps \"nope\""))
    );
}

#[test]
fn watches_replay_history_until_it_is_compacted() {
    let mut s = Store::new(Registry::default());
    let rt = s.registry.by_kind("v1", "Node").unwrap().clone();
    let from = s.resource_version().to_string();
    s.create(&rt, None, json!({"metadata": {"name": "a"}}), BY)
        .unwrap();
    s.delete(&rt, None, "a").unwrap();
    let (backlog, _) = s.watch(&rt, &from).unwrap();
    let kinds: Vec<ChangeType> = backlog.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ChangeType::Added, ChangeType::Deleted]);
    s.compact();
    assert!(matches!(s.watch(&rt, &from), Err(StoreError::Gone { .. })));
    let (backlog, _) = s.watch(&rt, &s.resource_version().to_string()).unwrap();
    assert!(backlog.is_empty());
    assert!(matches!(s.watch(&rt, "abc"), Err(StoreError::Invalid(_))));
}
