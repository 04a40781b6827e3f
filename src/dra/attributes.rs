//! What a DRA device says about itself: the attributes a DeviceClass or a
//! claim selects on with CEL (`device.attributes["sriov.fastpath.dev"].pfName`,
//! `device.attributes["resource.kubernetes.io"].pcieRoot`). Pure: a pool
//! device and its PCIe root in, a [`DraDevice`] out.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::{AttrValue, DraDevice, NodeDevices, device_name};
use crate::pci::PciAddress;
use crate::pools::{PoolDevice, Pools};

/// The standard attribute holding the device's PCI address
/// (`resource.kubernetes.io/pciBusID`, extended BDF `dddd:bb:dd.f`).
pub const PCI_BUS_ID: &str = "resource.kubernetes.io/pciBusID";
/// The standard attribute naming the device's PCIe root complex
/// (`resource.kubernetes.io/pcieRoot`, `pci<domain>:<bus>`).
pub const PCIE_ROOT: &str = "resource.kubernetes.io/pcieRoot";
/// The attribute Multus passes to the CNI as `deviceID` for a
/// DRA-allocated device (Multus `pkg/draclient`): the PCI address.
pub const MULTUS_DEVICE_ID: &str = "k8s.cni.cncf.io/deviceID";
/// The attribute Multus matches against a NetworkAttachmentDefinition's
/// `k8s.v1.cni.cncf.io/resourceName` annotation: the `draPools` entry's
/// `<prefix>/<name>`, which also names the device-info file.
pub const MULTUS_RESOURCE_NAME: &str = "k8s.cni.cncf.io/resourceName";
/// The API's longest string attribute value.
const MAX_STRING_VALUE: usize = 64;

/// The attributes of one DRA device of the pool named `resource`
/// (`<prefix>/<name>`). Unknown facts (no NUMA node, no IOMMU group, no
/// PF netdev) are left out rather than given a made-up value, so a CEL
/// selector on them does not match by accident; so is a resource name
/// longer than the API's 64-character string value.
pub fn device(d: &PoolDevice, resource: &str, pcie_root: Option<&str>) -> DraDevice {
    let v = &d.view;
    let s = |x: String| AttrValue::String(x);
    let mut a = BTreeMap::new();
    a.insert("pciAddress".into(), s(v.pci.to_string()));
    a.insert(PCI_BUS_ID.into(), s(v.pci.to_string()));
    a.insert(MULTUS_DEVICE_ID.into(), s(v.pci.to_string()));
    let opt = [
        (
            MULTUS_RESOURCE_NAME,
            Some(resource)
                .filter(|r| r.len() <= MAX_STRING_VALUE)
                .map(|r| s(r.into())),
        ),
        ("pfName", v.pf_netdev.clone().map(s)),
        ("pfPciAddress", v.pf.map(|p| s(p.to_string()))),
        ("vfIndex", v.vf_index.map(|i| AttrValue::Int(i.into()))),
        ("vendor", v.vendor.map(|x| s(x.to_string()))),
        ("deviceID", v.device.map(|x| s(x.to_string()))),
        ("driver", v.driver.clone().map(s)),
        ("numaNode", v.numa_node.map(|n| AttrValue::Int(n.into()))),
        ("linkType", v.link_type.map(|l| s(l.as_str().into()))),
        (
            "iommuGroup",
            v.iommu_group.map(|g| AttrValue::Int(g.into())),
        ),
        (PCIE_ROOT, pcie_root.map(|r| s(r.into()))),
    ];
    for (k, val) in opt {
        if let Some(val) = val {
            a.insert(k.into(), val);
        }
    }
    a.insert("rdma".into(), AttrValue::Bool(!d.rdma.is_empty()));
    DraDevice {
        name: device_name(v.pci),
        attributes: a,
    }
}

/// Everything this node publishes for `driver`: every device of every
/// DRA pool, ordered by device name so the list only changes when a
/// device does.
pub fn node_devices(
    driver: &str,
    node: &str,
    dra: &Pools,
    pcie_roots: &BTreeMap<PciAddress, String>,
) -> NodeDevices {
    let mut devices: Vec<DraDevice> = dra
        .pools
        .iter()
        .flat_map(|p| {
            let resource = p.resource();
            p.devices.iter().map(move |d| {
                device(
                    d,
                    &resource,
                    pcie_roots.get(&d.view.pci).map(String::as_str),
                )
            })
        })
        .collect();
    devices.sort_by(|a, b| a.name.cmp(&b.name));
    NodeDevices {
        driver: driver.into(),
        node: node.into(),
        devices,
    }
}

/// The PCIe root complex in a device's sysfs path (the target of
/// `bus/pci/devices/<addr>`, e.g. `../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0`):
/// the `pci<domain>:<bus>` directory the kernel puts each host bridge in.
pub fn pcie_root(link_target: &Path) -> Option<String> {
    link_target.components().find_map(|c| match c {
        Component::Normal(n) => n.to_str().filter(|n| is_root_dir(n)).map(str::to_string),
        _ => None,
    })
}

fn is_root_dir(n: &str) -> bool {
    let Some(rest) = n.strip_prefix("pci") else {
        return false;
    };
    let b = rest.as_bytes();
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    b.len() == 7 && b[4] == b':' && hex(&b[..4]) && hex(&b[5..])
}

#[cfg(test)]
#[path = "attributes_tests.rs"]
mod tests;
