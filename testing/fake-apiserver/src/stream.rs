//! Watch streams: newline-delimited WatchEvents over a chunked response,
//! replayed from history, then live, until the timeout, the client
//! leaving, or the test ending every watch.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast::error::RecvError, mpsc};

use crate::http::{Body, Ctx, failure, status_object};
use crate::store::{Change, ChangeType, StoreError};

impl Ctx {
    /// Answers a watch request.
    pub(crate) fn watch(self) -> hyper::Response<Body> {
        let (labels, fields) = match self.selectors() {
            Ok(s) => s,
            Err((code, reason, msg)) => return failure(code, reason, msg),
        };
        let from = self
            .query
            .get("resourceVersion")
            .cloned()
            .unwrap_or_default();
        let bookmarks = self
            .query
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true");
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(Duration::from_secs(1800), Duration::from_secs);
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        // A streaming list (sendInitialEvents=true) starts with every
        // current object, then a bookmark that marks the end of them.
        let initial = self
            .query
            .get("sendInitialEvents")
            .is_some_and(|b| b == "true");
        let (started, start_rv) = {
            let store = self.shared.store();
            let from = if initial { "" } else { from.as_str() };
            (store.watch(&self.rt, from), store.resource_version())
        };
        let mut ended = self.shared.ended();
        let ns = self.route.namespace.clone();
        let rt = self.rt.clone();
        tokio::spawn(async move {
            let line = |v: Value| Bytes::from(format!("{v}\n"));
            let (backlog, mut live) = match started {
                Ok(s) => s,
                Err(e) => {
                    // As the real server: 200, one ERROR event, end.
                    let (code, reason) = match e {
                        StoreError::Gone { .. } => (410, "Expired"),
                        _ => (400, "BadRequest"),
                    };
                    let obj = status_object(code, reason, e.to_string(), Vec::new());
                    let _ = tx.send(line(json!({"type": "ERROR", "object": obj}))).await;
                    return;
                }
            };
            let selected = |v: &Value| labels.matches(v) && fields.matches(v);
            // The event this watch sees for a change, if any.
            let seen_as = |c: &Change| -> Option<ChangeType> {
                let here = c.key.group == rt.group
                    && c.key.version == rt.version
                    && c.key.plural == rt.plural
                    && ns.as_deref().is_none_or(|n| c.key.namespace == n);
                let now_in = selected(&c.obj);
                let was_in = c.old.as_ref().map(selected);
                match (here, c.kind, was_in, now_in) {
                    (false, ..) => None,
                    (_, ChangeType::Modified, Some(false), true) => Some(ChangeType::Added),
                    (_, ChangeType::Modified, Some(true), false) => Some(ChangeType::Deleted),
                    (_, kind, _, true) => Some(kind),
                    _ => None,
                }
            };
            let event = |c: &Change| -> Option<Value> {
                if c.kind == ChangeType::Bookmark {
                    return bookmarks.then(|| {
                        json!({"type": "BOOKMARK", "object": {
                            "apiVersion": rt.api_version(), "kind": rt.kind,
                            "metadata": {"resourceVersion": c.rv.to_string()}}})
                    });
                }
                seen_as(c).map(|kind| json!({"type": kind.wire(), "object": c.obj}))
            };
            for c in &backlog {
                if let Some(e) = event(c)
                    && tx.send(line(e)).await.is_err()
                {
                    return;
                }
            }
            if initial {
                let end = json!({"type": "BOOKMARK", "object": {
                    "apiVersion": rt.api_version(), "kind": rt.kind,
                    "metadata": {"resourceVersion": start_rv.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}});
                if tx.send(line(end)).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = live.recv() => match r {
                        Ok(c) => {
                            if let Some(e) = event(&c)
                                && tx.send(line(e)).await.is_err()
                            {
                                return;
                            }
                        }
                        // A lagging watcher is cut off; it resumes from
                        // its last version, which history still holds.
                        Err(RecvError::Lagged(_) | RecvError::Closed) => return,
                    },
                    _ = ended.changed() => return,
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let mut r = hyper::Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }
}
