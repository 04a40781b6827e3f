//! The HTTP face: Kubernetes REST paths to store calls, Status bodies for
//! errors, and chunked watch streams.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};
use serde_json::{Value, json};

use crate::Shared;
use crate::apply::Scope;
use crate::log::Request as Logged;
use crate::registry::ResourceType;
use crate::select::Selector;
use crate::store::{By, PatchBody, StoreError};

/// The response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// A refusal before the store is asked: code, reason, message.
pub(crate) type Refused = (u16, &'static str, String);

/// A REST path taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    group: String,
    version: String,
    pub(crate) namespace: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Route {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: plural.to_string(),
        name,
        sub,
    })
}

fn verb(method: &Method, route: &Route, query: &BTreeMap<String, String>) -> &'static str {
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match (method.as_str(), route.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

fn json_response(code: StatusCode, v: &Value) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` object as the server sends for a failure.
pub fn status_object(code: u16, reason: &str, message: String, causes: Vec<StatusCause>) -> Value {
    let s = Status {
        code: Some(code.into()),
        details: (!causes.is_empty()).then(|| StatusDetails {
            causes: Some(causes),
            ..Default::default()
        }),
        message: Some(message),
        metadata: ListMeta::default(),
        reason: Some(reason.to_string()),
        status: Some("Failure".to_string()),
    };
    serde_json::to_value(s).unwrap_or(Value::Null)
}

pub(crate) fn failure(code: u16, reason: &str, message: String) -> hyper::Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &status_object(code, reason, message, Vec::new()))
}

fn store_failure(e: StoreError) -> hyper::Response<Body> {
    let msg = e.to_string();
    match e {
        StoreError::NotFound(_) => failure(404, "NotFound", msg),
        StoreError::AlreadyExists(_) => failure(409, "AlreadyExists", msg),
        StoreError::Stale(_) => failure(409, "Conflict", msg),
        StoreError::ApplyConflict(cs) => {
            let causes = cs
                .iter()
                .map(|c| StatusCause {
                    field: Some(c.field.clone()),
                    message: Some(format!("conflict with {:?}", c.manager)),
                    reason: Some("FieldManagerConflict".into()),
                })
                .collect();
            json_response(
                StatusCode::CONFLICT,
                &status_object(409, "Conflict", msg, causes),
            )
        }
        StoreError::Invalid(_) => failure(400, "BadRequest", msg),
        StoreError::Gone { .. } => failure(410, "Expired", msg),
    }
}

fn not_served(path: &str) -> hyper::Response<Body> {
    failure(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

/// Answers one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query: BTreeMap<String, String> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let route = parse_path(&path);
    let v = route.as_ref().map_or("", |r| verb(&method, r, &query));
    shared.log(Logged {
        method: method.to_string(),
        verb: v.to_string(),
        group: route.as_ref().map_or(String::new(), |r| r.group.clone()),
        resource: route.as_ref().map_or(String::new(), |r| r.plural.clone()),
        namespace: route.as_ref().and_then(|r| r.namespace.clone()),
        name: route.as_ref().and_then(|r| r.name.clone()),
        subresource: route.as_ref().and_then(|r| r.sub.clone()),
        path: path.clone(),
        query: raw_query,
    });
    if let Some(code) = shared.fault(method.as_str(), &path) {
        let reason = match code {
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            429 => "TooManyRequests",
            _ => "InternalError",
        };
        return Ok(failure(
            code,
            reason,
            format!("injected fault: {method} {path} answered {code} {reason}"),
        ));
    }
    if path == "/version" {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake", "platform": "linux/amd64"}),
        ));
    }
    let Some(route) = route else {
        return Ok(not_served(&path));
    };
    let rt = {
        let store = shared.store();
        store
            .registry
            .by_plural(&route.group, &route.version, &route.plural)
            .cloned()
    };
    let Some(rt) = rt else {
        return Ok(not_served(&path));
    };
    let ns_ok = if rt.namespaced {
        route.namespace.is_some() || route.name.is_none()
    } else {
        route.namespace.is_none()
    };
    let scope = match route.sub.as_deref() {
        None => Scope::Main {
            status_subresource: rt.status,
        },
        Some("status") if rt.status => Scope::Status,
        Some(_) => return Ok(not_served(&path)),
    };
    // The status subresource has get, update and patch only.
    let sub_ok = route.sub.is_none() || matches!(v, "get" | "update" | "patch");
    if !ns_ok || !sub_ok || v.is_empty() || v == "deletecollection" {
        return Ok(not_served(&path));
    }
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| {
        let ua = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").to_string()
    });
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(failure(400, "BadRequest", format!("reading the body: {e}"))),
    };
    let ctx = Ctx {
        shared,
        rt,
        route,
        scope,
        query,
        manager,
    };
    Ok(match v {
        "watch" => ctx.watch(),
        "list" => ctx.list(),
        "get" => ctx.get(),
        "delete" => ctx.delete(),
        _ => ctx.write(v, &content_type, &body),
    })
}

/// One request's context, once the path named a served type.
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rt: ResourceType,
    pub(crate) route: Route,
    pub(crate) scope: Scope,
    pub(crate) query: BTreeMap<String, String>,
    pub(crate) manager: String,
}

fn parse_json(body: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Invalid(format!("decoding the body: {e}")))
}

impl Ctx {
    fn ns(&self) -> Option<&str> {
        self.route.namespace.as_deref()
    }

    fn by<'a>(&'a self, now: &'a str) -> By<'a> {
        By {
            manager: &self.manager,
            now,
        }
    }

    fn name(&self) -> &str {
        self.route.name.as_deref().unwrap_or("")
    }

    pub(crate) fn selectors(&self) -> Result<(Selector, Selector), Refused> {
        let q = |k: &str| self.query.get(k).map(String::as_str).unwrap_or("");
        let labels = Selector::labels(q("labelSelector"));
        let fields = Selector::fields(q("fieldSelector"));
        match (labels, fields) {
            (Ok(l), Ok(f)) => Ok((l, f)),
            (Err(e), _) | (_, Err(e)) => Err((400, "BadRequest", e.to_string())),
        }
    }

    fn get(&self) -> hyper::Response<Body> {
        let key = crate::store::Key::new(&self.rt, self.ns(), self.name());
        match self.shared.store().get(&key) {
            Some(v) => json_response(StatusCode::OK, v),
            None => store_failure(StoreError::NotFound(crate::store::Store::what(
                &self.rt,
                self.name(),
            ))),
        }
    }

    fn list(&self) -> hyper::Response<Body> {
        let (labels, fields) = match self.selectors() {
            Ok(s) => s,
            Err((code, reason, msg)) => return failure(code, reason, msg),
        };
        let (items, rv) = self
            .shared
            .store()
            .list(&self.rt, self.ns(), &labels, &fields);
        let list = json!({
            "apiVersion": self.rt.api_version(),
            "kind": format!("{}List", self.rt.kind),
            "metadata": ListMeta { resource_version: Some(rv.to_string()), ..Default::default() },
            "items": items,
        });
        json_response(StatusCode::OK, &list)
    }

    fn delete(&self) -> hyper::Response<Body> {
        match self.shared.store().delete(&self.rt, self.ns(), self.name()) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => store_failure(e),
        }
    }

    fn write(&self, verb: &str, content_type: &str, body: &[u8]) -> hyper::Response<Body> {
        let now = crate::now();
        let result = match verb {
            "create" => parse_json(body).and_then(|mut obj| {
                // Status is the controllers' to write through /status; a
                // create sets none, as on the real server.
                if self.rt.status
                    && let Some(m) = obj.as_object_mut()
                {
                    m.remove("status");
                }
                self.shared
                    .store()
                    .create(&self.rt, self.ns(), obj, self.by(&now))
            }),
            "update" => parse_json(body).and_then(|obj| {
                self.shared.store().update(
                    &self.rt,
                    self.ns(),
                    self.name(),
                    obj,
                    self.scope,
                    self.by(&now),
                )
            }),
            _ => match self.patch_body(content_type, body) {
                Ok(p) => self.shared.store().patch(
                    &self.rt,
                    self.ns(),
                    self.name(),
                    p,
                    self.scope,
                    self.by(&now),
                ),
                Err((code, reason, msg)) => return failure(code, reason, msg),
            },
        };
        match result {
            Ok(v) if verb == "create" => json_response(StatusCode::CREATED, &v),
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => store_failure(e),
        }
    }

    fn patch_body(&self, content_type: &str, body: &[u8]) -> Result<PatchBody, Refused> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        let bad = |e: String| (400, "BadRequest", e);
        match mime {
            "application/apply-patch+yaml" => {
                if !self.query.contains_key("fieldManager") {
                    return Err(bad(
                        "PATCH: fieldManager is required for apply requests".into()
                    ));
                }
                // kube sends JSON, which YAML reads too.
                let obj = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => serde_norway::from_slice(body)
                        .map_err(|e| bad(format!("decoding the apply body: {e}")))?,
                };
                let force = self.query.get("force").is_some_and(|f| f == "true");
                Ok(PatchBody::Apply { obj, force })
            }
            "application/merge-patch+json" => parse_json(body)
                .map(PatchBody::Merge)
                .map_err(|e| bad(e.to_string())),
            "application/json-patch+json" => serde_json::from_slice(body)
                .map(PatchBody::Json)
                .map_err(|e| bad(format!("decoding the json patch: {e}"))),
            other => Err((
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_the_client_forms_them() {
        let r = parse_path("/api/v1/namespaces/ns/pods/p/status").unwrap();
        assert_eq!(
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.plural.as_str(),
                r.name.as_deref(),
                r.sub.as_deref()
            ),
            ("", Some("ns"), "pods", Some("p"), Some("status"))
        );
        let r = parse_path("/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        let r = parse_path("/apis/resource.k8s.io/v1/resourceslices").unwrap();
        assert_eq!(
            (r.group.as_str(), r.namespace, r.name),
            ("resource.k8s.io", None, None)
        );
        assert!(parse_path("/healthz").is_none());
        assert!(parse_path("/apis/g/v1/a/b/c/d").is_none());
    }
}
