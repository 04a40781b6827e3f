//! The resources the stand-in serves. A resource missing here answers 404
//! on every path, as a real server does for a CRD that is not installed.

/// One served resource type, as discovery would describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural lower-case name used in paths.
    pub plural: String,
    /// Kind of one object.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `status` is a subresource: the main path then ignores
    /// status changes and `/status` changes nothing else.
    pub status: bool,
}

impl ResourceType {
    /// A resource type from its parts.
    pub fn new(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        status: bool,
    ) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status,
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The set of served resource types.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Default for Registry {
    /// The types the project's tests need: core nodes and events,
    /// events.k8s.io events, DRA, and the SR-IOV operator's CRDs.
    fn default() -> Self {
        let t = ResourceType::new;
        Self {
            types: vec![
                t("", "v1", "nodes", "Node", false, true),
                t("", "v1", "namespaces", "Namespace", false, true),
                t("", "v1", "pods", "Pod", true, true),
                t("", "v1", "configmaps", "ConfigMap", true, false),
                t("", "v1", "events", "Event", true, false),
                t("events.k8s.io", "v1", "events", "Event", true, false),
                t(
                    "resource.k8s.io",
                    "v1",
                    "resourceslices",
                    "ResourceSlice",
                    false,
                    false,
                ),
                t(
                    "resource.k8s.io",
                    "v1",
                    "resourceclaims",
                    "ResourceClaim",
                    true,
                    true,
                ),
                t(
                    "resource.k8s.io",
                    "v1",
                    "deviceclasses",
                    "DeviceClass",
                    false,
                    false,
                ),
                t(
                    "sriovnetwork.openshift.io",
                    "v1",
                    "sriovnetworknodepolicies",
                    "SriovNetworkNodePolicy",
                    true,
                    true,
                ),
                t(
                    "sriovnetwork.openshift.io",
                    "v1",
                    "sriovnetworknodestates",
                    "SriovNetworkNodeState",
                    true,
                    true,
                ),
            ],
        }
    }
}

impl Registry {
    /// A registry serving nothing.
    pub fn empty() -> Self {
        Self { types: Vec::new() }
    }

    /// Serves `rt` too, replacing a type with the same group, version and
    /// plural.
    pub fn register(&mut self, rt: ResourceType) {
        self.types
            .retain(|t| !(t.group == rt.group && t.version == rt.version && t.plural == rt.plural));
        self.types.push(rt);
    }

    /// Stops serving a type (a CRD deleted); true when it was served.
    pub fn unregister(&mut self, group: &str, version: &str, plural: &str) -> bool {
        let before = self.types.len();
        self.types
            .retain(|t| !(t.group == group && t.version == version && t.plural == plural));
        before != self.types.len()
    }

    /// The type served under a path's group, version and plural.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The type of an object with this `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_by_path_and_by_kind_agree_and_unregister_hides() {
        let mut r = Registry::default();
        let s = r
            .by_plural("resource.k8s.io", "v1", "resourceslices")
            .unwrap();
        assert!(!s.namespaced);
        assert_eq!(r.by_kind("resource.k8s.io/v1", "ResourceSlice"), Some(s));
        assert_eq!(r.by_kind("v1", "Node").unwrap().plural, "nodes");
        assert_eq!(
            r.by_kind("events.k8s.io/v1", "Event").unwrap().group,
            "events.k8s.io"
        );
        assert!(r.unregister(
            "sriovnetwork.openshift.io",
            "v1",
            "sriovnetworknodepolicies"
        ));
        assert!(
            r.by_plural(
                "sriovnetwork.openshift.io",
                "v1",
                "sriovnetworknodepolicies"
            )
            .is_none()
        );
        r.register(ResourceType::new(
            "x.io", "v1", "things", "Thing", true, false,
        ));
        assert!(r.by_kind("x.io/v1", "Thing").is_some());
    }
}
