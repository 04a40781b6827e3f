//! Fake `/sys` trees for tests, benchmarks and demos, laid out exactly as
//! Linux lays them out: `bus/pci/devices/<addr>` are relative links into
//! `devices/pci0000:00/...`, `driver`, `physfn`, `virtfnN`, `iommu_group`
//! and `class/net/<if>` are relative links with the kernel's names, and
//! attribute files hold what the kernel prints (`0x8086\n`).
//!
//! Trees are described as data ([`PfSpec`], [`VfSpec`], [`NetSpec`]) and
//! written by [`FakeSysfs`]; [`presets`] has the NICs fastpath supports.

pub mod catalog;
pub mod presets;

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

/// ARPHRD_ETHER.
pub const ETHER: u16 = 1;
/// ARPHRD_INFINIBAND.
pub const INFINIBAND: u16 = 32;

/// A netdev under a device's `net/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Interface name.
    pub name: String,
    /// `address`.
    pub mac: String,
    /// ARPHRD `type` (1 Ethernet, 32 InfiniBand).
    pub arphrd: u16,
    /// `operstate`.
    pub operstate: String,
    /// `mtu`.
    pub mtu: u32,
}

impl NetSpec {
    /// An Ethernet netdev that is up with MTU 1500.
    pub fn ether(name: &str, mac: &str) -> Self {
        Self {
            name: name.into(),
            mac: mac.into(),
            arphrd: ETHER,
            operstate: "up".into(),
            mtu: 1500,
        }
    }

    /// An IPoIB netdev that is up with MTU 2044.
    pub fn infiniband(name: &str, mac: &str) -> Self {
        Self {
            name: name.into(),
            mac: mac.into(),
            arphrd: INFINIBAND,
            operstate: "up".into(),
            mtu: 2044,
        }
    }
}

/// A VF of a [`PfSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfSpec {
    /// PCI address (`0000:3b:01.0`).
    pub addr: String,
    /// Bound driver; `None` for an unbound VF.
    pub driver: Option<String>,
    /// Netdev, for kernel-driver VFs.
    pub netdev: Option<NetSpec>,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// RDMA device name (`mlx5_3`) under `infiniband/`.
    pub rdma: Option<String>,
}

/// A physical function with SR-IOV and its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfSpec {
    /// PCI address.
    pub addr: String,
    /// Vendor id.
    pub vendor: u16,
    /// PF device id.
    pub device: u16,
    /// VF device id (`sriov_vf_device`).
    pub vf_device: u16,
    /// PCI class code.
    pub class: u32,
    /// Bound driver.
    pub driver: Option<String>,
    /// PF netdev.
    pub netdev: Option<NetSpec>,
    /// `numa_node` (-1 for none).
    pub numa_node: i32,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// IOMMU group of the PF.
    pub iommu_group: Option<u32>,
    /// RDMA device name of the PF.
    pub rdma: Option<String>,
    /// The VFs (`sriov_numvfs` is their count).
    pub vfs: Vec<VfSpec>,
}

/// A fake sysfs rooted at a directory.
#[derive(Debug)]
pub struct FakeSysfs {
    root: PathBuf,
}

/// The target of a link in directory `from` to `to` (both relative to the
/// root), spelled as the kernel spells it (kernfs_get_target_path): climb
/// from `from` until reaching an ancestor of `to`'s *parent*, then descend.
/// So a link to an ancestor still names it (`net/eth0/device` ->
/// `../../../0000:3b:00.0`, not `../..`).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let to_parent = &t[..t.len().saturating_sub(1)];
    let common = f.iter().zip(to_parent).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The devices/ directory of the root port a PF on `addr`'s bus sits under
/// (VFs sit beside their PF there, as `pci_iov_add_virtfn` places them).
fn parent_dir(addr: &str) -> io::Result<PathBuf> {
    let (domain, bus) = match (addr.get(..4), addr.get(5..7)) {
        (Some(d), Some(b)) if valid_addr(addr) => (d, b),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a PCI address: {addr:?}"),
            ));
        }
    };
    let bus = u8::from_str_radix(bus, 16).unwrap_or(0);
    Ok(PathBuf::from(format!(
        "devices/pci{domain}:00/{domain}:00:{:02x}.0",
        bus % 0x20
    )))
}

/// `dddd:bb:dd.f` in lower-case hex, the only shape the builder writes.
fn valid_addr(addr: &str) -> bool {
    let b = addr.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && hex(11..12)
}

impl FakeSysfs {
    /// Creates the skeleton (`bus/pci/devices`, `bus/pci/drivers`,
    /// `class/net`, `kernel/iommu_groups`) under `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let s = Self { root: root.into() };
        for d in [
            "bus/pci/devices",
            "bus/pci/drivers",
            "class/net",
            "kernel/iommu_groups",
        ] {
            fs::create_dir_all(s.root.join(d))?;
        }
        s.file("bus/pci/drivers_probe", "")?;
        s.file("bus/pci/drivers_autoprobe", "1\n")?;
        Ok(s)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, rel: impl AsRef<Path>, content: &str) -> io::Result<()> {
        let p = self.root.join(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d)?;
        }
        fs::write(p, content)
    }

    /// Makes `link` (relative to root) point at `target` (relative to root)
    /// with a relative symlink, replacing what was there.
    pub fn link(&self, link: impl AsRef<Path>, target: impl AsRef<Path>) -> io::Result<()> {
        let link = link.as_ref();
        let parent = link.parent().unwrap_or(Path::new(""));
        fs::create_dir_all(self.root.join(parent))?;
        let abs = self.root.join(link);
        let _ = fs::remove_file(&abs);
        symlink(relative(parent, target.as_ref()), abs)
    }

    /// Writes a PF, its VFs, their drivers, netdevs and IOMMU groups.
    pub fn add_pf(&self, pf: &PfSpec) -> io::Result<()> {
        let dir = parent_dir(&pf.addr)?.join(&pf.addr);
        self.device(&dir, &pf.addr, pf.vendor, pf.device, pf.class, pf.numa_node)?;
        self.file(dir.join("sriov_totalvfs"), &format!("{}\n", pf.total_vfs))?;
        self.file(dir.join("sriov_numvfs"), &format!("{}\n", pf.vfs.len()))?;
        self.file(
            dir.join("sriov_vf_device"),
            &format!("{:04x}\n", pf.vf_device),
        )?;
        self.file(dir.join("sriov_drivers_autoprobe"), "1\n")?;
        if let Some((offset, stride)) = vf_grid(pf) {
            self.file(dir.join("sriov_offset"), &format!("{offset}\n"))?;
            self.file(dir.join("sriov_stride"), &format!("{stride}\n"))?;
        }
        self.attach(
            &dir,
            &pf.addr,
            pf.driver.as_deref(),
            pf.netdev.as_ref(),
            pf.iommu_group,
            pf.rdma.as_deref(),
        )?;
        for (i, vf) in pf.vfs.iter().enumerate() {
            self.add_vf(pf, i, vf)?;
        }
        Ok(())
    }

    /// Writes a function without SR-IOV (only ids, class, NUMA, driver).
    pub fn add_plain(&self, dev: &PfSpec) -> io::Result<()> {
        let dir = parent_dir(&dev.addr)?.join(&dev.addr);
        self.device(
            &dir,
            &dev.addr,
            dev.vendor,
            dev.device,
            dev.class,
            dev.numa_node,
        )?;
        self.attach(
            &dir,
            &dev.addr,
            dev.driver.as_deref(),
            dev.netdev.as_ref(),
            dev.iommu_group,
            dev.rdma.as_deref(),
        )
    }

    /// Writes VF `index` of `pf` (its directory, links both ways).
    pub fn add_vf(&self, pf: &PfSpec, index: usize, vf: &VfSpec) -> io::Result<()> {
        let pf_dir = parent_dir(&pf.addr)?.join(&pf.addr);
        parent_dir(&vf.addr)?;
        let dir = parent_dir(&pf.addr)?.join(&vf.addr);
        self.device(
            &dir,
            &vf.addr,
            pf.vendor,
            pf.vf_device,
            pf.class,
            pf.numa_node,
        )?;
        self.link(dir.join("physfn"), &pf_dir)?;
        self.link(pf_dir.join(format!("virtfn{index}")), &dir)?;
        self.attach(
            &dir,
            &vf.addr,
            vf.driver.as_deref(),
            vf.netdev.as_ref(),
            vf.iommu_group,
            vf.rdma.as_deref(),
        )
    }

    /// Removes every VF of `pf` the way the kernel does on `sriov_numvfs=0`.
    pub fn remove_vfs(&self, pf: &PfSpec) -> io::Result<()> {
        let parent = parent_dir(&pf.addr)?;
        for (i, vf) in pf.vfs.iter().enumerate() {
            let _ = fs::remove_file(
                self.root
                    .join(parent.join(&pf.addr).join(format!("virtfn{i}"))),
            );
            self.detach(
                &vf.addr,
                vf.driver.as_deref(),
                vf.netdev.as_ref(),
                vf.iommu_group,
            )?;
            match fs::remove_dir_all(self.root.join(parent.join(&vf.addr))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let _ = fs::remove_file(self.root.join("bus/pci/devices").join(&vf.addr));
        }
        self.file(parent.join(&pf.addr).join("sriov_numvfs"), "0\n")
    }

    /// Sets a netdev's `operstate` (link up/down as the kernel reports it).
    pub fn set_operstate(&self, ifname: &str, state: &str) -> io::Result<()> {
        self.file(
            Path::new("class/net").join(ifname).join("operstate"),
            &format!("{state}\n"),
        )
    }

    /// Overwrites any attribute file of a device (for malformed-content tests).
    pub fn write_attr(&self, addr: &str, name: &str, content: &str) -> io::Result<()> {
        self.file(Path::new("bus/pci/devices").join(addr).join(name), content)
    }

    fn device(
        &self,
        dir: &Path,
        addr: &str,
        vendor: u16,
        device: u16,
        class: u32,
        numa: i32,
    ) -> io::Result<()> {
        fs::create_dir_all(self.root.join(dir))?;
        self.file(dir.join("vendor"), &format!("0x{vendor:04x}\n"))?;
        self.file(dir.join("device"), &format!("0x{device:04x}\n"))?;
        self.file(dir.join("subsystem_vendor"), &format!("0x{vendor:04x}\n"))?;
        self.file(dir.join("class"), &format!("0x{class:06x}\n"))?;
        self.file(dir.join("numa_node"), &format!("{numa}\n"))?;
        self.file(dir.join("driver_override"), "(null)\n")?;
        self.link(dir.join("subsystem"), "bus/pci")?;
        self.link(Path::new("bus/pci/devices").join(addr), dir)
    }

    fn attach(
        &self,
        dir: &Path,
        addr: &str,
        driver: Option<&str>,
        netdev: Option<&NetSpec>,
        iommu_group: Option<u32>,
        rdma: Option<&str>,
    ) -> io::Result<()> {
        if let Some(drv) = driver {
            self.bind(dir, addr, drv)?;
        }
        if let Some(nd) = netdev {
            let nd_dir = dir.join("net").join(&nd.name);
            self.file(nd_dir.join("address"), &format!("{}\n", nd.mac))?;
            self.file(nd_dir.join("type"), &format!("{}\n", nd.arphrd))?;
            self.file(nd_dir.join("operstate"), &format!("{}\n", nd.operstate))?;
            self.file(nd_dir.join("mtu"), &format!("{}\n", nd.mtu))?;
            self.link(nd_dir.join("device"), dir)?;
            self.link(Path::new("class/net").join(&nd.name), &nd_dir)?;
        }
        if let Some(g) = iommu_group {
            let group = PathBuf::from(format!("kernel/iommu_groups/{g}"));
            self.file(group.join("type"), "identity\n")?;
            self.link(group.join("devices").join(addr), dir)?;
            self.link(dir.join("iommu_group"), &group)?;
        }
        if let Some(r) = rdma {
            self.file(dir.join("infiniband").join(r).join("node_type"), "1: CA\n")?;
            // The verbs and MAD char devices take the RDMA device's number.
            let n: String = r.chars().rev().take_while(|c| c.is_ascii_digit()).collect();
            let n: String = n.chars().rev().collect();
            self.file(
                dir.join(format!("infiniband_verbs/uverbs{n}/ibdev")),
                &format!("{r}\n"),
            )?;
            self.file(
                dir.join(format!("infiniband_mad/umad{n}/ibdev")),
                &format!("{r}\n"),
            )?;
        }
        Ok(())
    }

    fn bind(&self, dir: &Path, addr: &str, driver: &str) -> io::Result<()> {
        let drv = PathBuf::from("bus/pci/drivers").join(driver);
        for f in ["bind", "unbind", "new_id", "remove_id"] {
            if !self.root.join(&drv).join(f).exists() {
                self.file(drv.join(f), "")?;
            }
        }
        self.link(drv.join(addr), dir)?;
        self.link(dir.join("driver"), &drv)
    }

    fn detach(
        &self,
        addr: &str,
        driver: Option<&str>,
        netdev: Option<&NetSpec>,
        group: Option<u32>,
    ) -> io::Result<()> {
        if let Some(d) = driver {
            let _ = fs::remove_file(self.root.join("bus/pci/drivers").join(d).join(addr));
        }
        if let Some(nd) = netdev {
            let _ = fs::remove_file(self.root.join("class/net").join(&nd.name));
        }
        if let Some(g) = group {
            let _ = fs::remove_dir_all(self.root.join(format!("kernel/iommu_groups/{g}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_climb_to_the_common_ancestor() {
        assert_eq!(
            relative(
                Path::new("bus/pci/devices"),
                Path::new("devices/pci0000:00/0000:00:02.0")
            ),
            Path::new("../../../devices/pci0000:00/0000:00:02.0")
        );
        assert_eq!(
            relative(Path::new("devices/p/a"), Path::new("devices/p/b")),
            Path::new("../b")
        );
        // A link to an ancestor names it, as kernfs does.
        assert_eq!(
            relative(Path::new("devices/p/a/net/eth0"), Path::new("devices/p/a")),
            Path::new("../../../a")
        );
        assert_eq!(
            relative(Path::new("devices/p/a"), Path::new("bus/pci/drivers/ice")),
            Path::new("../../../bus/pci/drivers/ice")
        );
    }
}

#[cfg(test)]
mod addr_tests {
    use super::*;

    #[test]
    fn bad_addresses_are_errors_not_panics() {
        for bad in ["", "0000", "é000:3b:00.0", "0000:3b:00.0/", "0000:3B:00.0"] {
            assert!(parent_dir(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parent_dir("0000:3b:00.0").unwrap(),
            Path::new("devices/pci0000:00/0000:00:1b.0")
        );
    }
}

/// `sriov_offset` and `sriov_stride` as the kernel would report them, when
/// the PF's VFs sit where the kernel puts VFs (routing ID of VF n = the
/// PF's + offset + n x stride, same domain); `None` otherwise, or without
/// VFs, and then the files are not written.
fn vf_grid(pf: &PfSpec) -> Option<(u16, u16)> {
    let (dom, pf_rid) = presets::parse_rid(&pf.addr);
    let rids: Vec<(u16, u16)> = pf.vfs.iter().map(|v| presets::parse_rid(&v.addr)).collect();
    let first = rids.first()?.1;
    let offset = first.checked_sub(pf_rid).filter(|o| *o > 0)?;
    let stride = match rids.get(1) {
        Some((_, second)) => second.checked_sub(first).filter(|s| *s > 0)?,
        None => 1,
    };
    let on_grid = rids.iter().enumerate().all(|(n, (d, rid))| {
        *d == dom && u32::from(*rid) == u32::from(first) + n as u32 * u32::from(stride)
    });
    on_grid.then_some((offset, stride))
}
