//! Node inventory: one scan of sysfs into plain data (every SR-IOV capable
//! PF and its VFs). Nothing here does I/O after [`scan`] returns; pools,
//! provisioning plans and the CLI all work on the returned value.

mod render;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

pub use render::render_table;

use crate::pci::{PciAddress, PciId, id_names};
use crate::sysfs::{LinkType, NetDev, PciDevice, Sysfs, SysfsError};

/// Every SR-IOV capable PF on the node, in PCI address order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// The PFs.
    pub pfs: Vec<Pf>,
}

/// Vendor and device ids with their pci.ids names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ids {
    /// Vendor id (`8086`).
    pub vendor: PciId,
    /// Device id (`1592`).
    pub device: PciId,
    /// Vendor name from pci.ids.
    pub vendor_name: Option<&'static str>,
    /// Device name from pci.ids.
    pub device_name: Option<&'static str>,
}

impl Ids {
    fn new(vendor: PciId, device: PciId) -> Self {
        let (vendor_name, device_name) = id_names(vendor, device);
        Self {
            vendor,
            device,
            vendor_name,
            device_name,
        }
    }
}

/// A netdev as seen at scan time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Netdev {
    /// Interface name.
    pub name: String,
    /// Hardware address.
    pub mac: Option<String>,
    /// `operstate`.
    pub operstate: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Link type, when Ethernet or InfiniBand.
    pub link_type: Option<LinkType>,
}

/// A physical function with SR-IOV capability.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pf {
    /// PCI address.
    pub pci_address: PciAddress,
    /// Ids; `None` when unreadable.
    pub ids: Option<Ids>,
    /// Bound driver.
    pub driver: Option<String>,
    /// Its (first) netdev.
    pub netdev: Option<Netdev>,
    /// `sriov_numvfs`.
    pub num_vfs: Option<u32>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// NUMA node; `None` for -1 or unknown.
    pub numa_node: Option<u32>,
    /// PCI class code (`class`); `None` when unreadable. Read in the scan
    /// so that pool assignment does not walk every device's path again.
    #[serde(skip)]
    pub class: Option<u32>,
    /// Its VFs in index order.
    pub vfs: Vec<Vf>,
}

/// A virtual function.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Vf {
    /// VF index on its PF (`virtfnN`).
    pub index: u32,
    /// PCI address.
    pub pci_address: PciAddress,
    /// The PF's address.
    pub pf: PciAddress,
    /// Ids; `None` when unreadable.
    pub ids: Option<Ids>,
    /// Bound driver (`iavf`, `vfio-pci`, ...), `None` when unbound.
    pub driver: Option<String>,
    /// Its netdev in the host netns; `None` when bound to vfio-pci/uio or
    /// moved into a pod.
    pub netdev: Option<Netdev>,
    /// Link type: the netdev's, or the PF's when the VF has no netdev.
    pub link_type: Option<LinkType>,
    /// NUMA node.
    pub numa_node: Option<u32>,
    /// IOMMU group; `None` without an IOMMU.
    pub iommu_group: Option<u32>,
    /// PCI class code (the PF's VF 0's, as the kernel gives every VF);
    /// `None` when unreadable.
    #[serde(skip)]
    pub class: Option<u32>,
}

impl Inventory {
    /// The PF with this address.
    pub fn pf(&self, addr: PciAddress) -> Option<&Pf> {
        self.pfs.iter().find(|p| p.pci_address == addr)
    }

    /// The VF with this address and its PF.
    pub fn vf(&self, addr: PciAddress) -> Option<(&Pf, &Vf)> {
        self.pfs
            .iter()
            .find_map(|p| p.vfs.iter().find(|v| v.pci_address == addr).map(|v| (p, v)))
    }

    /// Every VF with its PF.
    pub fn vfs(&self) -> impl Iterator<Item = (&Pf, &Vf)> {
        self.pfs
            .iter()
            .flat_map(|p| p.vfs.iter().map(move |v| (p, v)))
    }
}

/// Logs a read failure and turns it into "unknown".
fn known<T>(what: &str, addr: PciAddress, r: Result<T, SysfsError>) -> Option<T> {
    r.map_err(|e| tracing::warn!(pci = %addr, "{what} unknown: {e}"))
        .ok()
}

fn netdev(addr: PciAddress, nd: &NetDev) -> Netdev {
    Netdev {
        name: nd.name().to_string(),
        mac: known("address", addr, nd.address()).flatten(),
        operstate: known("operstate", addr, nd.operstate()).flatten(),
        mtu: known("mtu", addr, nd.mtu()).flatten(),
        link_type: known("link type", addr, nd.link_type()).flatten(),
    }
}

/// The device's first netdev by name: from the `class/net` index when it
/// names any for this device, else from listing the device's `net/` (which
/// for a VF on vfio-pci is one failed open).
fn first_netdev(index: &NetdevIndex, dev: &PciDevice) -> Option<Netdev> {
    if let Some(name) = index.get(dev.dir()).and_then(|names| names.first()) {
        return dev.netdev(name).map(|nd| netdev(dev.addr(), &nd));
    }
    let nds = known("netdevs", dev.addr(), dev.netdevs())?;
    nds.first().map(|nd| netdev(dev.addr(), nd))
}

/// Netdev names (sorted) by owning device directory, from `class/net`.
type NetdevIndex = HashMap<PathBuf, Vec<String>>;

fn netdev_index(sysfs: &Sysfs) -> NetdevIndex {
    let mut index = NetdevIndex::new();
    match sysfs.class_net_owners() {
        Ok(owners) => {
            for (name, owner) in owners {
                index.entry(owner).or_default().push(name);
            }
        }
        Err(e) => tracing::warn!("listing netdevs per device instead: {e}"),
    }
    index.values_mut().for_each(|v| v.sort_unstable());
    index
}

/// Scans sysfs for SR-IOV PFs and their VFs. Unreadable fields become
/// unknown (`None`) with a warning; a vanished device is skipped; only an
/// unreadable `bus/pci/devices` is an error. Uses two threads when the
/// machine has two CPUs to run them and the tree is large enough
/// ([`PARALLEL_MIN_VFS`]): the scan is system-call bound, and on an idle
/// 2-core machine a second thread nearly halves it; more threads did not
/// help further there (docs/PERFORMANCE.md, "Discovery").
pub fn scan(sysfs: &Sysfs) -> Result<Inventory, SysfsError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    scan_with_threads(sysfs, cpus.min(2))
}

/// Below this many VFs a scan stays on the caller's thread: starting a
/// thread costs about as much as reading a few VFs.
const PARALLEL_MIN_VFS: usize = 64;

/// [`scan`] with the PFs' devices read by up to `threads` threads (each
/// taking whole PFs; 1 keeps everything on the caller's thread; trees of
/// fewer than 64 VFs always stay there). The
/// result does not depend on `threads`; log events go to the caller's
/// `tracing` subscriber from every thread.
pub fn scan_with_threads(sysfs: &Sysfs, threads: usize) -> Result<Inventory, SysfsError> {
    let plans = find_pfs(sysfs)?;
    let index = netdev_index(sysfs);
    let index = &index;
    let total_vfs: usize = plans.iter().map(|p| p.vfs.len()).sum();
    let threads = threads.clamp(1, plans.len().max(1));
    if threads == 1 || total_vfs < PARALLEL_MIN_VFS {
        let mut cache = ScanCache::new(sysfs);
        let pfs = plans
            .iter()
            .map(|p| scan_pf(&mut cache, index, p))
            .collect();
        return Ok(Inventory { pfs });
    }
    let next = AtomicUsize::new(0);
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let mut done: Vec<(usize, Pf)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    tracing::dispatcher::with_default(&dispatch, || {
                        let mut cache = ScanCache::new(sysfs);
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(plan) = plans.get(i) else { break out };
                            out.push((i, scan_pf(&mut cache, index, plan)));
                        }
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(Inventory {
        pfs: done.into_iter().map(|(_, pf)| pf).collect(),
    })
}

/// A PF found by [`find_pfs`], with its VF links read but not its VFs.
struct PfPlan {
    dev: PciDevice,
    total_vfs: u32,
    vfs: Vec<(u32, PciDevice)>,
}

/// Every PF in address order with its `virtfnN` links resolved.
fn find_pfs(sysfs: &Sysfs) -> Result<Vec<PfPlan>, SysfsError> {
    let mut plans = Vec::new();
    // VFs already reached through their PF's virtfn links. A VF's routing
    // id is its PF's plus a non-zero offset, so in address order the PF
    // comes first and its VFs are skipped here without touching sysfs.
    let mut seen_vfs = HashSet::new();
    for addr in sysfs.pci_addresses()? {
        if seen_vfs.contains(&addr) {
            continue;
        }
        let dev = sysfs.pci_device(addr);
        // A function is a PF when it has sriov_totalvfs; a VF never has it.
        let total_vfs = match dev.sriov_totalvfs() {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(pci = %addr, "skipping device: {e}");
                continue;
            }
        };
        let dev = dev.opened();
        let vfs = known("VF list", addr, dev.virtfn_devices()).unwrap_or_default();
        seen_vfs.extend(vfs.iter().map(|(_, vf)| vf.addr()));
        plans.push(PfPlan {
            dev,
            total_vfs,
            vfs,
        });
    }
    Ok(plans)
}

/// What one scan looks up once rather than per device: which driver names
/// are registered under `bus/pci/drivers` (a `driver` link naming a driver
/// that is not there dangles: a malformed tree, or a module unloaded
/// mid-scan, reported unknown), and pci.ids names (a linear search of the
/// vendor's devices).
struct ScanCache<'a> {
    sysfs: &'a Sysfs,
    registered: HashMap<String, bool>,
    names: HashMap<(PciId, PciId), Ids>,
}

impl<'a> ScanCache<'a> {
    fn new(sysfs: &'a Sysfs) -> Self {
        Self {
            sysfs,
            registered: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn ids(
        &mut self,
        addr: PciAddress,
        vendor: PciId,
        device: Result<PciId, SysfsError>,
    ) -> Option<Ids> {
        let device = known("device", addr, device)?;
        Some(
            *self
                .names
                .entry((vendor, device))
                .or_insert_with(|| Ids::new(vendor, device)),
        )
    }

    fn driver(&mut self, dev: &PciDevice) -> Option<String> {
        let name = known("driver", dev.addr(), dev.driver()).flatten()?;
        let sysfs = self.sysfs;
        let registered = *self
            .registered
            .entry(name.clone())
            .or_insert_with(|| sysfs.pci_driver_dir(&name).is_some_and(|d| d.is_dir()));
        if !registered {
            tracing::warn!(pci = %dev.addr(), driver = %name, "driver unknown: its link names no registered driver");
        }
        registered.then_some(name)
    }
}

fn scan_pf(cache: &mut ScanCache, index: &NetdevIndex, plan: &PfPlan) -> Pf {
    let (dev, total_vfs) = (&plan.dev, plan.total_vfs);
    let addr = dev.addr();
    let netdev = first_netdev(index, dev);
    let pf_link = netdev.as_ref().and_then(|n| n.link_type);
    let vendor = known("vendor", addr, dev.vendor());
    // Every VF has the PF's vendor id and the PF's `sriov_vf_device` (the
    // kernel sets them so); reading them once here saves two files per VF.
    // Without `sriov_vf_device` each VF's own files are read.
    let vf_ids = if plan.vfs.is_empty() {
        None
    } else {
        vendor.zip(dev.sriov_vf_device().ok())
    };
    // The kernel reads the class once, from VF 0, and gives it to every VF
    // of the PF (pci_read_vf_config_common): one read here does the same.
    // (The first VF that answers, should VF 0 vanish mid-scan.)
    let vf_class = plan.vfs.iter().find_map(|(_, vf)| vf.class().ok());
    if vf_class.is_none() && !plan.vfs.is_empty() {
        tracing::warn!(pci = %addr, "class of its VFs unknown: no VF's class could be read");
    }
    let shared = PfShared {
        pf: addr,
        link: pf_link,
        vf_ids,
        vf_class,
    };
    let vfs = plan
        .vfs
        .iter()
        .filter_map(|(i, vf)| scan_vf(cache, index, vf, *i, &shared))
        .collect();
    Pf {
        pci_address: addr,
        ids: vendor.and_then(|v| cache.ids(addr, v, dev.device_id())),
        driver: cache.driver(dev),
        netdev,
        num_vfs: known("sriov_numvfs", addr, dev.sriov_numvfs()),
        total_vfs,
        numa_node: known("numa_node", addr, dev.numa_node()).flatten(),
        class: known("class", addr, dev.class()),
        vfs,
    }
}

/// What every VF of one PF shares, read once per PF.
struct PfShared {
    /// The PF's address.
    pf: PciAddress,
    /// The PF's link type, for VFs without a netdev.
    link: Option<LinkType>,
    /// The ids the PF gives all its VFs, when it says (`sriov_vf_device`).
    vf_ids: Option<(PciId, PciId)>,
    /// The VFs' class (VF 0's).
    vf_class: Option<u32>,
}

/// One VF, or `None` when its directory is gone (VFs destroyed mid-scan, or
/// a dangling `virtfnN` link).
fn scan_vf(
    cache: &mut ScanCache,
    netdevs: &NetdevIndex,
    dev: &PciDevice,
    index: u32,
    shared: &PfShared,
) -> Option<Vf> {
    let (pf, pf_link, pf_vf_ids) = (shared.pf, shared.link, shared.vf_ids);
    let addr = dev.addr();
    // A vanished VF's numa_node reads as absent (`Ok(None)`) or fails;
    // only then is existence checked, so a healthy VF costs no extra call.
    let numa_node = dev.numa_node();
    if !matches!(numa_node, Ok(Some(_))) && !dev.exists() {
        tracing::warn!(pci = %addr, %pf, index, "skipping VF: its directory vanished during the scan");
        return None;
    }
    let ids = match pf_vf_ids {
        Some((vendor, device)) => cache.ids(addr, vendor, Ok(device)),
        None => {
            known("vendor", addr, dev.vendor()).and_then(|v| cache.ids(addr, v, dev.device_id()))
        }
    };
    let netdev = first_netdev(netdevs, dev);
    Some(Vf {
        index,
        pci_address: addr,
        pf,
        ids,
        driver: cache.driver(dev),
        link_type: netdev.as_ref().and_then(|n| n.link_type).or(pf_link),
        netdev,
        numa_node: known("numa_node", addr, numa_node).flatten(),
        iommu_group: known("iommu_group", addr, dev.iommu_group()).flatten(),
        class: shared.vf_class,
    })
}
