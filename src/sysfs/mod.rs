//! Rooted access to `/sys`: every read and write of sysfs in fastpath goes
//! through a [`Sysfs`] whose root is configurable, so tests point it at a
//! fake tree in a temp dir and production points it at `/sys`.
//!
//! Paths are only ever formed from a [`PciAddress`], a validated interface
//! name, and attribute names that are constants of this module.

mod at;
mod driver;
mod net;
mod pci;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use driver::{PciDriver, valid_driver_name};
pub use net::{ARPHRD_ETHER, ARPHRD_INFINIBAND, LinkType, NetDev, valid_ifname};
pub use pci::PciDevice;

use crate::pci::PciAddress;

/// Default sysfs mount point.
pub const DEFAULT_ROOT: &str = "/sys";

/// Something went wrong reading or writing a sysfs file.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A file or link could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        /// The file written.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A file held something the kernel would not write there.
    #[error("{path}: unexpected content {content:?}")]
    Parse {
        /// The file read.
        path: PathBuf,
        /// Its content, trimmed.
        content: String,
    },
    /// An interface name that must not be joined into a path.
    #[error("invalid interface name {0:?}")]
    IfName(String),
    /// A driver name that must not be joined into a path.
    #[error("invalid driver name {0:?}")]
    DriverName(String),
}

impl SysfsError {
    /// True when the file simply does not exist (an optional attribute).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SysfsError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Result alias for sysfs operations.
pub type Result<T, E = SysfsError> = std::result::Result<T, E>;

/// A sysfs tree rooted at a directory (normally `/sys`).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// Uses `root` as the sysfs mount point.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root this tree reads under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/bus/pci/devices`.
    pub fn pci_devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// Every PCI function the kernel lists, in address order. Entries whose
    /// names are not PCI addresses are skipped with a warning.
    pub fn pci_addresses(&self) -> Result<Vec<PciAddress>> {
        let dir = self.pci_devices_dir();
        let mut out = Vec::new();
        for name in read_dir_names(&dir)? {
            match name.parse::<PciAddress>() {
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!(path = %dir.display(), "skipping entry: {e}"),
            }
        }
        out.sort();
        Ok(out)
    }

    /// A handle on one PCI function. The device directory is resolved once
    /// (through the `bus/pci/devices` link) so that later reads do not walk
    /// the symlink again.
    pub fn pci_device(&self, addr: PciAddress) -> PciDevice {
        let link = self.pci_devices_dir().join(addr.to_string());
        // A missing or absolute link falls back to the link path itself: the
        // kernel then resolves it (and a missing device reads as not found).
        let dir = fs::read_link(&link)
            .ok()
            .and_then(|target| lexical_join(&self.pci_devices_dir(), &target))
            .unwrap_or(link);
        PciDevice::new(addr, dir)
    }

    /// A VF's handle from its PF's resolved directory: the kernel places VF
    /// directories beside their PF, so no symlink is walked.
    pub fn sibling_device(&self, of: &PciDevice, addr: PciAddress) -> PciDevice {
        let dir = of
            .dir()
            .parent()
            .map(|p| p.join(addr.to_string()))
            .unwrap_or_else(|| self.pci_devices_dir().join(addr.to_string()));
        PciDevice::new(addr, dir)
    }

    /// A netdev by name under `class/net`, wherever its device lives.
    pub fn class_net(&self, ifname: &str) -> Result<NetDev> {
        if !valid_ifname(ifname) {
            return Err(SysfsError::IfName(ifname.to_string()));
        }
        Ok(NetDev::new(
            ifname,
            self.root.join("class/net").join(ifname),
        ))
    }

    /// Every netdev name under `class/net` that is a valid interface name.
    pub fn class_net_names(&self) -> Result<Vec<String>> {
        let mut names = read_dir_names(&self.root.join("class/net"))?;
        names.retain(|n| valid_ifname(n));
        names.sort();
        Ok(names)
    }

    /// The PCI function behind netdev `ifname` (`device` link); `None`
    /// for virtual interfaces.
    pub fn class_net_device(&self, ifname: &str) -> Result<Option<PciAddress>> {
        let nd = self.class_net(ifname)?;
        match pci::optional(link_basename(&nd.dir().join("device")))? {
            Some(name) => Ok(name.parse().ok()),
            None => Ok(None),
        }
    }

    /// Every netdev under `class/net` with the directory of the device that
    /// owns it (resolved lexically from the link, as [`Sysfs::pci_device`]
    /// resolves device links, so the two compare equal). Virtual netdevs
    /// (`devices/virtual/net/...`) are included; entries whose link cannot
    /// be read or does not end in `net/<name>` are skipped. One listing and
    /// one readlink per netdev: cheaper than listing every device's `net/`.
    pub fn class_net_owners(&self) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.root.join("class/net");
        let names = read_dir_names(&dir)?;
        let fd = at::DirFd::open(&dir).ok();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if !valid_ifname(&name) {
                continue;
            }
            let target = match &fd {
                Some(fd) => fd.read_link(Path::new(&name)),
                None => fs::read_link(dir.join(&name)),
            };
            let Ok(target) = target else { continue };
            let Some(nd_dir) = lexical_join(&dir, &target) else {
                continue;
            };
            let owner = nd_dir
                .parent()
                .filter(|net| net.file_name().is_some_and(|n| n == "net"))
                .and_then(Path::parent);
            if let Some(owner) = owner
                && nd_dir.file_name().is_some_and(|n| n == name.as_str())
            {
                out.push((name, owner.to_path_buf()));
            }
        }
        Ok(out)
    }

    /// VFIO runs in no-IOMMU mode (the `vfio` module's
    /// `enable_unsafe_noiommu_mode` is on); false when it is off, or the
    /// module is not loaded.
    pub fn vfio_noiommu(&self) -> bool {
        std::fs::read_to_string(
            self.root
                .join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
        )
        .is_ok_and(|s| matches!(s.trim(), "Y" | "y" | "1"))
    }

    /// `<root>/bus/pci/drivers/<driver>`; `None` for names that are not a
    /// single path component.
    pub fn pci_driver_dir(&self, driver: &str) -> Option<PathBuf> {
        valid_component(driver).then(|| self.root.join("bus/pci/drivers").join(driver))
    }
}

/// True for a string that is one ordinary path component.
pub(crate) fn valid_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// Joins a relative symlink target to the directory holding the link,
/// folding `..` lexically (sysfs links never point through other links
/// that would make this differ from the kernel's resolution). `None` for
/// an absolute target or one that climbs above `base`'s filesystem root:
/// the kernel never makes those, and following them lexically could leave
/// the configured sysfs root.
pub(crate) fn lexical_join(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for comp in target.components() {
        match comp {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            std::path::Component::CurDir => {}
            std::path::Component::Normal(c) => out.push(c),
            std::path::Component::RootDir | std::path::Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Reads a whole attribute file (at most one page), trimmed of the
/// kernel's trailing newline. Content that is not UTF-8 is an error naming
/// the file. A FIFO in a fake tree is an error, not a hang.
pub(crate) fn read_trimmed(path: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .and_then(at::read_bounded)
        .map_err(|source| SysfsError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads an attribute and parses it, naming the file on bad content.
pub(crate) fn read_parsed<T>(path: &Path, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
    let s = read_trimmed(path)?;
    parse(&s).ok_or_else(|| SysfsError::Parse {
        path: path.to_path_buf(),
        content: s,
    })
}

/// The last component of a symlink's target (`driver` -> `ixgbe`).
pub(crate) fn link_basename(path: &Path) -> Result<String> {
    let target = fs::read_link(path).map_err(|source| SysfsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| SysfsError::Parse {
            path: path.to_path_buf(),
            content: target.display().to_string(),
        })
}

/// Writes an attribute the way the kernel expects: one write of the value.
pub(crate) fn write_attr(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| SysfsError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Names in a directory, skipping entries that are not UTF-8.
pub(crate) fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|source| SysfsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| SysfsError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_join_folds_parent_components() {
        let p = lexical_join(
            Path::new("/sys/bus/pci/devices"),
            Path::new("../../../devices/pci0000:00/0000:00:02.0"),
        );
        assert_eq!(
            p.as_deref(),
            Some(Path::new("/sys/devices/pci0000:00/0000:00:02.0"))
        );
    }

    #[test]
    fn lexical_join_refuses_absolute_and_escaping_targets() {
        let base = Path::new("/sys/bus");
        assert_eq!(lexical_join(base, Path::new("/etc")), None);
        assert_eq!(lexical_join(base, Path::new("../../../../etc")), None);
        assert_eq!(
            lexical_join(base, Path::new("./pci/../pci")).as_deref(),
            Some(Path::new("/sys/bus/pci"))
        );
    }

    #[test]
    fn attributes_are_trimmed_bounded_and_utf8_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        fs::write(&p, "0x8086\n").unwrap();
        assert_eq!(read_trimmed(&p).unwrap(), "0x8086");
        fs::write(&p, "x".repeat(3 * at::ATTR_MAX)).unwrap();
        assert_eq!(read_trimmed(&p).unwrap().len(), at::ATTR_MAX);
        fs::write(&p, [0xff, 0xfe, b'\n']).unwrap();
        let e = read_trimmed(&p).unwrap_err();
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert!(read_trimmed(dir.path()).is_err());
        assert!(
            read_trimmed(&dir.path().join("missing"))
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn components_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(!valid_component(bad), "{bad:?}");
        }
        assert!(valid_component("vfio-pci"));
        assert!(Sysfs::new("/x").pci_driver_dir("../../etc").is_none());
    }
}
