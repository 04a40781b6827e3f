//! Released Multus's DRA lookup (v4.2.2 to v4.3.0), done again from what
//! its source was read to do (pkg/kubeletclient/kubeletclient.go,
//! `GetPodResourceMap` and `getDRAResources`; pkg/k8sclient/k8sclient.go,
//! `getKubernetesDelegate`): from kubelet's PodResources `List`, the pod's
//! containers' `dynamic_resources`, each `claim_resources[].cdi_devices[].name`
//! split on `=` and kept only when that gives exactly two parts, the
//! second part as a device ID, under the key `claim_name`; device-plugin
//! devices under their resource name; v4.3.0 then sorts each list. A
//! NetworkAttachmentDefinition's `k8s.v1.cni.cncf.io/resourceName` is
//! looked up in that map and the next ID becomes the delegate's deviceID.

#![allow(dead_code)]

use std::collections::BTreeMap;

use device_plugin::podresources as api;

/// The resource map Multus builds for pod `namespace/name`.
pub fn resource_map(
    list: &[api::PodResources],
    namespace: &str,
    name: &str,
) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in list
        .iter()
        .filter(|p| p.name == name && p.namespace == namespace)
    {
        for c in &p.containers {
            for d in &c.devices {
                map.entry(d.resource_name.clone())
                    .or_default()
                    .extend(d.device_ids.iter().cloned());
            }
            for dr in &c.dynamic_resources {
                let ids = dr
                    .claim_resources
                    .iter()
                    .flat_map(|r| &r.cdi_devices)
                    .filter_map(|cdi| match cdi.name.split('=').collect::<Vec<_>>()[..] {
                        [_, id] => Some(id.to_string()),
                        _ => None,
                    });
                map.entry(dr.claim_name.clone()).or_default().extend(ids);
            }
        }
    }
    for ids in map.values_mut() {
        ids.sort();
    }
    map
}

/// The deviceID Multus hands the delegate of the `nth` network (0-based)
/// whose NAD's resourceName annotation is `resource_name`.
pub fn device_id(
    map: &BTreeMap<String, Vec<String>>,
    resource_name: &str,
    nth: usize,
) -> Option<String> {
    map.get(resource_name)?.get(nth).cloned()
}

/// What kubelet reports in PodResources for a claim the container uses:
/// one `ClaimResource` per device of the NodePrepareResources answer,
/// with that device's CDI device IDs.
pub fn dynamic_resource(
    namespace: &str,
    claim: &str,
    driver: &str,
    devices: &[(String, String, Vec<String>)],
) -> api::DynamicResource {
    api::DynamicResource {
        claim_name: claim.into(),
        claim_namespace: namespace.into(),
        claim_resources: devices
            .iter()
            .map(|(pool, device, ids)| api::ClaimResource {
                cdi_devices: ids
                    .iter()
                    .map(|n| api::CdiDevice { name: n.clone() })
                    .collect(),
                driver_name: driver.into(),
                pool_name: pool.clone(),
                device_name: device.clone(),
            })
            .collect(),
    }
}
