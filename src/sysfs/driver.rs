//! PCI driver binding under the rooted sysfs: `driver/unbind`,
//! `driver_override`, `drivers/<name>/bind`, `drivers_probe`, `new_id`.
//! Paths are formed only from a [`PciAddress`] and a driver name checked
//! by [`valid_driver_name`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    NetDev, PciDevice, Result, Sysfs, SysfsError, read_dir_names, read_parsed, write_attr,
};
use crate::pci::{PciAddress, PciId};

/// True for a name the kernel could register as a PCI driver: 1-64 bytes
/// of ASCII letters, digits, `_` and `-`.
pub fn valid_driver_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A PCI driver's directory `bus/pci/drivers/<name>`.
#[derive(Debug, Clone)]
pub struct PciDriver {
    name: String,
    dir: PathBuf,
}

impl PciDriver {
    /// The driver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the driver is registered (module loaded or built in).
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Binds `addr` to this driver (`bind`).
    pub fn bind(&self, addr: PciAddress) -> Result<()> {
        write_attr(&self.dir.join("bind"), &addr.to_string())
    }

    /// Unbinds `addr` from this driver (`unbind`).
    pub fn unbind(&self, addr: PciAddress) -> Result<()> {
        write_attr(&self.dir.join("unbind"), &addr.to_string())
    }

    /// Lets the driver claim devices with these ids (`new_id`).
    pub fn new_id(&self, vendor: PciId, device: PciId) -> Result<()> {
        write_attr(
            &self.dir.join("new_id"),
            &format!("{:04x} {:04x}", vendor.0, device.0),
        )
    }
}

impl Sysfs {
    /// The driver `name`; refuses names that are not driver names.
    pub fn pci_driver(&self, name: &str) -> Result<PciDriver> {
        if !valid_driver_name(name) {
            return Err(SysfsError::DriverName(name.to_string()));
        }
        Ok(PciDriver {
            name: name.to_string(),
            dir: self.root().join("bus/pci/drivers").join(name),
        })
    }

    /// Every registered PCI driver.
    pub fn pci_driver_names(&self) -> Result<BTreeSet<String>> {
        Ok(read_dir_names(&self.root().join("bus/pci/drivers"))?
            .into_iter()
            .filter(|n| valid_driver_name(n))
            .collect())
    }

    /// Asks the PCI core to probe `addr` against every driver
    /// (`bus/pci/drivers_probe`), honouring `driver_override`.
    pub fn drivers_probe(&self, addr: PciAddress) -> Result<()> {
        write_attr(
            &self.root().join("bus/pci/drivers_probe"),
            &addr.to_string(),
        )
    }

    /// True when the kernel lists IOMMU groups (an IOMMU is enabled).
    pub fn iommu_groups_present(&self) -> bool {
        read_dir_names(&self.root().join("kernel/iommu_groups")).is_ok_and(|n| !n.is_empty())
    }
}

impl PciDevice {
    /// Writes `driver_override`; `None` clears it.
    pub fn set_driver_override(&self, driver: Option<&str>) -> Result<()> {
        let value = match driver {
            Some(d) if valid_driver_name(d) => d,
            Some(d) => return Err(SysfsError::DriverName(d.to_string())),
            // The kernel clears the override on an empty line.
            None => "\n",
        };
        write_attr(&self.dir().join("driver_override"), value)
    }

    /// Unbinds the device from whatever driver it has (`driver/unbind`).
    pub fn unbind(&self) -> Result<()> {
        write_attr(&self.dir().join("driver/unbind"), &self.addr().to_string())
    }

    /// `sriov_drivers_autoprobe`: whether new VFs are probed by drivers;
    /// the kernel default (true) when the file is absent.
    pub fn sriov_drivers_autoprobe(&self) -> Result<bool> {
        match read_parsed(&self.dir().join("sriov_drivers_autoprobe"), |s| {
            s.parse::<u8>().ok()
        }) {
            Ok(v) => Ok(v != 0),
            Err(e) if e.is_not_found() => Ok(true),
            Err(e) => Err(e),
        }
    }
}

impl NetDev {
    /// Writes the netdev's `mtu`.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        write_attr(&self.dir().join("mtu"), &mtu.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_are_checked_before_any_path_is_formed() {
        let s = Sysfs::new("/nonexistent");
        for bad in ["", "..", "a/b", "vfio pci", "x\n", &"a".repeat(65)] {
            assert!(s.pci_driver(bad).is_err(), "{bad:?}");
        }
        for ok in ["vfio-pci", "igb_uio", "mlx5_core", "iavf"] {
            assert!(s.pci_driver(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn writes_land_in_the_kernel_files() {
        let dir = tempfile::tempdir().unwrap();
        let fs = sysfs_fixture::FakeSysfs::new(dir.path()).unwrap();
        let pf = sysfs_fixture::presets::igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 2)
            .iommu_groups(10);
        fs.add_pf(&pf).unwrap();
        let s = Sysfs::new(dir.path());
        let vf: PciAddress = "0000:05:10.2".parse().unwrap();
        let dev = s.pci_device(vf);
        dev.unbind().unwrap();
        let igbvf = dir.path().join("bus/pci/drivers/igbvf/unbind");
        assert_eq!(std::fs::read_to_string(igbvf).unwrap(), "0000:05:10.2");
        dev.set_driver_override(Some("vfio-pci")).unwrap();
        assert_eq!(dev.driver_override().unwrap().as_deref(), Some("vfio-pci"));
        dev.set_driver_override(None).unwrap();
        assert_eq!(dev.driver_override().unwrap(), None);
        assert!(dev.set_driver_override(Some("../x")).is_err());
        s.drivers_probe(vf).unwrap();
        let probe = dir.path().join("bus/pci/drivers_probe");
        assert_eq!(std::fs::read_to_string(probe).unwrap(), "0000:05:10.2");
        let drv = s.pci_driver("igbvf").unwrap();
        assert!(drv.exists());
        drv.bind(vf).unwrap();
        drv.new_id(PciId(0x8086), PciId(0x10ca)).unwrap();
        let new_id = dir.path().join("bus/pci/drivers/igbvf/new_id");
        assert_eq!(std::fs::read_to_string(new_id).unwrap(), "8086 10ca");
        assert!(s.pci_driver_names().unwrap().contains("igbvf"));
        assert!(s.iommu_groups_present());
        assert!(
            s.pci_device("0000:05:00.0".parse().unwrap())
                .sriov_drivers_autoprobe()
                .unwrap()
        );
    }
}
