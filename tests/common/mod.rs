//! Shared helpers of the integration tests: run `fastpath list` through the
//! library entry point, compare with golden files, and build the malformed
//! tree the bad-input tests use.

#![allow(dead_code)] // each test crate uses a different subset

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::{e810, igb, x710};

/// Env var that makes golden tests rewrite the files instead of comparing.
pub const UPDATE_GOLDEN: &str = "FASTPATH_UPDATE_GOLDEN";

/// Runs `fastpath --sysfs-root <root> <args...>` through `cli::run_to`.
pub fn run_cli(root: &Path, args: &[&str]) -> (ExitCode, String) {
    let mut argv = vec![
        "fastpath".to_string(),
        "--sysfs-root".to_string(),
        root.display().to_string(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli = fastpath::cli::Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    let code = fastpath::cli::run_to(cli, &mut out).expect("command succeeds");
    (code, String::from_utf8(out).expect("output is UTF-8"))
}

/// `tests/golden/<file>`.
pub fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

/// Compares `actual` with `tests/golden/<file>`, or rewrites the file when
/// `FASTPATH_UPDATE_GOLDEN=1` (review the diff before committing).
pub fn assert_golden(file: &str, actual: &str) {
    let path = golden_path(file);
    if std::env::var_os(UPDATE_GOLDEN).is_some_and(|v| v == "1") {
        fs::write(&path, actual).unwrap();
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with {UPDATE_GOLDEN}=1 cargo test --test list_golden",
            path.display()
        )
    });
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| want.lines().count().min(actual.lines().count()));
        panic!(
            "output differs from {} at line {}:\n--- golden\n{}\n--- actual\n{}\n\
             (if the change is intended: {UPDATE_GOLDEN}=1 cargo test, then review git diff)",
            path.display(),
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// Replaces whatever is at `path` (file, link or directory) with `content`.
pub fn replace_with_file(path: &Path, content: &[u8]) {
    remove_any(path);
    fs::write(path, content).unwrap();
}

/// Replaces whatever is at `path` with a symlink to `target`.
pub fn replace_with_link(path: &Path, target: &str) {
    remove_any(path);
    symlink(target, path).unwrap();
}

/// Removes a file, link or directory tree without following links.
pub fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// A device's resolved directory in a fixture tree.
pub fn dev_dir(root: &Path, addr: &str) -> PathBuf {
    fs::canonicalize(root.join("bus/pci/devices").join(addr)).unwrap()
}

/// A tree with every kind of damage the scan must survive, each on its own
/// device so the expected output says which field became unknown:
///
/// - E810 PF 0000:3b:00.0: no `sriov_vf_device` (so its VFs' own id files
///   are read); VF0 `numa_node` garbage; VF1 `vendor` missing;
///   VF2 directory gone (dangling `virtfn2`); VF3 netdev `mtu` is a
///   directory and `operstate` not UTF-8; an extra `virtfn9` pointing at a
///   name that is not an address; `virtfn+1` and `virtfn01` (not VF links).
/// - X710 PF 0000:18:00.0: `numa_node` -1, `sriov_numvfs` garbage, VF0's
///   `iommu_group` link names no number, VF1's `driver` link dangles.
/// - igb PF 0000:01:00.0: `sriov_totalvfs` garbage, so it is skipped.
/// - `bus/pci/devices` holds `not-an-address`, `0000:zz:00.0` and a
///   dangling link `0000:99:00.0`.
pub fn write_malformed(root: &Path) -> FakeSysfs {
    let fs_ = FakeSysfs::new(root).unwrap();
    fs_.add_pf(
        &e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4)
            .numa(0)
            .iommu_groups(40),
    )
    .unwrap();
    fs_.add_pf(
        &x710("0000:18:00.0", "ens2f0", "0000:18:02.0", 2)
            .numa(0)
            .iommu_groups(20),
    )
    .unwrap();
    fs_.add_pf(&igb("0000:01:00.0", "enp1s0", "0000:01:10.0", 2))
        .unwrap();

    let e810_dir = dev_dir(root, "0000:3b:00.0");
    replace_with_file(&dev_dir(root, "0000:3b:01.0").join("numa_node"), b"zero\n");
    remove_any(&e810_dir.join("sriov_vf_device"));
    remove_any(&dev_dir(root, "0000:3b:01.1").join("vendor"));
    remove_any(&dev_dir(root, "0000:3b:01.2"));
    let vf3_net = dev_dir(root, "0000:3b:01.3").join("net/ens1f0v3");
    replace_with_file(&vf3_net.join("operstate"), &[0xff, 0xfe, b'\n']);
    remove_any(&vf3_net.join("mtu"));
    fs::create_dir(vf3_net.join("mtu")).unwrap();
    replace_with_link(&e810_dir.join("virtfn9"), "../not-a-vf");
    replace_with_link(&e810_dir.join("virtfn+1"), "../0000:3b:01.1");
    replace_with_link(&e810_dir.join("virtfn01"), "../0000:3b:01.1");

    fs_.write_attr("0000:18:00.0", "numa_node", "-1\n").unwrap();
    fs_.write_attr("0000:18:00.0", "sriov_numvfs", "two\n")
        .unwrap();
    replace_with_link(
        &dev_dir(root, "0000:18:02.0").join("iommu_group"),
        "../../../../kernel/iommu_groups/twenty-one",
    );
    replace_with_link(
        &dev_dir(root, "0000:18:02.1").join("driver"),
        "../../../../bus/pci/drivers/gone",
    );

    fs_.write_attr("0000:01:00.0", "sriov_totalvfs", "lots\n")
        .unwrap();

    let devices = root.join("bus/pci/devices");
    fs::create_dir(devices.join("not-an-address")).unwrap();
    symlink("../../../devices/x", devices.join("0000:zz:00.0")).unwrap();
    symlink(
        "../../../devices/pci0000:00/0000:00:19.0/0000:99:00.0",
        devices.join("0000:99:00.0"),
    )
    .unwrap();
    fs_
}
