//! Malformed sysfs: each damaged field is reported unknown, or the device
//! is skipped with a warning naming it; the scan never fails or panics.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{dev_dir, remove_any, replace_with_file, replace_with_link, write_malformed};
use fastpath::inventory::{self, Inventory};
use fastpath::pci::PciAddress;
use fastpath::sysfs::Sysfs;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::e810;

/// Log lines written during `f`, as `tracing` formats them.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, logs)
}

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn scan(root: &std::path::Path) -> (Inventory, String) {
    with_logs(|| inventory::scan(&Sysfs::new(root)).expect("scan succeeds"))
}

#[test]
fn every_damaged_field_is_unknown_and_named_in_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    write_malformed(tmp.path());
    let (inv, logs) = scan(tmp.path());

    let pfs: Vec<_> = inv.pfs.iter().map(|p| p.pci_address.to_string()).collect();
    assert_eq!(
        pfs,
        ["0000:18:00.0", "0000:3b:00.0"],
        "igb skipped: bad sriov_totalvfs"
    );
    assert!(
        logs.contains("0000:01:00.0") && logs.contains("lots"),
        "{logs}"
    );

    let (_, vf0) = inv.vf(addr("0000:3b:01.0")).unwrap();
    assert_eq!(vf0.numa_node, None);
    assert!(
        logs.contains("numa_node unknown") && logs.contains("zero"),
        "{logs}"
    );
    let (_, vf1) = inv.vf(addr("0000:3b:01.1")).unwrap();
    assert_eq!(vf1.ids, None);
    assert!(
        inv.vf(addr("0000:3b:01.2")).is_none(),
        "VF whose directory is gone"
    );
    assert!(
        logs.contains("0000:3b:01.2") && logs.contains("vanished"),
        "{logs}"
    );
    let (_, vf3) = inv.vf(addr("0000:3b:01.3")).unwrap();
    let nd = vf3.netdev.as_ref().unwrap();
    assert_eq!((nd.mtu, nd.operstate.as_deref()), (None, None));
    assert_eq!(nd.mac.as_deref(), Some("02:00:00:00:3b:0b"));
    assert!(
        logs.contains("virtfn9"),
        "non-address VF link named: {logs}"
    );
    let indexes: Vec<u32> = inv
        .pf(addr("0000:3b:00.0"))
        .unwrap()
        .vfs
        .iter()
        .map(|v| v.index)
        .collect();
    assert_eq!(indexes, [0, 1, 3], "virtfn+1 / virtfn01 are not VF links");

    let x710 = inv.pf(addr("0000:18:00.0")).unwrap();
    assert_eq!(
        (x710.numa_node, x710.num_vfs, x710.total_vfs),
        (None, None, 64)
    );
    assert_eq!(x710.vfs[0].iommu_group, None);
    assert_eq!(x710.vfs[1].driver, None, "dangling driver link");
    assert!(
        logs.contains("driver = gone") || logs.contains("gone"),
        "{logs}"
    );
    assert!(
        logs.contains("not-an-address") && logs.contains("0000:zz:00.0"),
        "{logs}"
    );
}

#[test]
fn numa_node_minus_one_is_no_affinity_without_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 1).numa(-1))
        .unwrap();
    let (inv, logs) = scan(tmp.path());
    assert_eq!(inv.pfs[0].numa_node, None);
    assert_eq!(inv.pfs[0].vfs[0].numa_node, None);
    assert!(!logs.contains("numa"), "{logs}");
}

#[test]
fn garbage_in_every_attribute_of_every_device_never_panics() {
    let garbage: [&[u8]; 6] = [
        b"",
        b"\n",
        b"-",
        b"0x\n",
        &[0xff; 9],
        b"99999999999999999999\n",
    ];
    for g in garbage {
        let tmp = tempfile::tempdir().unwrap();
        let fs = FakeSysfs::new(tmp.path()).unwrap();
        fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2).iommu_groups(4))
            .unwrap();
        for dev in ["0000:3b:00.0", "0000:3b:01.0", "0000:3b:01.1"] {
            let dir = dev_dir(tmp.path(), dev);
            for attr in ["vendor", "device", "class", "numa_node", "sriov_numvfs"] {
                if dir.join(attr).exists() {
                    replace_with_file(&dir.join(attr), g);
                }
            }
            for link in ["driver", "iommu_group"] {
                replace_with_file(&dir.join(link), g);
            }
        }
        let (inv, _) = scan(tmp.path());
        let pf = &inv.pfs[0];
        assert_eq!(pf.vfs.len(), 2, "{g:?}");
        assert!(pf.ids.is_none() && pf.driver.is_none() && pf.numa_node.is_none());
        for vf in &pf.vfs {
            assert!(vf.ids.is_none() && vf.driver.is_none() && vf.iommu_group.is_none());
        }
    }
}

#[test]
fn unreadable_files_and_directories_in_place_of_files_are_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 1))
        .unwrap();
    let vf = dev_dir(tmp.path(), "0000:3b:01.0");
    // Without the PF's `sriov_vf_device` the VF's own id files are read.
    remove_any(&dev_dir(tmp.path(), "0000:3b:00.0").join("sriov_vf_device"));
    // We run as root, so mode bits do not stop reads: a directory, a link
    // loop and a dangling link are what fails to read here.
    remove_any(&vf.join("vendor"));
    std::fs::create_dir(vf.join("vendor")).unwrap();
    replace_with_link(&vf.join("device"), "device");
    replace_with_link(&vf.join("numa_node"), "../nowhere/numa_node");
    let (inv, logs) = scan(tmp.path());
    let vf = &inv.pfs[0].vfs[0];
    assert_eq!((vf.ids, vf.numa_node), (None, None));
    assert_eq!(vf.driver.as_deref(), Some("iavf"));
    assert!(logs.contains("vendor unknown"), "{logs}");
}

#[test]
fn vf_ids_come_from_the_pf_when_it_gives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2))
        .unwrap();
    // The kernel gives every VF the PF's vendor and `sriov_vf_device`; the
    // VF's own files are not read when the PF has it.
    let vf0 = dev_dir(tmp.path(), "0000:3b:01.0");
    replace_with_file(&vf0.join("vendor"), b"garbage\n");
    remove_any(&vf0.join("device"));
    let (inv, logs) = scan(tmp.path());
    for vf in &inv.pfs[0].vfs {
        let ids = vf.ids.expect("ids from the PF");
        assert_eq!((ids.vendor.0, ids.device.0), (0x8086, 0x1889));
    }
    assert!(!logs.contains("vendor unknown"), "{logs}");
    // A PF that does not say falls back to each VF's files.
    remove_any(&dev_dir(tmp.path(), "0000:3b:00.0").join("sriov_vf_device"));
    let (inv, logs) = scan(tmp.path());
    assert_eq!(inv.pfs[0].vfs[0].ids, None);
    assert!(inv.pfs[0].vfs[1].ids.is_some());
    assert!(logs.contains("vendor unknown"), "{logs}");
}

#[test]
fn a_pf_whose_vfs_all_vanished_is_listed_without_them() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    let spec = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 3);
    fs.add_pf(&spec).unwrap();
    // The VFs' directories are gone but the PF's links and sriov_numvfs
    // are not updated yet: the window of a `sriov_numvfs=0` mid-scan.
    for vf in &spec.vfs {
        remove_any(&dev_dir(tmp.path(), &vf.addr));
    }
    let (inv, logs) = scan(tmp.path());
    assert_eq!(inv.pfs.len(), 1);
    assert!(inv.pfs[0].vfs.is_empty());
    assert_eq!(inv.pfs[0].num_vfs, Some(3));
    assert_eq!(logs.matches("vanished").count(), 3, "{logs}");

    // And once the kernel has finished removing them.
    fs.remove_vfs(&spec).unwrap();
    let (inv, _) = scan(tmp.path());
    assert_eq!((inv.pfs[0].num_vfs, inv.pfs[0].vfs.len()), (Some(0), 0));
}

#[test]
fn only_an_unreadable_device_list_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = inventory::scan(&Sysfs::new(tmp.path())).unwrap_err();
    assert!(err.to_string().contains("bus/pci/devices"), "{err}");
}

#[test]
fn threaded_scan_equals_single_threaded_scan_and_keeps_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    write_malformed(tmp.path());
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    for i in 0..4 {
        let bus = 0x60 + 2 * i;
        fs.add_pf(&e810(
            &format!("0000:{bus:02x}:00.0"),
            &format!("ens{i}f1"),
            &format!("0000:{bus:02x}:01.0"),
            40,
        ))
        .unwrap();
    }
    let sysfs = Sysfs::new(tmp.path());
    let (one, logs_one) = with_logs(|| inventory::scan_with_threads(&sysfs, 1).unwrap());
    assert_eq!(one.vfs().count(), 3 + 2 + 4 * 40);
    for threads in [2, 3, 8] {
        let (many, logs) = with_logs(|| inventory::scan_with_threads(&sysfs, threads).unwrap());
        assert_eq!(many, one, "{threads} threads");
        assert_eq!(logs.lines().count(), logs_one.lines().count(), "{logs}");
    }
}

#[test]
fn vfs_destroyed_and_recreated_during_scans_never_break_a_scan() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    let spec = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 16).iommu_groups(40);
    fs.add_pf(&spec).unwrap();
    let stop = AtomicBool::new(false);
    let sysfs = Sysfs::new(tmp.path());
    std::thread::scope(|s| {
        // The kernel's sriov_numvfs=0 then =16, over and over.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                fs.remove_vfs(&spec).unwrap();
                for (i, vf) in spec.vfs.iter().enumerate() {
                    fs.add_vf(&spec, i, vf).unwrap();
                }
                fs.write_attr(&spec.addr, "sriov_numvfs", "16\n").unwrap();
            }
        });
        for _ in 0..200 {
            let inv = inventory::scan(&sysfs).expect("scan succeeds while VFs churn");
            let pf = inv
                .pf(addr("0000:3b:00.0"))
                .expect("the PF is always there");
            for vf in &pf.vfs {
                let want = &spec.vfs[vf.index as usize];
                assert_eq!(vf.pci_address.to_string(), want.addr);
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn netdevs_are_found_with_or_without_class_net() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(tmp.path()).unwrap();
    fs.add_pf(&e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 3).vfio(2..3))
        .unwrap();
    let (whole, _) = scan(tmp.path());
    assert_eq!(
        whole.pfs[0].vfs[1].netdev.as_ref().unwrap().name,
        "ens1f0v1"
    );
    // One class/net link missing: that VF's net/ is listed instead.
    remove_any(&tmp.path().join("class/net/ens1f0v1"));
    assert_eq!(scan(tmp.path()).0, whole);
    // No class/net at all: every device's net/ is listed, with a warning.
    remove_any(&tmp.path().join("class/net"));
    let (inv, logs) = scan(tmp.path());
    assert_eq!(inv, whole);
    assert!(logs.contains("class/net"), "{logs}");
}
