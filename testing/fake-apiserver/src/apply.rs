//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Ownership is tracked per leaf field: a scalar, a list, or an empty map.
//! Lists are atomic (the whole list is one field), which is what
//! `listType=atomic` means on a real server; the real server's merge of
//! `listType=map`/`set` lists by key is not modelled.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A field path: map keys from the object's root.
pub type Path = Vec<String>;

/// Which part of an object a request may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is excluded when it is a subresource.
    Main {
        /// Whether the type has a status subresource.
        status_subresource: bool,
    },
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    /// Whether a request in this scope may set `path`.
    pub fn covers(self, path: &[String]) -> bool {
        let first = path.first().map(String::as_str);
        match self {
            Scope::Status => first == Some("status"),
            Scope::Main { status_subresource } => !(status_subresource && first == Some("status")),
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::Main { .. } => None,
        }
    }
}

/// Fields the server owns; never in a field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
    "selfLink",
];

/// The leaf fields of `obj` that a request in `scope` sets.
pub fn leaf_paths(obj: &Value, scope: Scope) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut path = vec![k.clone()];
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    for (mk, mv) in meta {
                        if !SERVER_METADATA.contains(&mk.as_str()) {
                            path.push(mk.clone());
                            walk(mv, &mut path, &mut out);
                            path.pop();
                        }
                    }
                }
                continue;
            }
            if scope.covers(&path) {
                walk(v, &mut path, &mut out);
            }
        }
    }
    if scope == Scope::Status {
        out.retain(|p| p[0] == "status");
    }
    out
}

fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`.
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

/// Sets the value at `path`, creating maps on the way.
pub fn set(obj: &mut Value, path: &[String], value: Value) {
    let mut v = obj;
    for k in &path[..path.len() - 1] {
        if !v.get(k).is_some_and(Value::is_object) {
            v[k.as_str()] = Value::Object(Map::new());
        }
        v = &mut v[k.as_str()];
    }
    v[path[path.len() - 1].as_str()] = value;
}

/// Removes the value at `path`, then the maps it leaves empty (below the
/// top level).
pub fn remove(obj: &mut Value, path: &[String]) {
    fn go(v: &mut Value, path: &[String]) {
        let Some(m) = v.as_object_mut() else { return };
        if path.len() == 1 {
            m.remove(&path[0]);
            return;
        }
        if let Some(child) = m.get_mut(&path[0]) {
            go(child, &path[1..]);
            if child.as_object().is_some_and(Map::is_empty) {
                m.remove(&path[0]);
            }
        }
    }
    if path.len() == 1 {
        if let Some(m) = obj.as_object_mut() {
            m.remove(&path[0]);
        }
    } else if let Some(top) = obj.get_mut(&path[0]) {
        go(top, &path[1..]);
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// `manager`.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `subresource` (`status`) or none.
    pub subresource: Option<String>,
    /// `apiVersion` of the request.
    pub api_version: String,
    /// `time` of the last change to this entry.
    pub time: String,
    /// Owned leaf fields.
    pub fields: BTreeSet<Path>,
}

/// Reads `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<Managed> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1") {
                fields_from_v1(f, &mut Vec::new(), &mut fields);
            }
            Managed {
                manager: s("manager"),
                operation: s("operation"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                api_version: s("apiVersion"),
                time: s("time"),
                fields,
            }
        })
        .collect()
}

fn fields_from_v1(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (k, child) in children {
        path.push(k[2..].to_string());
        fields_from_v1(child, path, out);
        path.pop();
    }
}

fn fields_to_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Value::Object(Map::new());
    for p in fields {
        let keyed: Path = p.iter().map(|k| format!("f:{k}")).collect();
        set(&mut root, &keyed, Value::Object(Map::new()));
    }
    root
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_managed(obj: &mut Value, managed: &[Managed]) {
    let list: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = serde_json::json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_to_v1(&m.fields),
            });
            if let Some(s) = &m.subresource {
                e["subresource"] = Value::String(s.clone());
            }
            e
        })
        .collect();
    set(
        obj,
        &["metadata".into(), "managedFields".into()],
        Value::Array(list),
    );
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// The field, as `.spec.x`.
    pub field: String,
}

/// Dotted form of a path, as the server's conflict messages print it.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// The request that changes ownership.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The request's part of the object.
    pub scope: Scope,
    /// The object's `apiVersion`.
    pub api_version: &'a str,
    /// The request time (RFC 3339).
    pub now: &'a str,
}

fn entry<'m>(managed: &'m mut Vec<Managed>, op: &Op<'_>, operation: &str) -> &'m mut Managed {
    let sub = op.scope.subresource().map(str::to_string);
    let pos = managed
        .iter()
        .position(|m| m.manager == op.manager && m.operation == operation && m.subresource == sub);
    let i = pos.unwrap_or_else(|| {
        managed.push(Managed {
            manager: op.manager.to_string(),
            operation: operation.to_string(),
            subresource: sub,
            api_version: op.api_version.to_string(),
            time: op.now.to_string(),
            fields: BTreeSet::new(),
        });
        managed.len() - 1
    });
    &mut managed[i]
}

/// Server-side apply of `applied` over `current` (none: create). Returns
/// the new object with its `managedFields`, or every conflict when
/// `force` is false.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    op: Op<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let fields = leaf_paths(applied, op.scope);
    let mut obj = current.cloned().unwrap_or_else(|| {
        let mut base = applied.clone();
        // The object starts from nothing but identity; fields come below.
        for p in leaf_paths(
            applied,
            Scope::Main {
                status_subresource: false,
            },
        ) {
            remove(&mut base, &p);
        }
        base
    });
    let mut managed = current.map(read_managed).unwrap_or_default();
    let mut conflicts = Vec::new();
    for m in managed.iter_mut() {
        let me = m.manager == op.manager && m.operation == "Apply";
        if me {
            continue;
        }
        let taken: Vec<Path> = m
            .fields
            .iter()
            .filter(|p| fields.contains(*p) && get(&obj, p) != get(applied, p))
            .cloned()
            .collect();
        for p in taken {
            if force {
                m.fields.remove(&p);
            } else {
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    field: dotted(&p),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let previous = entry(&mut managed, &op, "Apply").fields.clone();
    // Fields this manager applied before and no longer applies go away,
    // unless another manager still owns them.
    for p in previous.difference(&fields) {
        let shared = managed
            .iter()
            .any(|m| !(m.manager == op.manager && m.operation == "Apply") && m.fields.contains(p));
        if !shared {
            remove(&mut obj, p);
        }
    }
    for p in &fields {
        if let Some(v) = get(applied, p) {
            set(&mut obj, p, v.clone());
        }
    }
    let mine = entry(&mut managed, &op, "Apply");
    if mine.fields != fields {
        mine.time = op.now.to_string();
    }
    mine.fields = fields;
    write_managed(&mut obj, &managed);
    Ok(obj)
}

/// Ownership after a non-apply write (create, update, patch): the manager
/// takes every field it changed, and fields that are gone lose owners.
pub fn record_update(old: Option<&Value>, new: &mut Value, op: Op<'_>) {
    let mut managed = old.map(read_managed).unwrap_or_default();
    let now_fields = leaf_paths(new, op.scope);
    let all_fields = leaf_paths(
        new,
        Scope::Main {
            status_subresource: false,
        },
    );
    let changed: BTreeSet<Path> = now_fields
        .iter()
        .filter(|p| old.and_then(|o| get(o, p)) != get(new, p))
        .cloned()
        .collect();
    for m in managed.iter_mut() {
        m.fields
            .retain(|p| all_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let mine = entry(&mut managed, &op, "Update");
        mine.fields.extend(changed);
        mine.time = op.now.to_string();
    }
    write_managed(new, &managed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(manager: &str) -> Op<'_> {
        Op {
            manager,
            scope: Scope::Main {
                status_subresource: true,
            },
            api_version: "v1",
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn p(s: &str) -> Path {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn leaf_fields_skip_server_metadata_and_status_when_a_subresource() {
        let obj = json!({"apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "3", "labels": {"l": "1"}},
            "spec": {"list": [1, 2], "empty": {}, "deep": {"x": true}}, "status": {"s": 1}});
        let main: Vec<Path> = leaf_paths(&obj, op("m").scope).into_iter().collect();
        assert_eq!(
            main,
            [
                p("metadata.labels.l"),
                p("spec.deep.x"),
                p("spec.empty"),
                p("spec.list")
            ]
        );
        let status: Vec<Path> = leaf_paths(&obj, Scope::Status).into_iter().collect();
        assert_eq!(status, [p("status.s")]);
        let all = leaf_paths(
            &obj,
            Scope::Main {
                status_subresource: false,
            },
        );
        assert!(all.contains(&p("status.s")));
    }

    #[test]
    fn managed_fields_round_trip_through_fields_v1() {
        let mut obj = json!({"metadata": {"name": "a"}});
        let m = Managed {
            manager: "m".into(),
            operation: "Apply".into(),
            subresource: Some("status".into()),
            api_version: "v1".into(),
            time: "t".into(),
            fields: [p("status.a.b"), p("status.c")].into_iter().collect(),
        };
        write_managed(&mut obj, std::slice::from_ref(&m));
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:status": {"f:a": {"f:b": {}}, "f:c": {}}})
        );
        assert_eq!(read_managed(&obj), [m]);
    }

    #[test]
    fn apply_shares_equal_values_conflicts_on_different_ones_and_force_moves_ownership() {
        let a = json!({"metadata": {"name": "x"}, "spec": {"a": 1, "s": "same"}});
        let obj = apply(None, &a, op("alice"), false).unwrap();
        let b = json!({"metadata": {"name": "x"}, "spec": {"s": "same", "a": 2, "b": 3}});
        let err = apply(Some(&obj), &b, op("bob"), false).unwrap_err();
        assert_eq!(
            err,
            [Conflict {
                manager: "alice".into(),
                field: ".spec.a".into()
            }]
        );
        let forced = apply(Some(&obj), &b, op("bob"), true).unwrap();
        assert_eq!(forced["spec"], json!({"a": 2, "s": "same", "b": 3}));
        let owners = read_managed(&forced);
        let alice = owners.iter().find(|m| m.manager == "alice").unwrap();
        assert_eq!(alice.fields, [p("spec.s")].into_iter().collect());
        // Alice applies nothing: "s" stays (bob owns it too).
        let after = apply(
            Some(&forced),
            &json!({"metadata": {"name": "x"}}),
            op("alice"),
            false,
        )
        .unwrap();
        assert_eq!(after["spec"], json!({"a": 2, "s": "same", "b": 3}));
        assert!(read_managed(&after).iter().all(|m| m.manager != "alice"));
    }

    #[test]
    fn updates_take_the_fields_they_change_from_appliers() {
        let obj = apply(
            None,
            &json!({"metadata": {"name": "x"}, "spec": {"a": 1, "b": 1}}),
            op("alice"),
            false,
        )
        .unwrap();
        let mut new = obj.clone();
        new["spec"]["a"] = json!(5);
        record_update(Some(&obj), &mut new, op("kubectl"));
        let owners = read_managed(&new);
        let find = |m: &str| {
            owners
                .iter()
                .find(|e| e.manager == m)
                .unwrap()
                .fields
                .clone()
        };
        assert_eq!(find("kubectl"), [p("spec.a")].into_iter().collect());
        assert_eq!(find("alice"), [p("spec.b")].into_iter().collect());
        // Alice applying a again with her old value now conflicts.
        let err = apply(
            Some(&new),
            &json!({"metadata": {"name": "x"}, "spec": {"a": 1, "b": 1}}),
            op("alice"),
            false,
        );
        assert_eq!(err.unwrap_err()[0].manager, "kubectl");
    }
}
