//! Whether one device matches one selector object: a pure function that
//! says which selector field rejected it, so `fastpath pools` can explain.

use crate::pci::PciAddress;

use super::config::{DeviceType, Selector};
use super::{DeviceFacts, DeviceView};

/// PCI base class of network controllers.
const CLASS_NETWORK: u32 = 0x02;
/// PCI base class of processing accelerators.
const CLASS_ACCELERATOR: u32 = 0x12;

/// `Ok` if `dev` is of `device_type`; else why not.
pub fn type_matches(
    device_type: DeviceType,
    facts: &DeviceFacts,
    pci: PciAddress,
) -> Result<(), String> {
    let want = match device_type {
        DeviceType::NetDevice => CLASS_NETWORK,
        DeviceType::Accelerator => CLASS_ACCELERATOR,
    };
    match facts.class {
        Some(c) if c >> 16 == want => Ok(()),
        Some(c) => Err(format!(
            "class 0x{c:06x} is not a {device_type:?} (base class 0x{want:02x})"
        )),
        None => Err(format!("{pci}: PCI class unknown")),
    }
}

fn ids(list: &[impl std::fmt::Display]) -> String {
    list.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `Ok` if every field present in `sel` matches `dev`; else the first
/// field that did not, with the device's value.
pub fn matches(sel: &Selector, dev: &DeviceView, facts: &DeviceFacts) -> Result<(), String> {
    if !sel.vendors.is_empty() && !dev.vendor.is_some_and(|v| sel.vendors.contains(&v)) {
        return Err(format!(
            "vendor {} not in vendors [{}]",
            opt(dev.vendor),
            ids(&sel.vendors)
        ));
    }
    if !sel.devices.is_empty() && !dev.device.is_some_and(|d| sel.devices.contains(&d)) {
        return Err(format!(
            "device {} not in devices [{}]",
            opt(dev.device),
            ids(&sel.devices)
        ));
    }
    if !sel.drivers.is_empty() && !dev.driver.as_ref().is_some_and(|d| sel.drivers.contains(d)) {
        return Err(format!(
            "driver {} not in drivers [{}]",
            opt(dev.driver.as_ref()),
            sel.drivers.join(",")
        ));
    }
    if !sel.pci_addresses.is_empty() && !sel.pci_addresses.contains(&dev.pci) {
        return Err(format!("{} not in pciAddresses", dev.pci));
    }
    if !sel.acpi_indexes.is_empty()
        && !facts
            .acpi_index
            .as_ref()
            .is_some_and(|a| sel.acpi_indexes.contains(a))
    {
        return Err(format!(
            "acpi_index {} not in acpiIndexes [{}]",
            opt(facts.acpi_index.as_ref()),
            sel.acpi_indexes.join(",")
        ));
    }
    if !sel.pf_names.is_empty() {
        let ok = match (&dev.pf_netdev, dev.vf_index) {
            (Some(pf), Some(i)) => sel.pf_names.iter().any(|s| s.selects(pf, i)),
            // A VF-less PF is matched by its own name, all of it.
            (Some(pf), None) => sel
                .pf_names
                .iter()
                .any(|s| s.names_pf(pf) && s.vfs.is_none()),
            (None, _) => false,
        };
        if !ok {
            return Err(format!(
                "PF {} VF {} not selected by pfNames [{}]",
                opt(dev.pf_netdev.as_ref()),
                opt(dev.vf_index),
                ids(&sel.pf_names)
            ));
        }
    }
    if !sel.root_devices.is_empty() && !dev.pf.is_some_and(|p| sel.root_devices.contains(&p)) {
        return Err(format!("PF {} not in rootDevices", opt(dev.pf)));
    }
    if !sel.link_types.is_empty()
        && !dev
            .link_type
            .is_some_and(|l| sel.link_types.iter().any(|t| t == l.as_str()))
    {
        return Err(format!(
            "link type {} not in linkTypes [{}]",
            opt(dev.link_type.map(|l| l.as_str())),
            sel.link_types.join(",")
        ));
    }
    if sel.is_rdma && facts.rdma.is_empty() {
        return Err("isRdma but the device has no RDMA device".into());
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "(none)".to_string(), |x| x.to_string())
}
