//! One PCI function's sysfs directory: ids, driver, NUMA node, IOMMU group
//! and the SR-IOV attributes and links.

use std::path::{Path, PathBuf};

use super::at::AttrDir;
use super::{NetDev, Result, SysfsError, lexical_join, write_attr};
use crate::pci::{PciAddress, PciId};

/// A handle on `devices/.../<addr>`; reading through it never panics.
#[derive(Debug, Clone)]
pub struct PciDevice {
    addr: PciAddress,
    dir: AttrDir,
}

impl PciDevice {
    pub(super) fn new(addr: PciAddress, dir: PathBuf) -> Self {
        Self {
            addr,
            dir: AttrDir::new(dir),
        }
    }

    /// The same handle with its directory held open, so that each read
    /// walks one path component instead of the whole path from the root.
    /// VF and netdev handles made from an opened handle are opened too.
    /// Holds a file descriptor until the last clone is dropped: for scans,
    /// not for handles kept for long.
    pub fn opened(self) -> Self {
        Self {
            dir: self.dir.opened(),
            ..self
        }
    }

    /// The function's address.
    pub fn addr(&self) -> PciAddress {
        self.addr
    }

    /// Its resolved directory under `devices/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn attr(&self, name: &'static str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// True when the device directory exists (the function is present;
    /// checked by path, so a directory removed after it was opened is gone).
    pub fn exists(&self) -> bool {
        self.dir.path().is_dir()
    }

    /// `vendor` id.
    pub fn vendor(&self) -> Result<PciId> {
        self.dir.read_parsed("vendor", PciId::parse)
    }

    /// `device` id.
    pub fn device_id(&self) -> Result<PciId> {
        self.dir.read_parsed("device", PciId::parse)
    }

    /// `sriov_vf_device` of a PF: the device id every one of its VFs has
    /// (the kernel gives each VF this id and the PF's vendor id).
    pub fn sriov_vf_device(&self) -> Result<PciId> {
        self.dir.read_parsed("sriov_vf_device", PciId::parse)
    }

    /// `class` code (24 bits).
    pub fn class(&self) -> Result<u32> {
        self.dir.read_parsed("class", |s| {
            u32::from_str_radix(s.strip_prefix("0x")?, 16).ok()
        })
    }

    /// The bound driver's name; `None` when unbound.
    pub fn driver(&self) -> Result<Option<String>> {
        optional(self.dir.link_basename("driver"))
    }

    /// `driver_override` (`None` when it reads `(null)` or is empty).
    pub fn driver_override(&self) -> Result<Option<String>> {
        let s = optional(self.dir.read("driver_override"))?;
        Ok(s.filter(|s| !s.is_empty() && s != "(null)"))
    }

    /// NUMA node; `None` when the kernel reports -1 (no NUMA affinity) or
    /// the file is absent.
    pub fn numa_node(&self) -> Result<Option<u32>> {
        let v = optional(self.dir.read_parsed("numa_node", |s| s.parse::<i64>().ok()))?;
        Ok(v.and_then(|n| u32::try_from(n).ok()))
    }

    /// IOMMU group number from the `iommu_group` link; `None` without an IOMMU.
    pub fn iommu_group(&self) -> Result<Option<u32>> {
        self.link_parsed("iommu_group")
    }

    /// `sriov_totalvfs`; `None` when the function is not SR-IOV capable.
    pub fn sriov_totalvfs(&self) -> Result<Option<u32>> {
        optional(self.dir.read_parsed("sriov_totalvfs", |s| s.parse().ok()))
    }

    /// `sriov_offset` and `sriov_stride`: VF n's routing ID is the PF's +
    /// offset + n x stride. `None` when the kernel does not have them.
    pub fn sriov_offset_stride(&self) -> Result<Option<(u16, u16)>> {
        let Some(offset) = optional(self.dir.read_parsed("sriov_offset", |s| s.parse().ok()))?
        else {
            return Ok(None);
        };
        let stride = optional(self.dir.read_parsed("sriov_stride", |s| s.parse().ok()))?;
        Ok(stride.map(|stride| (offset, stride)))
    }

    /// The VF the link `virtfn<index>` names; `None` when there is no such
    /// link. One readlink, for callers that know the index.
    pub fn virtfn(&self, index: u32) -> Result<Option<PciAddress>> {
        self.link_parsed(&format!("virtfn{index}"))
    }

    /// `sriov_numvfs`.
    pub fn sriov_numvfs(&self) -> Result<u32> {
        self.dir.read_parsed("sriov_numvfs", |s| s.parse().ok())
    }

    /// Writes `sriov_numvfs` (the kernel refuses N -> M with EBUSY; the
    /// provisioning plan writes 0 first).
    pub fn set_sriov_numvfs(&self, n: u32) -> Result<()> {
        write_attr(&self.attr("sriov_numvfs"), &n.to_string())
    }

    /// The PF of a VF (`physfn` link); `None` for a PF or plain function.
    pub fn physfn(&self) -> Result<Option<PciAddress>> {
        self.link_parsed("physfn")
    }

    /// The last component of the link `name` (`iommu_group`, `physfn`,
    /// `virtfnN`) parsed; `None` when there is no such link, a parse error
    /// naming the link when its target is something else.
    fn link_parsed<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        match optional(self.dir.link_basename(name))? {
            None => Ok(None),
            Some(base) => base.parse().map(Some).map_err(|_| SysfsError::Parse {
                path: self.dir.path().join(name),
                content: base,
            }),
        }
    }

    /// Every `virtfnN` link as (index, VF address), sorted by index. The
    /// directory is listed once and each link read once, so a PF with N VFs
    /// costs N readlinks. A link that vanishes mid-scan (VFs being
    /// destroyed) or does not name a PCI address is skipped with a warning.
    pub fn virtfns(&self) -> Result<Vec<(u32, PciAddress)>> {
        Ok(self
            .virtfn_devices()?
            .into_iter()
            .map(|(i, d)| (i, d.addr()))
            .collect())
    }

    /// Every `virtfnN` link as (index, VF handle), sorted by index, each VF
    /// directory resolved from the link target already read (no second walk
    /// of the link). Same skipping rules as [`PciDevice::virtfns`]; a link
    /// whose target is gone still yields a handle whose reads fail (check
    /// [`PciDevice::exists`]).
    pub fn virtfn_devices(&self) -> Result<Vec<(u32, PciDevice)>> {
        let mut out = Vec::new();
        for name in self.dir.list(".")? {
            let Some(index) = virtfn_index(&name) else {
                continue;
            };
            let target = match self.dir.read_link(&name) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("skipping VF link: {e}");
                    continue;
                }
            };
            let path = self.dir.path().join(&name);
            let addr = match target.file_name().and_then(|n| n.to_str()).map(str::parse) {
                Some(Ok(addr)) => addr,
                Some(Err(e)) => {
                    tracing::warn!(path = %path.display(), "skipping VF link: {e}");
                    continue;
                }
                None => {
                    let target = target.display();
                    tracing::warn!(path = %path.display(), %target, "skipping VF link: no device name");
                    continue;
                }
            };
            // An absolute or escaping target is read through the link
            // itself, never lexically outside the tree.
            let dir = if lexical_join(self.dir.path(), &target).is_some() {
                self.dir.child(&target)
            } else {
                AttrDir::new(path)
            };
            out.push((index, PciDevice { addr, dir }));
        }
        out.sort_unstable_by_key(|(i, d)| (*i, d.addr()));
        Ok(out)
    }

    /// The netdev `ifname` under this function's `net/` (not checked to
    /// exist; reads fail if it does not); `None` for an invalid name.
    pub fn netdev(&self, ifname: &str) -> Option<NetDev> {
        super::valid_ifname(ifname)
            .then(|| NetDev::at(ifname, self.dir.child(&Path::new("net").join(ifname))))
    }

    /// The netdevs this function owns (`net/*`), sorted; empty when it has
    /// none (unbound, or bound to vfio-pci / uio).
    pub fn netdevs(&self) -> Result<Vec<NetDev>> {
        let names = match self.dir.list("net") {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let net = Path::new("net");
        let mut out: Vec<NetDev> = names
            .into_iter()
            .filter(|n| super::valid_ifname(n))
            .map(|n| {
                let dir = self.dir.child(&net.join(&n));
                NetDev::at(&n, dir)
            })
            .collect();
        out.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(out)
    }

    /// Resolves a link in this directory relative to it (for diagnostics and
    /// for following `physfn` to the PF's directory).
    pub fn resolve_link(&self, name: &'static str) -> Result<PathBuf> {
        let path = self.attr(name);
        let target = self.dir.read_link(name)?;
        lexical_join(self.dir.path(), &target).ok_or_else(|| SysfsError::Parse {
            path,
            content: target.display().to_string(),
        })
    }
}

/// `N` of a `virtfnN` entry: decimal without sign or leading zeros, as the
/// kernel names them (`virtfn+1` or `virtfn01` are not VF links).
fn virtfn_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("virtfn")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Maps "file does not exist" to `None`, keeping every other error.
pub(crate) fn optional<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kernel_shaped_virtfn_names_are_vf_links() {
        assert_eq!(virtfn_index("virtfn0"), Some(0));
        assert_eq!(virtfn_index("virtfn127"), Some(127));
        for bad in [
            "virtfn",
            "virtfn+1",
            "virtfn01",
            "virtfn-1",
            "virtfnx",
            "virtfn99999999999",
        ] {
            assert_eq!(virtfn_index(bad), None, "{bad}");
        }
    }
}
