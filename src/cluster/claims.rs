//! Reading ResourceClaims (`resource.k8s.io/v1`) for NodePrepareResources:
//! [`ApiClaims`] is the agent's [`ClaimSource`]; [`allocation_of`] is the
//! plain part that picks this driver's devices on this node.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::api::Api;

use super::describe;
use crate::dra::{
    AllocatedDevice, ClaimAllocation, ClaimRef, ClaimSource, ClaimSourceError, ConfigSource,
    OpaqueConfig,
};

/// Reads claims from the API server.
#[derive(Clone)]
pub struct ApiClaims {
    client: kube::Client,
}

impl ApiClaims {
    /// A claim source over `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    async fn read(
        &self,
        claim: &ClaimRef,
        driver: &str,
        node: &str,
    ) -> Result<Option<ClaimAllocation>, ClaimSourceError> {
        let api: Api<ResourceClaim> = Api::namespaced(self.client.clone(), &claim.namespace);
        let found = api
            .get_opt(&claim.name)
            .await
            .map_err(|e| ClaimSourceError::Api {
                claim: claim.to_string(),
                reason: describe(
                    &e,
                    &format!(
                        "get resourceclaims/{} in namespace {}",
                        claim.name, claim.namespace
                    ),
                ),
            })?;
        match found {
            None => Ok(None),
            Some(rc) => allocation_of(&rc, claim, driver, node).map(Some),
        }
    }
}

impl ClaimSource for ApiClaims {
    fn get<'a>(
        &'a self,
        claim: &'a ClaimRef,
        driver: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Option<ClaimAllocation>, ClaimSourceError>> {
        self.read(claim, driver, node).boxed()
    }
}

/// The part of `rc` that concerns `driver` on `node`: its devices in this
/// node's pool and the opaque configs addressed to the driver. The claim
/// must be the one kubelet named (same UID) and be allocated.
pub fn allocation_of(
    rc: &ResourceClaim,
    claim: &ClaimRef,
    driver: &str,
    node: &str,
) -> Result<ClaimAllocation, ClaimSourceError> {
    let found = rc.metadata.uid.as_deref().unwrap_or("");
    if found != claim.uid {
        return Err(ClaimSourceError::UidMismatch {
            namespace: claim.namespace.clone(),
            name: claim.name.clone(),
            wanted: claim.uid.clone(),
            found: found.to_string(),
        });
    }
    let Some(devs) = rc
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .and_then(|a| a.devices.as_ref())
    else {
        return Err(ClaimSourceError::NotAllocated {
            claim: claim.to_string(),
        });
    };
    let devices = devs
        .results
        .iter()
        .flatten()
        .filter(|r| r.driver == driver && r.pool == node)
        .map(|r| AllocatedDevice {
            request: r.request.clone(),
            pool: r.pool.clone(),
            device: r.device.clone(),
        })
        .collect();
    let mut config = Vec::new();
    for c in devs.config.iter().flatten() {
        let Some(opaque) = c.opaque.as_ref().filter(|o| o.driver == driver) else {
            continue;
        };
        let source = match c.source.as_str() {
            "FromClass" => ConfigSource::Class,
            "FromClaim" => ConfigSource::Claim,
            other => {
                return Err(ClaimSourceError::Api {
                    claim: claim.to_string(),
                    reason: format!(
                        "status.allocation.devices.config[].source {other:?} is neither FromClass nor FromClaim"
                    ),
                });
            }
        };
        config.push(OpaqueConfig {
            requests: c.requests.clone().unwrap_or_default(),
            source,
            parameters: opaque.parameters.0.clone(),
        });
    }
    Ok(ClaimAllocation {
        claim: claim.clone(),
        devices,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim_ref(uid: &str) -> ClaimRef {
        ClaimRef {
            namespace: "ns".into(),
            name: "c".into(),
            uid: uid.into(),
        }
    }

    fn rc(status: serde_json::Value) -> ResourceClaim {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
            "spec": {}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn picks_this_driver_on_this_node_and_its_configs_in_order() {
        let rc = rc(json!({"allocation": {"devices": {
            "results": [
                {"request": "vf", "driver": "d", "pool": "n1", "device": "pci-0000-3b-02-1"},
                {"request": "vf", "driver": "d", "pool": "n2", "device": "pci-0000-3b-02-2"},
                {"request": "gpu", "driver": "other", "pool": "n1", "device": "g0"},
                {"request": "r/sub", "driver": "d", "pool": "n1", "device": "pci-0000-3b-02-3"}
            ],
            "config": [
                {"source": "FromClass", "opaque": {"driver": "d", "parameters": {"driver": "vfio-pci"}}},
                {"source": "FromClaim", "requests": ["vf"], "opaque": {"driver": "d", "parameters": {"vlan": 10}}},
                {"source": "FromClaim", "opaque": {"driver": "other", "parameters": {}}}
            ]
        }}}));
        let a = allocation_of(&rc, &claim_ref("u1"), "d", "n1").unwrap();
        let names: Vec<(&str, &str)> = a
            .devices
            .iter()
            .map(|d| (d.request.as_str(), d.device.as_str()))
            .collect();
        assert_eq!(
            names,
            [("vf", "pci-0000-3b-02-1"), ("r/sub", "pci-0000-3b-02-3")]
        );
        assert_eq!(a.config.len(), 2);
        assert_eq!(
            (a.config[0].source, a.config[0].requests.len()),
            (ConfigSource::Class, 0)
        );
        assert_eq!(a.config[1].source, ConfigSource::Claim);
        assert_eq!(a.config[1].requests, ["vf"]);
        assert_eq!(a.config[1].parameters, json!({"vlan": 10}));
    }

    #[test]
    fn refusals_name_the_claim() {
        let allocated = rc(json!({"allocation": {"devices": {"results": []}}}));
        let e = allocation_of(&allocated, &claim_ref("u0"), "d", "n1").unwrap_err();
        assert_eq!(
            e,
            ClaimSourceError::UidMismatch {
                namespace: "ns".into(),
                name: "c".into(),
                wanted: "u0".into(),
                found: "u1".into()
            }
        );
        let e = allocation_of(&rc(json!({})), &claim_ref("u1"), "d", "n1").unwrap_err();
        assert!(matches!(e, ClaimSourceError::NotAllocated { .. }), "{e}");
        let bad = rc(
            json!({"allocation": {"devices": {"config": [{"source": "FromNowhere", "opaque": {"driver": "d", "parameters": {}}}]}}}),
        );
        let e = allocation_of(&bad, &claim_ref("u1"), "d", "n1").unwrap_err();
        assert!(e.to_string().contains("FromNowhere"), "{e}");
        // Allocated, but nothing for this driver here: an empty allocation.
        let a = allocation_of(&allocated, &claim_ref("u1"), "d", "n1").unwrap();
        assert!(a.devices.is_empty() && a.config.is_empty());
    }
}
