//! What the server owns in an object's body: identity checks against the
//! path, the part that bumps `generation`, and which part a request in a
//! scope may change.

use serde_json::{Map, Value};

use crate::apply::Scope;
use crate::registry::ResourceType;
use crate::store::StoreError;

pub(crate) fn str_at(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The part of an object whose change bumps `metadata.generation`.
pub(crate) fn spec_part(v: &Value, rt: &ResourceType) -> Value {
    let mut m = v.as_object().cloned().unwrap_or_default();
    m.remove("metadata");
    if rt.status {
        m.remove("status");
    }
    Value::Object(m)
}

/// `new` limited to what a request in `scope` may change: status from
/// `old` on the main path when status is a subresource; everything but
/// status from `old` on `/status`.
pub(crate) fn confine(old: &Value, new: &Value, scope: Scope) -> Value {
    match scope {
        Scope::Main {
            status_subresource: false,
        } => new.clone(),
        Scope::Main { .. } => {
            let mut out = new.clone();
            match old.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            out
        }
        Scope::Status => {
            let mut out = old.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            out
        }
    }
}

/// Fills a missing apiVersion and kind and refuses a body that names
/// another type, namespace or name than the path.
pub(crate) fn check_identity(
    rt: &ResourceType,
    ns: Option<&str>,
    name: Option<&str>,
    obj: &mut Value,
) -> Result<(), StoreError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(StoreError::Invalid("the body is not a JSON object".into()));
    };
    let want_av = rt.api_version();
    for (field, want) in [("apiVersion", want_av.as_str()), ("kind", rt.kind.as_str())] {
        match m.get(field).and_then(Value::as_str) {
            None => {
                m.insert(field.into(), Value::String(want.into()));
            }
            Some(got) if got != want => {
                return Err(StoreError::Invalid(format!(
                    "{field} {got:?} in the body does not match the path's {want:?}"
                )));
            }
            Some(_) => {}
        }
    }
    let meta = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(StoreError::Invalid("metadata is not an object".into()));
    };
    if let Some(want) = name {
        match meta.get("name").and_then(Value::as_str) {
            None => {
                meta.insert("name".into(), Value::String(want.into()));
            }
            Some(got) if got != want => {
                return Err(StoreError::Invalid(format!(
                    "metadata.name {got:?} in the body does not match the path's {want:?}"
                )));
            }
            Some(_) => {}
        }
    }
    match (ns, meta.get("namespace").and_then(Value::as_str)) {
        (Some(want), None) => {
            meta.insert("namespace".into(), Value::String(want.into()));
        }
        (Some(want), Some(got)) if got != want => {
            return Err(StoreError::Invalid(format!(
                "metadata.namespace {got:?} in the body does not match the path's {want:?}"
            )));
        }
        (None, Some(got)) if !got.is_empty() => {
            return Err(StoreError::Invalid(format!(
                "metadata.namespace {got:?} set on a cluster-scoped {}",
                rt.kind
            )));
        }
        _ => {}
    }
    Ok(())
}
