//! The VF a config names, resolved through the rooted sysfs: its PF, index,
//! driver and host netdev. Anything that is not an SR-IOV VF is refused
//! with code 7 before anything changes.

use super::error::{CniError, CniResult, code};
use crate::netlink::vf::Pf;
use crate::pci::PciAddress;
use crate::sysfs::{PciDevice, Sysfs};

/// Drivers that leave a VF without a netdev, for userspace (DPDK) use.
pub const DPDK_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// A VF as the CNI sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfDevice {
    /// The VF.
    pub pci: PciAddress,
    /// Its PF.
    pub pf_pci: PciAddress,
    /// PF netdev name, if the PF has one.
    pub pf_name: Option<String>,
    /// PF driver.
    pub pf_driver: String,
    /// VF index on the PF.
    pub index: u32,
    /// The VF's driver.
    pub driver: String,
    /// Host netdev name from sysfs (`<vf>/net/*`), kernel VFs only.
    pub netdev: Option<String>,
    /// Bound to a DPDK driver, no netdev.
    pub dpdk: bool,
}

impl VfDevice {
    /// The PF handle for PF-side settings; an error when the PF has no
    /// netdev to send them through.
    pub fn pf(&self) -> CniResult<Pf> {
        match &self.pf_name {
            Some(name) => Ok(Pf {
                name: name.clone(),
                driver: self.pf_driver.clone(),
            }),
            None => Err(CniError::new(
                code::INVALID_CONFIG,
                format!("PF {} of VF {} has no netdev", self.pf_pci, self.pci),
                "PF-side VF settings (vlan, mac, spoofchk, trust, rates, link_state) need the PF bound to its kernel driver",
            )),
        }
    }
}

fn sysfs_err(pci: PciAddress, e: impl std::fmt::Display) -> CniError {
    CniError::new(code::IO, format!("reading sysfs for {pci}"), e.to_string())
}

/// The VF's index computed from the PF's `sriov_offset`/`sriov_stride`
/// and confirmed by reading that one `virtfnN` link: every ADD and DEL
/// resolves its VF, and listing a PF's 64-256 links would cost as many
/// readlinks. `None` (then the links are scanned) when the attributes are
/// missing or unreadable or the link names another device.
fn index_from_layout(pf: &PciDevice, pf_pci: PciAddress, pci: PciAddress) -> Option<u32> {
    let (offset, stride) = pf.sriov_offset_stride().ok()??;
    let index = pci.vf_index_on(pf_pci, offset, stride)?;
    (pf.virtfn(index).ok()?? == pci).then_some(index)
}

/// Resolves `pci` to a VF, or refuses it (code 7) naming why.
pub fn resolve(sysfs: &Sysfs, pci: PciAddress) -> CniResult<VfDevice> {
    let dev = sysfs.pci_device(pci);
    if !dev.exists() {
        return Err(CniError::invalid_field(
            "deviceID",
            pci,
            "no such PCI device",
        ));
    }
    let Some(pf_pci) = dev.physfn().map_err(|e| sysfs_err(pci, e))? else {
        let why = match dev.sriov_totalvfs() {
            Ok(Some(_)) => "is an SR-IOV PF, not a VF",
            _ => "is not an SR-IOV VF",
        };
        return Err(CniError::invalid_field("deviceID", pci, why));
    };
    let pf = sysfs.pci_device(pf_pci);
    let index = match index_from_layout(&pf, pf_pci, pci) {
        Some(i) => i,
        None => pf
            .virtfns()
            .map_err(|e| sysfs_err(pf_pci, e))?
            .into_iter()
            .find(|(_, a)| *a == pci)
            .map(|(i, _)| i)
            .ok_or_else(|| {
                CniError::invalid_field(
                    "deviceID",
                    pci,
                    &format!("PF {pf_pci} does not list it as a VF"),
                )
            })?,
    };
    let pf_driver = pf
        .driver()
        .map_err(|e| sysfs_err(pf_pci, e))?
        .unwrap_or_else(|| "none".into());
    let pf_name = pf
        .netdevs()
        .map_err(|e| sysfs_err(pf_pci, e))?
        .first()
        .map(|n| n.name().to_string());
    let Some(driver) = dev.driver().map_err(|e| sysfs_err(pci, e))? else {
        return Err(CniError::invalid_field(
            "deviceID",
            pci,
            "VF has no driver bound",
        ));
    };
    let netdev = dev
        .netdevs()
        .map_err(|e| sysfs_err(pci, e))?
        .first()
        .map(|n| n.name().to_string());
    let dpdk = netdev.is_none() && DPDK_DRIVERS.contains(&driver.as_str());
    if netdev.is_none() && !dpdk {
        return Err(CniError::invalid_field(
            "deviceID",
            pci,
            &format!("VF bound to {driver} has no netdev and is not a DPDK driver"),
        ));
    }
    Ok(VfDevice {
        pci,
        pf_pci,
        pf_name,
        pf_driver,
        index,
        driver,
        netdev,
        dpdk,
    })
}

/// The VF's host netdev name now, from sysfs (after a netns was deleted
/// the kernel may have given it a `devN` name).
pub fn host_netdev(sysfs: &Sysfs, pci: PciAddress) -> Option<String> {
    sysfs
        .pci_device(pci)
        .netdevs()
        .ok()?
        .first()
        .map(|n| n.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysfs_fixture::{FakeSysfs, presets};

    #[test]
    fn vfs_resolve_and_everything_else_is_refused_with_code_7() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path()).unwrap();
        fake.add_pf(&presets::e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2))
            .unwrap();
        fake.add_pf(&presets::igb("0000:5e:00.0", "eno1", "0000:5e:10.0", 2).vfio(0..1))
            .unwrap();
        let sysfs = Sysfs::new(dir.path());
        let vf = resolve(&sysfs, "0000:3b:01.1".parse().unwrap()).unwrap();
        assert_eq!(vf.index, 1);
        assert_eq!(vf.pf_name.as_deref(), Some("ens1f0"));
        assert_eq!(vf.pf_driver, "ice");
        assert_eq!(vf.netdev.as_deref(), Some("ens1f0v1"));
        assert!(!vf.dpdk);
        let dpdk = resolve(&sysfs, "0000:5e:10.0".parse().unwrap()).unwrap();
        assert!(dpdk.dpdk);
        assert_eq!(dpdk.pf_driver, "igb");
        for (addr, why) in [
            ("0000:3b:00.0", "is an SR-IOV PF, not a VF"),
            ("0000:99:00.0", "no such PCI device"),
        ] {
            let e = resolve(&sysfs, addr.parse().unwrap()).unwrap_err();
            assert_eq!(e.code, 7);
            assert!(e.msg.contains("deviceID") && e.msg.contains(addr), "{e}");
            assert_eq!(e.details, why);
        }
    }

    #[test]
    fn the_index_comes_from_offset_and_stride_and_else_from_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path()).unwrap();
        fake.add_pf(&presets::e810("0000:3b:00.0", "ens1f0", "0000:3b:10.0", 40))
            .unwrap();
        let sysfs = Sysfs::new(dir.path());
        let pf_dir = dir.path().join("bus/pci/devices/0000:3b:00.0");
        let vf37: PciAddress = presets::nth_addr("0000:3b:10.0", 37).parse().unwrap();
        let offset = pf_dir.join("sriov_offset");
        assert_eq!(std::fs::read_to_string(&offset).unwrap(), "128\n");
        assert_eq!(resolve(&sysfs, vf37).unwrap().index, 37);
        let pf = sysfs.pci_device("0000:3b:00.0".parse().unwrap());
        assert_eq!(index_from_layout(&pf, pf.addr(), vf37), Some(37));
        assert_eq!(
            index_from_layout(&sysfs.pci_device(vf37), vf37, vf37),
            None,
            "a VF has no layout of its own"
        );
        // A layout that points at another VF's link (36), between VFs, or
        // past the last link (164): no index from it; the links decide.
        let stride = pf_dir.join("sriov_stride");
        for (off, step) in [("129\n", "1\n"), ("128\n", "3\n"), ("1\n", "1\n")] {
            std::fs::write(&offset, off).unwrap();
            std::fs::write(&stride, step).unwrap();
            assert_eq!(
                index_from_layout(&pf, pf.addr(), vf37),
                None,
                "{off} {step}"
            );
            assert_eq!(resolve(&sysfs, vf37).unwrap().index, 37);
        }
        // Unparsable or missing attributes: the same.
        std::fs::write(&offset, "128\n").unwrap();
        std::fs::write(&stride, "garbage\n").unwrap();
        assert_eq!(index_from_layout(&pf, pf.addr(), vf37), None);
        assert_eq!(resolve(&sysfs, vf37).unwrap().index, 37);
        std::fs::remove_file(&offset).unwrap();
        std::fs::write(&stride, "1\n").unwrap();
        assert_eq!(index_from_layout(&pf, pf.addr(), vf37), None);
        assert_eq!(resolve(&sysfs, vf37).unwrap().index, 37);
    }
}
