//! The NICs fastpath is tested against, as [`PfSpec`] constructors, plus
//! an example two-NUMA-node host that ships in the repo for demos.

use std::io;
use std::ops::Range;
use std::path::Path;

use crate::{FakeSysfs, NetSpec, PfSpec, VfSpec};

/// PCI class of an Ethernet controller.
pub const CLASS_ETHERNET: u32 = 0x020000;
/// PCI class of an InfiniBand controller.
pub const CLASS_INFINIBAND: u32 = 0x020700;

pub(crate) fn parse_rid(addr: &str) -> (u16, u16) {
    let dom = u16::from_str_radix(&addr[0..4], 16).unwrap_or(0);
    let bus = u16::from_str_radix(&addr[5..7], 16).unwrap_or(0);
    let dev = u16::from_str_radix(&addr[8..10], 16).unwrap_or(0);
    let func = u16::from_str_radix(&addr[11..12], 16).unwrap_or(0);
    (dom, bus << 8 | dev << 3 | func)
}

/// The address `i` functions after `first`, counting routing ids as the
/// kernel does for VFs (stride 1; rolls over into the next bus).
pub fn nth_addr(first: &str, i: usize) -> String {
    let (dom, rid) = parse_rid(first);
    let rid = rid as usize + i;
    format!(
        "{dom:04x}:{:02x}:{:02x}.{:x}",
        (rid >> 8) & 0xff,
        (rid >> 3) & 0x1f,
        rid & 7
    )
}

/// A locally administered MAC derived from a PCI address (unique per address).
pub fn mac_for(addr: &str, oui: [u8; 3]) -> String {
    let (dom, rid) = parse_rid(addr);
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        oui[0],
        oui[1],
        oui[2],
        dom & 0xff,
        rid >> 8,
        rid & 0xff
    )
}

const VF_OUI: [u8; 3] = [0x02, 0x00, 0x00];

#[allow(clippy::too_many_arguments)]
fn pf(
    addr: &str,
    ids: (u16, u16, u16),
    class: u32,
    driver: &str,
    netdev: NetSpec,
    total_vfs: u32,
    first_vf: &str,
    num_vfs: usize,
    vf_driver: &str,
    vf_stride: usize,
) -> PfSpec {
    let ib = netdev.arphrd == crate::INFINIBAND;
    let vfs = (0..num_vfs)
        .map(|i| {
            let vf = nth_addr(first_vf, i * vf_stride);
            let name = format!("{}v{i}", netdev.name);
            let mac = mac_for(&vf, VF_OUI);
            VfSpec {
                netdev: Some(if ib {
                    NetSpec::infiniband(&name, &mac)
                } else {
                    NetSpec::ether(&name, &mac)
                }),
                addr: vf,
                driver: Some(vf_driver.to_string()),
                iommu_group: None,
                rdma: None,
            }
        })
        .collect();
    PfSpec {
        addr: addr.into(),
        vendor: ids.0,
        device: ids.1,
        vf_device: ids.2,
        class,
        driver: Some(driver.into()),
        netdev: Some(netdev),
        numa_node: 0,
        total_vfs,
        iommu_group: None,
        rdma: None,
        vfs,
    }
}

/// Intel E810 port: ice PF 8086:1592, iavf VFs 8086:1889, 128 VFs max.
pub fn e810(addr: &str, ifname: &str, first_vf: &str, num_vfs: usize) -> PfSpec {
    let nd = NetSpec::ether(ifname, &mac_for(addr, [0xb4, 0x96, 0x91]));
    pf(
        addr,
        (0x8086, 0x1592, 0x1889),
        CLASS_ETHERNET,
        "ice",
        nd,
        128,
        first_vf,
        num_vfs,
        "iavf",
        1,
    )
}

/// Intel X710 port: i40e PF 8086:1572, iavf VFs 8086:154c, 64 VFs max.
pub fn x710(addr: &str, ifname: &str, first_vf: &str, num_vfs: usize) -> PfSpec {
    let nd = NetSpec::ether(ifname, &mac_for(addr, [0x3c, 0xfd, 0xfe]));
    pf(
        addr,
        (0x8086, 0x1572, 0x154c),
        CLASS_ETHERNET,
        "i40e",
        nd,
        64,
        first_vf,
        num_vfs,
        "iavf",
        1,
    )
}

/// Mellanox ConnectX-6 Dx in Ethernet mode: mlx5_core PF 15b3:101d, VFs
/// 15b3:101e, each with an RDMA device.
pub fn cx6dx_ether(
    addr: &str,
    ifname: &str,
    first_vf: &str,
    num_vfs: usize,
    rdma_base: u32,
) -> PfSpec {
    let nd = NetSpec::ether(ifname, &mac_for(addr, [0x0c, 0x42, 0xa1]));
    let mut p = pf(
        addr,
        (0x15b3, 0x101d, 0x101e),
        CLASS_ETHERNET,
        "mlx5_core",
        nd,
        16,
        first_vf,
        num_vfs,
        "mlx5_core",
        1,
    );
    p.rdma = Some(format!("mlx5_{rdma_base}"));
    for (i, vf) in p.vfs.iter_mut().enumerate() {
        vf.rdma = Some(format!("mlx5_{}", rdma_base as usize + 1 + i));
    }
    p
}

/// Mellanox ConnectX-6 Dx port in InfiniBand mode (IPoIB netdevs, type 32).
pub fn cx6dx_infiniband(
    addr: &str,
    ifname: &str,
    first_vf: &str,
    num_vfs: usize,
    rdma_base: u32,
) -> PfSpec {
    let nd = NetSpec::infiniband(ifname, &ib_mac(addr));
    let mut p = pf(
        addr,
        (0x15b3, 0x101d, 0x101e),
        CLASS_INFINIBAND,
        "mlx5_core",
        nd,
        16,
        first_vf,
        num_vfs,
        "mlx5_core",
        1,
    );
    p.rdma = Some(format!("mlx5_{rdma_base}"));
    for (i, vf) in p.vfs.iter_mut().enumerate() {
        if let Some(n) = vf.netdev.as_mut() {
            n.mac = ib_mac(&vf.addr);
        }
        vf.rdma = Some(format!("mlx5_{}", rdma_base as usize + 1 + i));
    }
    p
}

/// A 20-byte IPoIB hardware address as the kernel prints it.
fn ib_mac(addr: &str) -> String {
    let tail = mac_for(addr, [0x0c, 0x42, 0xa1]);
    format!("00:00:10:87:fe:80:00:00:00:00:00:00:{tail}:00:01")
}

/// Routing-id distance between consecutive 82576 VFs (its SR-IOV
/// capability's VF Stride; QEMU's igb has the same): VF 1 of PF 01:00.0 is
/// 01:10.2 when VF 0 is 01:10.0.
pub const IGB_VF_STRIDE: usize = 2;

/// QEMU's emulated Intel 82576: igb PF 8086:10c9, igbvf VFs 8086:10ca, 7 VFs
/// max, VF stride 2 (`first_vf` is VF 0; QEMU's is the PF's + 0x80).
pub fn igb(addr: &str, ifname: &str, first_vf: &str, num_vfs: usize) -> PfSpec {
    let nd = NetSpec::ether(ifname, &mac_for(addr, [0x52, 0x54, 0x00]));
    pf(
        addr,
        (0x8086, 0x10c9, 0x10ca),
        CLASS_ETHERNET,
        "igb",
        nd,
        7,
        first_vf,
        num_vfs,
        "igbvf",
        IGB_VF_STRIDE,
    )
}

impl PfSpec {
    /// Sets the NUMA node of the PF and its VFs (-1: none).
    pub fn numa(mut self, node: i32) -> Self {
        self.numa_node = node;
        self
    }

    /// Puts the PF in IOMMU group `base` and VF i in `base + 1 + i`.
    pub fn iommu_groups(mut self, base: u32) -> Self {
        self.iommu_group = Some(base);
        for (i, vf) in self.vfs.iter_mut().enumerate() {
            vf.iommu_group = Some(base + 1 + i as u32);
        }
        self
    }

    /// Binds VFs `range` to vfio-pci: no netdev, as the kernel shows them.
    pub fn vfio(self, range: Range<usize>) -> Self {
        self.rebind(range, Some("vfio-pci"))
    }

    /// Leaves VFs `range` bound to no driver.
    pub fn unbound(self, range: Range<usize>) -> Self {
        self.rebind(range, None)
    }

    fn rebind(mut self, range: Range<usize>, driver: Option<&str>) -> Self {
        for vf in &mut self.vfs[range] {
            vf.driver = driver.map(str::to_string);
            vf.netdev = None;
        }
        self
    }
}

/// A plain (non-SR-IOV) PCI function, to prove discovery skips it.
pub fn add_plain_device(
    fs: &FakeSysfs,
    addr: &str,
    vendor: u16,
    device: u16,
    class: u32,
) -> io::Result<()> {
    let spec = PfSpec {
        addr: addr.into(),
        vendor,
        device,
        vf_device: 0,
        class,
        driver: None,
        netdev: None,
        numa_node: -1,
        total_vfs: 0,
        iommu_group: None,
        rdma: None,
        vfs: Vec::new(),
    };
    fs.add_plain(&spec)
}

/// The example host that ships in `examples/sysfs`: two NUMA nodes, an
/// E810 (2 iavf + 2 vfio-pci VFs), an X710 with no VFs, a ConnectX-6 Dx
/// with one Ethernet and one InfiniBand port, and QEMU's igb without NUMA.
pub fn example_host() -> Vec<PfSpec> {
    vec![
        e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4)
            .numa(0)
            .iommu_groups(40)
            .vfio(2..4),
        x710("0000:18:00.0", "ens2f0", "0000:18:02.0", 0)
            .numa(0)
            .iommu_groups(20),
        cx6dx_ether("0000:af:00.0", "ens3f0np0", "0000:af:00.2", 2, 0)
            .numa(1)
            .iommu_groups(80),
        cx6dx_infiniband("0000:af:00.1", "ibs3f1", "0000:af:01.2", 2, 3)
            .numa(1)
            .iommu_groups(90),
        igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 2)
            .numa(-1)
            .iommu_groups(10),
    ]
}

/// Writes [`example_host`] (plus a SATA controller) under `root`: the
/// `two-numa` fixture of [`crate::catalog`].
pub fn write_example_host(root: &Path) -> io::Result<FakeSysfs> {
    crate::catalog::Fixture {
        name: "two-numa",
        about: "",
        pfs: example_host(),
    }
    .write(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vf_addresses_count_routing_ids_across_devices_and_buses() {
        assert_eq!(nth_addr("0000:3b:01.0", 0), "0000:3b:01.0");
        assert_eq!(nth_addr("0000:3b:01.0", 9), "0000:3b:02.1");
        assert_eq!(nth_addr("0000:3b:1f.7", 1), "0000:3c:00.0");
    }
}
