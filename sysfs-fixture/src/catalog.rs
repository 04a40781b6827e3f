//! Named fixture trees: one per NIC and per situation the inventory must
//! handle. Tests run `fastpath list` on each and compare the whole output
//! with a golden file; the names are the golden files' names.

use std::io;
use std::path::Path;

use crate::presets::{cx6dx_ether, cx6dx_infiniband, e810, example_host, igb, x710};
use crate::{FakeSysfs, PfSpec};

/// A fixture: its name and the PFs it holds. Every fixture also holds a
/// non-SR-IOV SATA controller, which discovery must skip.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Name (`e810`, `two-numa`, ...), also the golden file's stem.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// The PFs written.
    pub pfs: Vec<PfSpec>,
}

impl Fixture {
    /// Writes the tree under `root` (which must not hold another tree).
    pub fn write(&self, root: &Path) -> io::Result<FakeSysfs> {
        let fs = FakeSysfs::new(root)?;
        for p in &self.pfs {
            fs.add_pf(p)?;
        }
        crate::presets::add_plain_device(&fs, "0000:00:1f.2", 0x8086, 0xa182, 0x010601)?;
        Ok(fs)
    }
}

/// Every named fixture.
pub fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "e810",
            about: "Intel E810: ice PF 8086:1592, four iavf VFs 8086:1889",
            pfs: vec![
                e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4)
                    .numa(0)
                    .iommu_groups(40),
            ],
        },
        Fixture {
            name: "x710",
            about: "Intel X710: i40e PF 8086:1572, three iavf VFs 8086:154c",
            pfs: vec![
                x710("0000:18:00.0", "ens2f0", "0000:18:02.0", 3)
                    .numa(0)
                    .iommu_groups(20),
            ],
        },
        Fixture {
            name: "cx6dx-ether",
            about: "ConnectX-6 Dx, both ports Ethernet: mlx5_core 15b3:101d, VFs 15b3:101e",
            pfs: vec![
                cx6dx_ether("0000:af:00.0", "ens3f0np0", "0000:af:00.2", 3, 0)
                    .numa(1)
                    .iommu_groups(80),
                cx6dx_ether("0000:af:00.1", "ens3f1np1", "0000:af:01.2", 2, 4)
                    .numa(1)
                    .iommu_groups(90),
            ],
        },
        Fixture {
            name: "cx6dx-infiniband",
            about: "ConnectX-6 Dx in InfiniBand mode: IPoIB netdevs (type 32)",
            pfs: vec![
                cx6dx_infiniband("0000:af:00.0", "ibs3f0", "0000:af:00.2", 3, 0)
                    .numa(1)
                    .iommu_groups(80),
            ],
        },
        Fixture {
            name: "igb",
            about: "QEMU igb: 8086:10c9 PF, igbvf VFs 8086:10ca, no NUMA, one VF unbound",
            pfs: vec![
                igb("0000:01:00.0", "enp1s0", "0000:01:10.0", 3)
                    .numa(-1)
                    .iommu_groups(10)
                    .unbound(2..3),
            ],
        },
        Fixture {
            name: "vfio",
            about: "E810 whose VFs are all bound to vfio-pci (no net/ directories)",
            pfs: vec![
                e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4)
                    .numa(0)
                    .iommu_groups(40)
                    .vfio(0..4),
            ],
        },
        Fixture {
            name: "numvfs-zero",
            about: "SR-IOV capable PFs with sriov_numvfs=0",
            pfs: vec![
                x710("0000:18:00.0", "ens2f0", "0000:18:02.0", 0)
                    .numa(0)
                    .iommu_groups(20),
                e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 0).numa(0),
            ],
        },
        Fixture {
            name: "two-numa",
            about: "the bundled example host (examples/sysfs): two NUMA nodes, every NIC",
            pfs: example_host(),
        },
    ]
}

/// The fixture called `name`.
pub fn fixture(name: &str) -> Option<Fixture> {
    fixtures().into_iter().find(|f| f.name == name)
}
