//! kubelet's gRPC APIs that fastpath speaks, generated at build time from
//! the .proto files in `proto/` (no protoc needed):
//! - [`v1beta1`]: the device-plugin API (`DevicePlugin`, `Registration`);
//! - [`pluginregistration`]: the plugin-watcher `Registration` service;
//! - [`podresources`]: the PodResources v1 `PodResourcesLister`;
//! - [`dra_v1`], [`dra_v1beta1`]: the DRA kubelet plugin `DRAPlugin`.

#![allow(clippy::all, missing_docs)]

mod unix;

pub use unix::connect_unix;

/// Device plugin API v1beta1 (proto package `v1beta1`).
pub mod v1beta1 {
    tonic::include_proto!("v1beta1");
}

/// Plugin-watcher registration (proto package `pluginregistration`).
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// PodResources API v1 (proto package `v1`).
pub mod podresources {
    tonic::include_proto!("v1");
}

/// DRA kubelet plugin API v1 (proto package `k8s.io.kubelet.pkg.apis.dra.v1`,
/// which is in every method path, so it cannot be shortened).
pub mod dra_v1 {
    tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
}

/// DRA kubelet plugin API v1beta1 (same messages and numbers as v1).
pub mod dra_v1beta1 {
    tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1beta1");
}

/// `PluginInfo.type` of a DRA driver's registration.
pub const DRA_PLUGIN_TYPE: &str = "DRAPlugin";
/// `PluginInfo.supported_versions` of a DRA driver: the gRPC services it
/// serves, as kubelet (1.33+) names them, newest first.
pub const DRA_VERSIONS: [&str; 2] = ["v1.DRAPlugin", "v1beta1.DRAPlugin"];

/// The device-plugin API version string sent in `RegisterRequest.version`
/// and in the plugin-watcher `supported_versions`.
pub const VERSION: &str = "v1beta1";
/// `Device.health` of a usable device.
pub const HEALTHY: &str = "Healthy";
/// `Device.health` of a device kubelet must not hand out.
pub const UNHEALTHY: &str = "Unhealthy";
/// kubelet's registration socket name inside the device-plugin directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// `PluginInfo.type` for a device plugin in plugin-watcher mode.
pub const DEVICE_PLUGIN_TYPE: &str = "DevicePlugin";

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Field numbers are the wire contract with kubelet: check the ones a
    /// transcription slip would most likely get wrong.
    #[test]
    fn wire_tags_match_kubelet() {
        let req = v1beta1::ContainerPreferredAllocationRequest {
            available_device_i_ds: vec!["a".into()],
            must_include_device_i_ds: vec!["b".into()],
            allocation_size: 3,
        };
        assert_eq!(req.encode_to_vec(), [0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 3]);
        let resp = v1beta1::ContainerAllocateResponse {
            cdi_devices: vec![v1beta1::CdiDevice { name: "x".into() }],
            ..Default::default()
        };
        assert_eq!(resp.encode_to_vec(), [0x2a, 3, 0x0a, 1, b'x']);
        let dev = v1beta1::Device {
            id: "d".into(),
            health: HEALTHY.into(),
            topology: Some(v1beta1::TopologyInfo {
                nodes: vec![v1beta1::NumaNode { id: 1 }],
            }),
        };
        let bytes = dev.encode_to_vec();
        assert_eq!(&bytes[..3], [0x0a, 1, b'd']);
        assert_eq!(bytes[3], 0x12);
        let dr = podresources::DynamicResource {
            claim_name: "c".into(),
            ..Default::default()
        };
        assert_eq!(dr.encode_to_vec(), [0x12, 1, b'c']);
        let info = pluginregistration::PluginInfo {
            supported_versions: vec![VERSION.into()],
            ..Default::default()
        };
        assert_eq!(info.encode_to_vec()[0], 0x22);
    }

    /// The DRA messages against bytes written out by hand from kubelet's
    /// api.proto field numbers, for both versions.
    #[test]
    fn dra_wire_tags_match_kubelet() {
        let claim = dra_v1::Claim {
            namespace: "n".into(),
            uid: "u".into(),
            name: "c".into(),
        };
        let claim_bytes = [0x0a, 1, b'n', 0x12, 1, b'u', 0x1a, 1, b'c'];
        assert_eq!(claim.encode_to_vec(), claim_bytes);
        let dev = dra_v1::Device {
            request_names: vec!["r".into()],
            pool_name: "p".into(),
            device_name: "d".into(),
            cdi_device_ids: vec!["x".into()],
        };
        let dev_bytes = [0x0a, 1, b'r', 0x12, 1, b'p', 0x1a, 1, b'd', 0x22, 1, b'x'];
        assert_eq!(dev.encode_to_vec(), dev_bytes);
        let prep = dra_v1::NodePrepareResourceResponse {
            devices: vec![],
            error: "e".into(),
        };
        assert_eq!(prep.encode_to_vec(), [0x12, 1, b'e']);
        let unprep = dra_v1::NodeUnprepareResourceResponse { error: "e".into() };
        assert_eq!(unprep.encode_to_vec(), [0x0a, 1, b'e']);
        // map<string, V> claims = 1: an entry is field 1, key 1, value 2.
        let resp = dra_v1::NodeUnprepareResourcesResponse {
            claims: [("k".to_string(), unprep)].into(),
        };
        assert_eq!(
            resp.encode_to_vec(),
            [0x0a, 8, 0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'e']
        );
        let b = dra_v1beta1::Claim::decode(&claim_bytes[..]).unwrap();
        assert_eq!((&*b.namespace, &*b.uid, &*b.name), ("n", "u", "c"));
        let d = dra_v1beta1::Device::decode(&dev_bytes[..]).unwrap();
        assert_eq!(d.encode_to_vec(), dev_bytes);
        let req = dra_v1beta1::NodePrepareResourcesRequest { claims: vec![b] };
        assert_eq!(req.encode_to_vec()[..2], [0x0a, 9]);
    }
}
