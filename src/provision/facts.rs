//! Host facts the plan needs besides the inventory: which interfaces carry
//! the default route or the node's primary address, which PCI drivers are
//! registered, whether an IOMMU is on, and the VFs' current admin MACs.
//! [`HostFacts`] is plain data; [`gather`] is the one place that reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::vf_mac;
use crate::inventory::Inventory;
use crate::pci::PciAddress;
use crate::procfs::{Procfs, ProcfsError};
use crate::sysfs::{Sysfs, SysfsError};

/// Facts about the host, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Interfaces with an IPv4 or IPv6 default route.
    pub default_route_interfaces: BTreeSet<String>,
    /// Interfaces holding the node's primary address.
    pub primary_address_interfaces: BTreeSet<String>,
    /// Drivers registered under `bus/pci/drivers`.
    pub pci_drivers: BTreeSet<String>,
    /// True when the kernel has IOMMU groups (an IOMMU is enabled).
    pub iommu_present: bool,
    /// Netdevs that are not SR-IOV PFs, with their PCI function if any.
    pub other_interfaces: BTreeMap<String, Option<PciAddress>>,
    /// PCI functions that are not SR-IOV PFs.
    pub other_pci: BTreeSet<PciAddress>,
    /// Admin MAC of each VF as the PF reports it, by (PF, VF index).
    pub vf_admin_macs: BTreeMap<(PciAddress, u32), [u8; 6]>,
}

impl HostFacts {
    /// Describes `name` when it is a netdev that is not an SR-IOV PF.
    pub fn non_sriov_interface(&self, name: &str) -> Option<String> {
        let (n, addr) = self
            .other_interfaces
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(match addr {
            Some(a) => format!("{n} ({a})"),
            None => format!("{n} (not a PCI device)"),
        })
    }
}

/// Gathering host facts failed.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// sysfs could not be read.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// procfs could not be read.
    #[error(transparent)]
    Procfs(#[from] ProcfsError),
    /// Interface addresses could not be listed.
    #[error("listing interface addresses: {0}")]
    Addresses(nix::Error),
}

/// Reads the host facts. `node_ip` is the node's primary address (the
/// kubelet's node IP); interfaces carrying it must not be reconfigured.
/// VF admin MACs are read (netlink) only when `admin_macs` is set.
pub fn gather(
    sysfs: &Sysfs,
    procfs: &Procfs,
    inv: &Inventory,
    node_ip: Option<IpAddr>,
    admin_macs: bool,
) -> Result<HostFacts, FactsError> {
    let pf_netdevs: BTreeSet<&str> = inv
        .pfs
        .iter()
        .filter_map(|p| p.netdev.as_ref().map(|n| n.name.as_str()))
        .collect();
    let vf_addrs: BTreeSet<PciAddress> = inv.vfs().map(|(_, v)| v.pci_address).collect();
    let mut other_interfaces = BTreeMap::new();
    for name in sysfs.class_net_names()? {
        if !pf_netdevs.contains(name.as_str()) {
            let dev = sysfs.class_net_device(&name).ok().flatten();
            other_interfaces.insert(name, dev);
        }
    }
    let other_pci = sysfs
        .pci_addresses()?
        .into_iter()
        .filter(|a| inv.pf(*a).is_none() && !vf_addrs.contains(a))
        .collect();
    let mut vf_admin_macs = BTreeMap::new();
    for pf in inv.pfs.iter().filter(|_| admin_macs) {
        let Some(nd) = pf.netdev.as_ref().filter(|_| !pf.vfs.is_empty()) else {
            continue;
        };
        match vf_mac::admin_macs(&nd.name) {
            Ok(macs) => {
                for (index, mac) in macs {
                    vf_admin_macs.insert((pf.pci_address, index), mac);
                }
            }
            // Unknown MACs only make the plan pin again; not fatal.
            Err(e) => tracing::warn!(pf = %pf.pci_address, "VF admin MACs unknown: {e}"),
        }
    }
    Ok(HostFacts {
        default_route_interfaces: procfs.default_route_interfaces()?,
        primary_address_interfaces: match node_ip {
            Some(ip) => interfaces_with(ip)?,
            None => BTreeSet::new(),
        },
        pci_drivers: sysfs.pci_driver_names()?,
        iommu_present: sysfs.iommu_groups_present(),
        other_interfaces,
        other_pci,
        vf_admin_macs,
    })
}

/// Interfaces that hold `ip` in this network namespace.
fn interfaces_with(ip: IpAddr) -> Result<BTreeSet<String>, FactsError> {
    let mut out = BTreeSet::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(FactsError::Addresses)? {
        let Some(addr) = ifa.address else { continue };
        let found = match ip {
            IpAddr::V4(v4) => addr.as_sockaddr_in().map(|s| s.ip()) == Some(v4),
            IpAddr::V6(v6) => addr.as_sockaddr_in6().map(|s| s.ip()) == Some(v6),
        };
        if found {
            out.insert(ifa.interface_name);
        }
    }
    Ok(out)
}
