//! The DRA overlay's pool config parses with fastpath's own parser and,
//! on a host like the one it is written for (ens1f0 with 16 VFs), puts
//! every VF in exactly one mode.

use fastpath::pools::{self, FactNeeds, HostFacts, Reasons};
use fastpath::procfs::Procfs;
use fastpath::sysfs::Sysfs;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::e810;

#[test]
fn the_dra_overlay_config_splits_the_vfs_between_the_modes() {
    let text = std::fs::read_to_string("deploy/overlays/dra/configmap.yaml").unwrap();
    let cm: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let config = cm["data"]["config.json"].as_str().unwrap();
    let cfg = pools::config::parse(config, "intel.com").unwrap();
    assert_eq!(cfg.dra_pools.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
    fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 16))
        .unwrap();
    std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
    std::fs::write(dir.path().join("proc/net/route"), "Iface\tDestination\n").unwrap();
    let sysfs = Sysfs::new(dir.path().join("sys"));
    let inv = fastpath::inventory::scan(&sysfs).unwrap();
    let procfs = Procfs::new(dir.path().join("proc"));
    let host = HostFacts::gather(&sysfs, &procfs, &inv, FactNeeds::of(&cfg));
    let m = pools::modes::assign_modes(&inv, &cfg, &host, Reasons::Skip).unwrap();
    let n = |p: &pools::Pools| p.pools.iter().map(|p| p.devices.len()).sum::<usize>();
    assert_eq!((n(&m.device_plugin), n(&m.dra)), (8, 8));
}
