//! The request log and injected faults: what tests count and break.

/// One request as the server understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete
    /// (empty for paths that name no resource).
    pub verb: String,
    /// API group of the resource.
    pub group: String,
    /// Plural of the resource.
    pub resource: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Object name from the path, if any.
    pub name: Option<String>,
    /// Subresource (`status`), if any.
    pub subresource: Option<String>,
    /// The path as sent.
    pub path: String,
    /// The query as sent.
    pub query: String,
}

impl Request {
    /// Whether the request changes something (create, update, patch,
    /// delete).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A fault to inject: the next `times` requests that match fail with
/// `code` and a Status body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP method to match (`GET`, `PATCH`...); none: any.
    pub method: Option<String>,
    /// A substring of the path to match; empty: any.
    pub path_contains: String,
    /// HTTP status to answer: 401, 403, 500, ...
    pub code: u16,
    /// How many matching requests fail.
    pub times: usize,
}

impl Fault {
    /// The next `times` requests whose path contains `path_contains` fail
    /// with `code`.
    pub fn new(code: u16, path_contains: &str, times: usize) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_string(),
            code,
            times,
        }
    }

    /// Only requests with this HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && path.contains(&self.path_contains)
    }
}

/// The faults still armed; the first that matches a request fires.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Vec<Fault>,
}

impl Faults {
    /// Arms `f`.
    pub fn push(&mut self, f: Fault) {
        self.armed.push(f);
    }

    /// The status code to fail this request with, counting it down.
    pub fn take(&mut self, method: &str, path: &str) -> Option<u16> {
        let f = self.armed.iter_mut().find(|f| f.matches(method, path))?;
        f.times -= 1;
        let code = f.code;
        self.armed.retain(|f| f.times > 0);
        Some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_the_given_number_of_times_on_matching_requests_only() {
        let mut f = Faults::default();
        f.push(Fault::new(403, "/resourceslices", 2).method("patch"));
        assert_eq!(
            f.take("GET", "/apis/resource.k8s.io/v1/resourceslices"),
            None
        );
        assert_eq!(f.take("PATCH", "/api/v1/nodes/a"), None);
        assert_eq!(
            f.take("PATCH", "/apis/resource.k8s.io/v1/resourceslices/x"),
            Some(403)
        );
        assert_eq!(
            f.take("PATCH", "/apis/resource.k8s.io/v1/resourceslices/y"),
            Some(403)
        );
        assert_eq!(
            f.take("PATCH", "/apis/resource.k8s.io/v1/resourceslices/z"),
            None
        );
    }
}
