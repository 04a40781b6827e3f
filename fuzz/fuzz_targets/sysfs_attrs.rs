//! Discovery over a real (fake) sysfs tree whose attribute files hold
//! arbitrary bytes: the scan never panics, whatever the kernel (or a
//! corrupted tree) puts in vendor, device, numa_node, sriov_* and net/*.
#![no_main]

use std::sync::OnceLock;

use fastpath::inventory::scan;
use fastpath::sysfs::Sysfs;
use libfuzzer_sys::fuzz_target;
use sysfs_fixture::{FakeSysfs, presets};

const PF: &str = "0000:3b:00.0";
const VF: &str = "0000:3b:01.0";
const ATTRS: &[&str] = &["vendor", "device", "numa_node", "sriov_totalvfs", "sriov_numvfs", "class"];
const NET: &[&str] = &["address", "type", "operstate", "mtu"];

fn tree() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
        let fs = FakeSysfs::new(dir.path()).unwrap();
        fs.add_pf(&presets::e810(PF, "ens1f0", VF, 2).iommu_groups(10)).unwrap();
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let root = tree();
    // Split the input into one chunk per attribute file.
    let mut chunks = data.split(|&b| b == 0xff);
    for dev in [PF, VF] {
        let dir = root.join("bus/pci/devices").join(dev);
        for a in ATTRS {
            if let Some(c) = chunks.next() {
                let _ = std::fs::write(dir.join(a), c);
            }
        }
    }
    for n in NET {
        if let Some(c) = chunks.next() {
            let _ = std::fs::write(root.join("class/net/ens1f0v0").join(n), c);
        }
    }
    let _ = scan(&Sysfs::new(root));
});
