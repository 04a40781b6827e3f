//! A stand-in for the Kubernetes API server, for tests: it speaks the
//! REST and watch wire format the `kube` client uses (get, list, create,
//! update, patch with server-side apply, delete, the status subresource,
//! watch with resourceVersion, 410 Gone and bookmarks), keeps objects as
//! JSON, and lets a test seed objects, break watches, inject 401/403 and
//! count requests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = fake_apiserver::FakeApiServer::start().await?;
//! let url = server.url(); // http://127.0.0.1:PORT for kube::Config::new
//! # Ok(()) }
//! ```

pub mod apply;
pub mod dir;
mod http;
pub mod log;
mod object;
pub mod registry;
pub mod select;
pub mod store;
mod stream;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use crate::log::{Fault, Request};
pub use crate::registry::{Registry, ResourceType};
pub use crate::store::{Key, StoreError};

use crate::apply::Scope;
use crate::log::Faults;
use crate::store::Store;

/// The field manager direct changes from the test are recorded under.
pub const TEST_MANAGER: &str = "fake-apiserver-test";

/// State shared by the connections and the handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Request>>,
    ended: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock already failed; the
    // data is still usable for the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn log(&self, r: Request) {
        lock(&self.log).push(r);
    }

    pub(crate) fn fault(&self, method: &str, path: &str) -> Option<u16> {
        lock(&self.faults).take(method, path)
    }

    pub(crate) fn ended(&self) -> watch::Receiver<u64> {
        self.ended.subscribe()
    }
}

/// The time as the API server writes it (RFC 3339, seconds).
pub(crate) fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A running stand-in API server; dropping it stops it.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts on `127.0.0.1` at a free port with the default registry.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().expect("a literal address"),
            Registry::default(),
        )
        .await
    }

    /// Starts on `addr` serving the types in `registry`.
    pub async fn bind(addr: SocketAddr, registry: Registry) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(registry)),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            ended: watch::channel(0).0,
        });
        let (stop, mut stopped) = watch::channel(false);
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let s = serving.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| http::handle(s.clone(), req));
                            // A client hanging up mid-request is not the
                            // server's failure.
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
            serving.ended.send_modify(|e| *e += 1);
            conns.shutdown().await;
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves one more resource type (or replaces one).
    pub fn register(&self, rt: ResourceType) {
        self.shared.store().registry.register(rt);
    }

    /// Stops serving a type: its paths answer 404, as when a CRD is
    /// absent.
    pub fn unregister(&self, group: &str, version: &str, plural: &str) -> bool {
        self.shared
            .store()
            .registry
            .unregister(group, version, plural)
    }

    fn type_of(&self, api_version: &str, kind: &str) -> Result<ResourceType, StoreError> {
        self.shared
            .store()
            .registry
            .by_kind(api_version, kind)
            .cloned()
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "no served type has apiVersion {api_version:?} and kind {kind:?}"
                ))
            })
    }

    /// Creates or replaces `obj` (it names its `apiVersion` and `kind`),
    /// status included; watches see it. Returns the stored object.
    pub fn seed(&self, obj: Value) -> Result<Value, StoreError> {
        let s = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let rt = self.type_of(&s("/apiVersion"), &s("/kind"))?;
        let ns = s("/metadata/namespace");
        let ns = (rt.namespaced).then_some(ns.as_str());
        let name = s("/metadata/name");
        let now = now();
        let by = store::By {
            manager: TEST_MANAGER,
            now: &now,
        };
        let mut store = self.shared.store();
        if store.get(&Key::new(&rt, ns, &name)).is_some() {
            let mut obj = obj;
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let everything = Scope::Main {
                status_subresource: false,
            };
            store.update(&rt, ns, &name, obj, everything, by)
        } else {
            store.create(&rt, ns, obj, by)
        }
    }

    /// One object by `apiVersion`, `kind`, namespace and name.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let rt = self.type_of(api_version, kind).ok()?;
        self.shared.store().get(&Key::new(&rt, ns, name)).cloned()
    }

    /// Every object of a type, in all namespaces.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Ok(rt) = self.type_of(api_version, kind) else {
            return Vec::new();
        };
        let all = select::Selector::default();
        self.shared.store().list(&rt, None, &all, &all).0
    }

    /// Changes an object in place with `f` (status included), as another
    /// client would; watches see it. Returns the stored object.
    pub fn modify(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, StoreError> {
        let mut obj = self
            .get(api_version, kind, ns, name)
            .ok_or_else(|| StoreError::NotFound(format!("{kind} {name:?}")))?;
        f(&mut obj);
        self.seed(obj)
    }

    /// Deletes an object; watches see it.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let rt = self.type_of(api_version, kind)?;
        self.shared.store().delete(&rt, ns, name)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Forgets the change history: a watch from any earlier version now
    /// gets an ERROR event with 410 Expired and must re-list.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Sends a BOOKMARK at the current version to every open watch that
    /// allowed bookmarks.
    pub fn bookmark(&self) {
        self.shared.store().bookmark();
    }

    /// Ends every open watch stream, as a dropped connection or a server
    /// timeout would; clients re-watch from their last version.
    pub fn end_watches(&self) {
        self.shared.ended.send_modify(|e| *e += 1);
    }

    /// Arms a fault: the next matching requests fail with its code.
    pub fn fail(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// How many requests had this verb (`get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`) on this resource plural; an empty
    /// verb or resource matches any.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| {
                (verb.is_empty() || r.verb == verb)
                    && (resource.is_empty() || r.resource == resource)
            })
            .count()
    }

    /// How many requests changed something (create, update, patch,
    /// delete), on any resource.
    pub fn writes(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.is_write())
            .count()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Stops accepting, ends every watch and closes every connection.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
