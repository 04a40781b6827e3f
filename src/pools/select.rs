//! Whether one device matches one selector object: a pure function that
//! says which selector field rejected it, so `fastpath pools` can explain.

use crate::pci::PciAddress;

use super::config::{DeviceType, Selector};
use super::{DeviceFacts, DeviceView};

/// PCI base class of network controllers.
const CLASS_NETWORK: u32 = 0x02;
/// PCI base class of processing accelerators.
const CLASS_ACCELERATOR: u32 = 0x12;

/// The PCI base class a pool of `device_type` takes.
fn base_class(device_type: DeviceType) -> u32 {
    match device_type {
        DeviceType::NetDevice => CLASS_NETWORK,
        DeviceType::Accelerator => CLASS_ACCELERATOR,
    }
}

/// Whether `dev` is of `device_type` ([`type_mismatch`] says why not).
pub fn is_type(device_type: DeviceType, facts: &DeviceFacts) -> bool {
    facts
        .class
        .is_some_and(|c| c >> 16 == base_class(device_type))
}

/// Why `dev` is not of `device_type`.
pub fn type_mismatch(device_type: DeviceType, facts: &DeviceFacts, pci: PciAddress) -> String {
    let want = base_class(device_type);
    match facts.class {
        Some(c) => format!("class 0x{c:06x} is not a {device_type:?} (base class 0x{want:02x})"),
        None => format!("{pci}: PCI class unknown"),
    }
}

fn ids(list: &[impl std::fmt::Display]) -> String {
    list.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The selector field that rejected a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// `vendors`
    Vendors,
    /// `devices`
    Devices,
    /// `drivers`
    Drivers,
    /// `pciAddresses`
    PciAddresses,
    /// `acpiIndexes`
    AcpiIndexes,
    /// `pfNames`
    PfNames,
    /// `rootDevices`
    RootDevices,
    /// `linkTypes`
    LinkTypes,
    /// `isRdma`
    IsRdma,
}

/// The first field present in `sel` that `dev` does not match, or `None`
/// when all match. Allocates nothing: the agent runs it for every device
/// and pool on each rescan; [`explain`] words a mismatch when asked.
pub fn first_mismatch(sel: &Selector, dev: &DeviceView, facts: &DeviceFacts) -> Option<Mismatch> {
    if !sel.vendors.is_empty() && !dev.vendor.is_some_and(|v| sel.vendors.contains(&v)) {
        return Some(Mismatch::Vendors);
    }
    if !sel.devices.is_empty() && !dev.device.is_some_and(|d| sel.devices.contains(&d)) {
        return Some(Mismatch::Devices);
    }
    if !sel.drivers.is_empty() && !dev.driver.as_ref().is_some_and(|d| sel.drivers.contains(d)) {
        return Some(Mismatch::Drivers);
    }
    if !sel.pci_addresses.is_empty() && !sel.pci_addresses.contains(&dev.pci) {
        return Some(Mismatch::PciAddresses);
    }
    if !sel.acpi_indexes.is_empty()
        && !facts
            .acpi_index
            .as_ref()
            .is_some_and(|a| sel.acpi_indexes.contains(a))
    {
        return Some(Mismatch::AcpiIndexes);
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
            return Some(Mismatch::PfNames);
        }
    }
    if !sel.root_devices.is_empty() && !dev.pf.is_some_and(|p| sel.root_devices.contains(&p)) {
        return Some(Mismatch::RootDevices);
    }
    if !sel.link_types.is_empty()
        && !dev
            .link_type
            .is_some_and(|l| sel.link_types.iter().any(|t| t == l.as_str()))
    {
        return Some(Mismatch::LinkTypes);
    }
    if sel.is_rdma && facts.rdma.is_empty() {
        return Some(Mismatch::IsRdma);
    }
    None
}

/// Why `dev` fails `sel` at `field`, with the device's value.
pub fn explain(field: Mismatch, sel: &Selector, dev: &DeviceView, facts: &DeviceFacts) -> String {
    match field {
        Mismatch::Vendors => format!(
            "vendor {} not in vendors [{}]",
            opt(dev.vendor),
            ids(&sel.vendors)
        ),
        Mismatch::Devices => format!(
            "device {} not in devices [{}]",
            opt(dev.device),
            ids(&sel.devices)
        ),
        Mismatch::Drivers => format!(
            "driver {} not in drivers [{}]",
            opt(dev.driver.as_ref()),
            sel.drivers.join(",")
        ),
        Mismatch::PciAddresses => format!("{} not in pciAddresses", dev.pci),
        Mismatch::AcpiIndexes => format!(
            "acpi_index {} not in acpiIndexes [{}]",
            opt(facts.acpi_index.as_ref()),
            sel.acpi_indexes.join(",")
        ),
        Mismatch::PfNames => format!(
            "PF {} VF {} not selected by pfNames [{}]",
            opt(dev.pf_netdev.as_ref()),
            opt(dev.vf_index),
            ids(&sel.pf_names)
        ),
        Mismatch::RootDevices => format!("PF {} not in rootDevices", opt(dev.pf)),
        Mismatch::LinkTypes => format!(
            "link type {} not in linkTypes [{}]",
            opt(dev.link_type.map(|l| l.as_str())),
            sel.link_types.join(",")
        ),
        Mismatch::IsRdma => "isRdma but the device has no RDMA device".into(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "(none)".to_string(), |x| x.to_string())
}
