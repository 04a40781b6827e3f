//! Property tests over randomly generated fake trees: random NICs, VF
//! counts, drivers and NUMA nodes, then random damage to attribute files,
//! links and VF directories. The scan never panics, and it reports exactly
//! the VFs whose `virtfnN` link still resolves, under their PF, with index N.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use fastpath::inventory;
use fastpath::pci::PciAddress;
use fastpath::sysfs::Sysfs;
use proptest::prelude::*;
use sysfs_fixture::{FakeSysfs, PfSpec, presets};

#[derive(Debug, Clone)]
struct PfChoice {
    nic: u8,
    vfs: usize,
    vfio: usize,
    numa: i32,
}

fn pf_spec(i: usize, c: &PfChoice) -> PfSpec {
    let bus = 0x20 + 2 * i;
    let (addr, first) = (
        format!("0000:{bus:02x}:00.0"),
        format!("0000:{bus:02x}:01.0"),
    );
    let name = format!("ens{i}f0");
    let spec = match c.nic % 5 {
        0 => presets::e810(&addr, &name, &first, c.vfs),
        1 => presets::x710(&addr, &name, &first, c.vfs),
        2 => presets::cx6dx_ether(&addr, &name, &first, c.vfs, 0),
        3 => presets::cx6dx_infiniband(&addr, &name, &first, c.vfs, 0),
        _ => presets::igb(&addr, &name, &first, c.vfs),
    };
    let vfio = c.vfio.min(c.vfs);
    spec.numa(c.numa).iommu_groups(100 * i as u32).vfio(0..vfio)
}

#[derive(Debug, Clone)]
enum Damage {
    Delete(usize),
    Garbage(usize, Vec<u8>),
    DirInstead(usize),
    Dangle(usize),
    RemoveDir(usize),
    JunkEntry(String),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Delete),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..24),
                "[-0-9a-fx \\n]{0,12}".prop_map(String::into_bytes),
            ]
        )
            .prop_map(|(i, g)| Damage::Garbage(i, g)),
        any::<usize>().prop_map(Damage::DirInstead),
        any::<usize>().prop_map(Damage::Dangle),
        any::<usize>().prop_map(Damage::RemoveDir),
        "[0-9a-z:.]{1,14}".prop_map(Damage::JunkEntry),
    ]
}

/// Every file and link under `root`, and every device directory, sorted.
fn entries(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut leaves, mut dirs) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                if e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<PciAddress>().is_ok())
                {
                    dirs.push(e.path());
                }
                stack.push(e.path());
            } else {
                leaves.push(e.path());
            }
        }
    }
    leaves.sort();
    dirs.sort();
    (leaves, dirs)
}

/// Applies one damage to an entry of the tree as first written (the entry
/// may already be gone: then the damage does what it still can).
fn apply(root: &Path, leaves: &[PathBuf], dirs: &[PathBuf], d: &Damage) {
    let pick = |v: &[PathBuf], i: usize| v.get(i % v.len().max(1)).cloned();
    let clear = |p: &Path| match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    };
    // Errors are ignored: a parent removed by an earlier damage is fine.
    let _ = match d {
        Damage::Delete(i) => pick(leaves, *i).map_or(Ok(()), |p| clear(&p)),
        Damage::Garbage(i, g) => {
            pick(leaves, *i).map_or(Ok(()), |p| clear(&p).and_then(|()| fs::write(&p, g)))
        }
        Damage::DirInstead(i) => {
            pick(leaves, *i).map_or(Ok(()), |p| clear(&p).and_then(|()| fs::create_dir(&p)))
        }
        Damage::Dangle(i) => pick(leaves, *i).map_or(Ok(()), |p| {
            clear(&p).and_then(|()| std::os::unix::fs::symlink("../gone/0000:ff:1f.7", &p))
        }),
        Damage::RemoveDir(i) => pick(dirs, *i).map_or(Ok(()), |p| clear(&p)),
        Damage::JunkEntry(name) => {
            let p = root.join("bus/pci/devices").join(name);
            match fs::symlink_metadata(&p) {
                Err(_) => fs::write(p, "junk"),
                Ok(_) => Ok(()),
            }
        }
    };
}

/// What the tree says, read with plain std::fs and none of fastpath's
/// sysfs code: the PFs whose `sriov_totalvfs` parses, and for each the
/// (index, address) of every `virtfnN` link whose target directory exists.
fn expected(root: &Path, pfs: &[PfSpec]) -> BTreeSet<(String, u32, String)> {
    let mut out = BTreeSet::new();
    for pf in pfs {
        let link = root.join("bus/pci/devices").join(&pf.addr);
        let total = fs::read(link.join("sriov_totalvfs")).ok().and_then(|b| {
            let s = String::from_utf8(b).ok()?;
            s.trim_end_matches(['\n', '\0', ' ']).parse::<u32>().ok()
        });
        if total.is_none() {
            continue;
        }
        out.insert((pf.addr.clone(), u32::MAX, String::new()));
        let Ok(pf_dir) = fs::canonicalize(&link) else {
            continue;
        };
        for e in fs::read_dir(&pf_dir).into_iter().flatten().flatten() {
            let name = e.file_name().into_string().unwrap();
            let Some(n) = name.strip_prefix("virtfn") else {
                continue;
            };
            if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
                continue;
            }
            let Ok(index) = n.parse::<u32>() else {
                continue;
            };
            let Ok(target) = fs::read_link(e.path()) else {
                continue;
            };
            let Some(vf) = target.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if vf.parse::<PciAddress>().is_ok() && pf_dir.join(&target).is_dir() {
                out.insert((pf.addr.clone(), index, vf.to_string()));
            }
        }
    }
    out
}

fn reported(inv: &inventory::Inventory) -> BTreeSet<(String, u32, String)> {
    let mut out = BTreeSet::new();
    for pf in &inv.pfs {
        out.insert((pf.pci_address.to_string(), u32::MAX, String::new()));
        for vf in &pf.vfs {
            assert_eq!(vf.pf, pf.pci_address);
            out.insert((
                pf.pci_address.to_string(),
                vf.index,
                vf.pci_address.to_string(),
            ));
        }
    }
    out
}

/// A temp dir on tmpfs when there is one: hundreds of trees are written.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

fn pf_choice() -> impl Strategy<Value = PfChoice> {
    (0u8..5, 0usize..7, 0usize..4, -1i32..3).prop_map(|(nic, vfs, vfio, numa)| PfChoice {
        nic,
        vfs,
        vfio,
        numa,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn scan_reports_exactly_the_vfs_whose_links_resolve(
        choices in proptest::collection::vec(pf_choice(), 0..5),
        damages in proptest::collection::vec(damage(), 0..12),
    ) {
        let tmp = scratch_dir();
        let fs_ = FakeSysfs::new(tmp.path()).unwrap();
        let specs: Vec<PfSpec> = choices.iter().enumerate().map(|(i, c)| pf_spec(i, c)).collect();
        for s in &specs {
            fs_.add_pf(s).unwrap();
        }
        let sysfs = Sysfs::new(tmp.path());
        // Undamaged, every PF and VF is reported exactly as specified.
        let inv = inventory::scan(&sysfs).unwrap();
        prop_assert_eq!(inv.pfs.len(), specs.len());
        for (pf, spec) in inv.pfs.iter().zip(&specs) {
            prop_assert_eq!(pf.pci_address.to_string(), spec.addr.clone());
            prop_assert_eq!(pf.vfs.len(), spec.vfs.len());
            for (i, (vf, vs)) in pf.vfs.iter().zip(&spec.vfs).enumerate() {
                prop_assert_eq!(vf.index as usize, i);
                prop_assert_eq!(vf.pci_address.to_string(), vs.addr.clone());
                prop_assert_eq!(vf.driver.clone(), vs.driver.clone());
                prop_assert_eq!(vf.netdev.is_some(), vs.netdev.is_some());
            }
        }
        let (leaves, dirs) = entries(tmp.path());
        for d in &damages {
            apply(tmp.path(), &leaves, &dirs, d);
        }
        let inv = inventory::scan(&sysfs).unwrap();
        prop_assert_eq!(reported(&inv), expected(tmp.path(), &specs));
        // The renderers take whatever the scan found.
        let _ = inventory::render_table(&inv);
        let _ = serde_json::to_string(&inv).unwrap();
    }
}
