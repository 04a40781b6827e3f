//! kubelet's gRPC APIs that fastpath speaks, generated at build time from
//! the .proto files in `proto/` (no protoc needed):
//! - [`v1beta1`]: the device-plugin API (`DevicePlugin`, `Registration`);
//! - [`pluginregistration`]: the plugin-watcher `Registration` service;
//! - [`podresources`]: the PodResources v1 `PodResourcesLister`.

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
}
