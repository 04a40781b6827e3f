//! The object store: every object as JSON under (group, version, plural,
//! namespace, name), one global resourceVersion counter, and the history
//! of changes that watches replay from.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::object::{check_identity, confine, spec_part, str_at};
use tokio::sync::broadcast;

use crate::apply::{self, Conflict, Op, Scope};
use crate::registry::{Registry, ResourceType};
use crate::select::Selector;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural.
    pub plural: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// The key of `name` in `ns` of type `rt`.
    pub fn new(rt: &ResourceType, ns: Option<&str>, name: &str) -> Self {
        Self {
            group: rt.group.clone(),
            version: rt.version.clone(),
            plural: rt.plural.clone(),
            namespace: ns.unwrap_or("").to_string(),
            name: name.to_string(),
        }
    }

    fn same_type(&self, rt: &ResourceType) -> bool {
        self.group == rt.group && self.version == rt.version && self.plural == rt.plural
    }
}

/// What a watch event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
    /// `BOOKMARK`: only a resourceVersion.
    Bookmark,
}

impl ChangeType {
    /// The wire name.
    pub fn wire(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
            ChangeType::Bookmark => "BOOKMARK",
        }
    }
}

/// One change, as history keeps it and watches send it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion it produced.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeType,
    /// The object (for a bookmark: unused, and the key is empty).
    pub key: Key,
    /// The object after the change (before it, for a delete).
    pub obj: Value,
    /// For a modification, the object before it: a watch with a selector
    /// turns an object entering or leaving the selection into ADDED or
    /// DELETED, as the real server does.
    pub old: Option<Value>,
}

/// A store operation that failed, as the API server would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{0} not found")]
    NotFound(String),
    /// Create of a name that exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A stale resourceVersion.
    #[error(
        "Operation cannot be fulfilled on {0}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Stale(String),
    /// Server-side apply found fields other managers own.
    #[error("Apply failed with {} conflict(s): {}", .0.len(), conflicts_text(.0))]
    ApplyConflict(Vec<Conflict>),
    /// The body does not fit the request.
    #[error("{0}")]
    Invalid(String),
    /// A watch's resourceVersion is older than the retained history.
    #[error("too old resource version: {wanted} ({oldest})")]
    Gone {
        /// The version asked for.
        wanted: u64,
        /// The oldest version history still has.
        oldest: u64,
    },
}

fn conflicts_text(c: &[Conflict]) -> String {
    c.iter()
        .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The body of a patch request.
#[derive(Debug, Clone)]
pub enum PatchBody {
    /// Server-side apply.
    Apply {
        /// The applied configuration.
        obj: Value,
        /// Take fields other managers own.
        force: bool,
    },
    /// RFC 7386 merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch.
    Json(json_patch::Patch),
}

/// Who makes a write and when: the field manager and the request time
/// (RFC 3339).
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The request time.
    pub now: &'a str,
}

/// All objects and their history.
pub struct Store {
    /// The served types.
    pub registry: Registry,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uids: u64,
    history: Vec<Arc<Change>>,
    floor: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

/// What a watch replays first, and the live feed after it.
pub type WatchStart = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// Objects and the version a list saw them at.
pub type Listed = (Vec<Value>, u64);

impl Store {
    /// An empty store serving `registry`.
    pub fn new(registry: Registry) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            registry,
            objects: BTreeMap::new(),
            rv: 1,
            uids: 0,
            history: Vec::new(),
            floor: 1,
            tx,
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of a type, in one namespace or all, that match the
    /// selectors; sorted by namespace and name.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Listed {
        let items = self
            .objects
            .iter()
            .filter(|(k, _)| k.same_type(rt) && ns.is_none_or(|n| k.namespace == n))
            .filter(|(_, v)| labels.matches(v) && fields.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, self.rv)
    }

    /// How error messages name an object (`resourceslices.resource.k8s.io "x"`).
    pub fn what(rt: &ResourceType, name: &str) -> String {
        if rt.group.is_empty() {
            format!("{} {name:?}", rt.plural)
        } else {
            format!("{}.{} {name:?}", rt.plural, rt.group)
        }
    }

    /// Creates `obj` (POST). `manager` owns the fields it set.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        by: By<'_>,
    ) -> Result<Value, StoreError> {
        check_identity(rt, ns, None, &mut obj)?;
        let mut name = str_at(&obj, "/metadata/name");
        if name.is_empty() {
            let prefix = str_at(&obj, "/metadata/generateName");
            if prefix.is_empty() {
                return Err(StoreError::Invalid(
                    "metadata.name: Required value: name or generateName is required".into(),
                ));
            }
            name = format!("{prefix}{:05x}", self.uids + 1);
            obj["metadata"]["name"] = Value::String(name.clone());
        }
        let key = Key::new(rt, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(Self::what(rt, &name)));
        }
        apply::record_update(None, &mut obj, op(&rt.api_version(), by, main(rt)));
        Ok(self.commit(rt, key, None, obj, by.now))
    }

    /// Replaces an object (PUT) in `scope`; a set resourceVersion must be
    /// the current one.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        scope: Scope,
        by: By<'_>,
    ) -> Result<Value, StoreError> {
        check_identity(rt, ns, Some(name), &mut obj)?;
        let key = Key::new(rt, ns, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(Self::what(rt, name)))?;
        let sent = str_at(&obj, "/metadata/resourceVersion");
        if !sent.is_empty() && sent != str_at(&old, "/metadata/resourceVersion") {
            return Err(StoreError::Stale(Self::what(rt, name)));
        }
        let mut new = confine(&old, &obj, scope);
        apply::record_update(Some(&old), &mut new, op(&rt.api_version(), by, scope));
        Ok(self.commit(rt, key, Some(old), new, by.now))
    }

    /// Patches an object (PATCH) in `scope`; apply creates a missing one.
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        body: PatchBody,
        scope: Scope,
        by: By<'_>,
    ) -> Result<Value, StoreError> {
        let key = Key::new(rt, ns, name);
        let old = self.objects.get(&key).cloned();
        let what = || Self::what(rt, name);
        let new = match body {
            PatchBody::Apply { mut obj, force } => {
                check_identity(rt, ns, Some(name), &mut obj)?;
                if old.is_none() && scope == Scope::Status {
                    return Err(StoreError::NotFound(what()));
                }
                let sent = str_at(&obj, "/metadata/resourceVersion");
                if let Some(o) = &old
                    && !sent.is_empty()
                    && sent != str_at(o, "/metadata/resourceVersion")
                {
                    return Err(StoreError::Stale(what()));
                }
                apply::apply(old.as_ref(), &obj, op(&rt.api_version(), by, scope), force)
                    .map_err(StoreError::ApplyConflict)?
            }
            PatchBody::Merge(_) | PatchBody::Json(_) => {
                let o = old.as_ref().ok_or_else(|| StoreError::NotFound(what()))?;
                let mut patched = o.clone();
                match body {
                    PatchBody::Merge(p) => json_patch::merge(&mut patched, &p),
                    PatchBody::Json(p) => json_patch::patch(&mut patched, &p)
                        .map_err(|e| StoreError::Invalid(format!("json patch: {e}")))?,
                    PatchBody::Apply { .. } => {}
                }
                check_identity(rt, ns, Some(name), &mut patched)?;
                let mut new = confine(o, &patched, scope);
                apply::record_update(Some(o), &mut new, op(&rt.api_version(), by, scope));
                new
            }
        };
        Ok(self.commit(rt, key, old, new, by.now))
    }

    /// Deletes an object; returns it as it was.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let key = Key::new(rt, ns, name);
        let obj = self
            .objects
            .remove(&key)
            .ok_or_else(|| StoreError::NotFound(Self::what(rt, name)))?;
        self.rv += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(ChangeType::Deleted, key, obj.clone(), None);
        Ok(obj)
    }

    /// Writes `new` unless it equals `old`, filling the metadata the
    /// server owns; a no-op write keeps the resourceVersion, as a real
    /// server's does.
    fn commit(
        &mut self,
        rt: &ResourceType,
        key: Key,
        old: Option<Value>,
        mut new: Value,
        now: &str,
    ) -> Value {
        let meta = |k: &str, v: &Value| v.pointer(&format!("/metadata/{k}")).cloned();
        match &old {
            Some(o) => {
                for k in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                    if let Some(v) = meta(k, o) {
                        new["metadata"][k] = v;
                    }
                }
                if &new == o {
                    return new;
                }
                if spec_part(&new, rt) != spec_part(o, rt) {
                    let g = o.pointer("/metadata/generation").and_then(Value::as_i64);
                    new["metadata"]["generation"] = Value::from(g.unwrap_or(0) + 1);
                }
            }
            None => {
                self.uids += 1;
                new["metadata"]["uid"] =
                    Value::String(format!("00000000-0000-4000-8000-{:012x}", self.uids));
                new["metadata"]["creationTimestamp"] = Value::String(now.to_string());
                new["metadata"]["generation"] = Value::from(1);
            }
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let kind = if old.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.objects.insert(key.clone(), new.clone());
        self.record(kind, key, new.clone(), old);
        new
    }

    fn record(&mut self, kind: ChangeType, key: Key, obj: Value, old: Option<Value>) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            key,
            obj,
            old,
        });
        self.history.push(change.clone());
        // Nobody watching is not an error.
        let _ = self.tx.send(change);
    }

    /// Drops the history: a watch from an older version gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    /// Sends a bookmark at the current version to every open watch that
    /// asked for bookmarks.
    pub fn bookmark(&self) {
        let _ = self.tx.send(Arc::new(Change {
            rv: self.rv,
            kind: ChangeType::Bookmark,
            key: Key::new(&ResourceType::new("", "", "", "", false, false), None, ""),
            obj: Value::Null,
            old: None,
        }));
    }

    /// What a watch from `from` (empty or `0`: now, starting with every
    /// current object as ADDED) sends first, and the live feed after it.
    pub fn watch(&self, rt: &ResourceType, from: &str) -> Result<WatchStart, StoreError> {
        let rx = self.tx.subscribe();
        if from.is_empty() || from == "0" {
            let backlog = self
                .objects
                .iter()
                .filter(|(k, _)| k.same_type(rt))
                .map(|(k, v)| {
                    Arc::new(Change {
                        rv: self.rv,
                        kind: ChangeType::Added,
                        key: k.clone(),
                        obj: v.clone(),
                        old: None,
                    })
                })
                .collect();
            return Ok((backlog, rx));
        }
        let wanted: u64 = from.parse().map_err(|_| {
            StoreError::Invalid(format!("resourceVersion {from:?} is not a number"))
        })?;
        if wanted < self.floor {
            return Err(StoreError::Gone {
                wanted,
                oldest: self.floor,
            });
        }
        let backlog = self
            .history
            .iter()
            .filter(|c| c.rv > wanted && c.key.same_type(rt))
            .cloned()
            .collect();
        Ok((backlog, rx))
    }
}

fn main(rt: &ResourceType) -> Scope {
    Scope::Main {
        status_subresource: rt.status,
    }
}

fn op<'a>(api_version: &'a str, by: By<'a>, scope: Scope) -> Op<'a> {
    Op {
        manager: by.manager,
        scope,
        api_version,
        now: by.now,
    }
}
