//! Host facts pools depend on beyond the inventory, read once per scan:
//! PCI class, `acpi_index`, RDMA devices, default-route interfaces and the
//! VFIO no-IOMMU switch. Thin I/O; [`super::assign`] stays pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::Config;
use crate::inventory::Inventory;
use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

/// Per-device facts not in [`Inventory`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// PCI class code (`0x020000`).
    pub class: Option<u32>,
    /// Firmware `acpi_index`.
    pub acpi_index: Option<String>,
    /// RDMA device names under the device's `infiniband/` directory.
    pub rdma: Vec<String>,
    /// RDMA char devices (`uverbs3`, `umad3`, `issm3`) under the device's
    /// `infiniband_verbs/` and `infiniband_mad/` directories.
    pub rdma_chars: Vec<String>,
}

/// Which optional facts a config looks at. The others are not read: on a
/// node with 1,024 VFs each is a few thousand path walks per rescan, more
/// than the whole inventory scan costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactNeeds {
    /// RDMA devices and char devices (`isRdma` selectors and Allocate).
    pub rdma: bool,
    /// `acpi_index` (`acpiIndexes` selectors).
    pub acpi_index: bool,
}

impl FactNeeds {
    /// Every optional fact.
    pub const ALL: Self = Self {
        rdma: true,
        acpi_index: true,
    };

    /// The facts `cfg`'s selectors use.
    pub fn of(cfg: &Config) -> Self {
        let sels = || {
            cfg.resource_list
                .iter()
                .chain(&cfg.dra_pools)
                .flat_map(|r| &r.selectors)
        };
        Self {
            // DRA devices carry an `rdma` attribute whatever their selectors.
            rdma: sels().any(|s| s.is_rdma) || !cfg.dra_pools.is_empty(),
            acpi_index: sels().any(|s| !s.acpi_indexes.is_empty()),
        }
    }
}

/// Everything besides the inventory that [`super::assign`] looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Interfaces carrying an IPv4 or IPv6 default route.
    pub default_route_interfaces: BTreeSet<String>,
    /// Facts by device address.
    pub devices: BTreeMap<PciAddress, DeviceFacts>,
    /// VFIO runs in no-IOMMU mode (`/dev/vfio/noiommu-<group>`).
    pub vfio_noiommu: bool,
}

impl HostFacts {
    /// Reads the facts for every PF and VF in `inv`. Unreadable facts are
    /// unknown (and logged), never an error: one odd device must not stop
    /// the others from being offered.
    pub fn gather(sysfs: &Sysfs, procfs: &Procfs, inv: &Inventory, needs: FactNeeds) -> Self {
        let default_route_interfaces = procfs.default_route_interfaces().unwrap_or_else(|e| {
            tracing::warn!("default routes unknown: {e}");
            BTreeSet::new()
        });
        let devices = inv
            .pfs
            .iter()
            .map(|p| (p.pci_address, p.class))
            .chain(inv.vfs().map(|(_, v)| (v.pci_address, v.class)))
            .map(|(a, class)| (a, device_facts(sysfs, a, class, needs)))
            .collect();
        Self {
            default_route_interfaces,
            devices,
            vfio_noiommu: sysfs.vfio_noiommu(),
        }
    }
}

/// The facts of one device; `class` comes from the scan, the rest is read
/// only when the config's selectors need it.
fn device_facts(
    sysfs: &Sysfs,
    addr: PciAddress,
    class: Option<u32>,
    needs: FactNeeds,
) -> DeviceFacts {
    if !needs.acpi_index && !needs.rdma {
        // Resolving the device's directory is a readlink: skip it.
        return DeviceFacts {
            class,
            ..DeviceFacts::default()
        };
    }
    let dev = sysfs.pci_device(addr);
    let acpi_index = needs
        .acpi_index
        .then(|| fs::read_to_string(dev.dir().join("acpi_index")).ok())
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let (mut rdma, mut rdma_chars) = (Vec::new(), Vec::new());
    if needs.rdma {
        rdma = safe_names(&dev.dir().join("infiniband"));
        rdma_chars = safe_names(&dev.dir().join("infiniband_verbs"));
        rdma_chars.extend(safe_names(&dev.dir().join("infiniband_mad")));
        rdma_chars.sort();
    }
    DeviceFacts {
        class,
        acpi_index,
        rdma,
        rdma_chars,
    }
}

/// Sorted entry names of `dir` made only of safe characters: they become
/// paths under /dev/infiniband.
fn safe_names(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
