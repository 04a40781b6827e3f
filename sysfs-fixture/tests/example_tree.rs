//! The committed `examples/sysfs` is exactly what the `two-numa` preset
//! writes: same entries, same file contents, same link targets. After
//! changing a preset, regenerate it with
//! `rm -rf examples/sysfs && cargo run -p sysfs-fixture -- examples/sysfs`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let dir = root.join(rel);
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap();
        let rel = rel.join(e.file_name());
        let path = root.join(&rel);
        let ty = e.file_type().unwrap();
        if ty.is_symlink() {
            out.insert(rel, Entry::Link(fs::read_link(&path).unwrap()));
        } else if ty.is_dir() {
            out.insert(rel.clone(), Entry::Dir);
            walk(root, &rel, out);
        } else {
            out.insert(rel, Entry::File(fs::read(&path).unwrap()));
        }
    }
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

#[test]
fn committed_example_tree_equals_the_preset() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sysfs");
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("sysfs");
    sysfs_fixture::presets::write_example_host(&fresh).unwrap();
    let (want, got) = (tree(&fresh), tree(&committed));
    for (path, entry) in &want {
        assert_eq!(
            got.get(path),
            Some(entry),
            "examples/sysfs/{} differs from the preset; regenerate it",
            path.display()
        );
    }
    for path in got.keys() {
        assert!(
            want.contains_key(path),
            "examples/sysfs/{} is not written by the preset",
            path.display()
        );
    }
}

#[test]
fn every_named_fixture_writes_and_names_are_unique() {
    let fixtures = sysfs_fixture::catalog::fixtures();
    let mut names: Vec<_> = fixtures.iter().map(|f| f.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), fixtures.len());
    for f in fixtures {
        let tmp = tempfile::tempdir().unwrap();
        f.write(tmp.path()).unwrap();
        for pf in &f.pfs {
            let link = tmp.path().join("bus/pci/devices").join(&pf.addr);
            assert!(link.join("sriov_totalvfs").is_file(), "{}", f.name);
            for (i, vf) in pf.vfs.iter().enumerate() {
                let target = fs::read_link(link.join(format!("virtfn{i}"))).unwrap();
                assert_eq!(target, Path::new("..").join(&vf.addr), "{}", f.name);
            }
        }
    }
}
