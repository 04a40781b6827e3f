//! `fastpath list` and `fastpath list --json` on every fixture, compared
//! whole with `tests/golden/<fixture>.{txt,json}`. To accept an intended
//! change: `FASTPATH_UPDATE_GOLDEN=1 cargo test --test list_golden`, then
//! review `git diff tests/golden`.

mod common;

use std::process::{Command, ExitCode};

use common::{assert_golden, run_cli, write_malformed};
use sysfs_fixture::catalog;

#[test]
fn list_table_and_json_match_golden_on_every_fixture() {
    for fixture in catalog::fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        fixture.write(tmp.path()).unwrap();
        let (code, table) = run_cli(tmp.path(), &["list"]);
        assert_eq!(code, ExitCode::SUCCESS, "{}", fixture.name);
        assert_golden(&format!("{}.txt", fixture.name), &table);
        let (code, json) = run_cli(tmp.path(), &["list", "--json"]);
        assert_eq!(code, ExitCode::SUCCESS, "{}", fixture.name);
        assert_golden(&format!("{}.json", fixture.name), &json);
    }
}

#[test]
fn list_on_a_malformed_tree_matches_golden() {
    let tmp = tempfile::tempdir().unwrap();
    write_malformed(tmp.path());
    assert_golden("malformed.txt", &run_cli(tmp.path(), &["list"]).1);
    assert_golden(
        "malformed.json",
        &run_cli(tmp.path(), &["list", "--json"]).1,
    );
}

#[test]
fn list_on_a_tree_without_sriov_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = sysfs_fixture::FakeSysfs::new(tmp.path()).unwrap();
    sysfs_fixture::presets::add_plain_device(&fs, "0000:00:1f.2", 0x8086, 0xa182, 0x010601)
        .unwrap();
    assert_golden("empty.txt", &run_cli(tmp.path(), &["list"]).1);
    assert_golden("empty.json", &run_cli(tmp.path(), &["list", "--json"]).1);
}

#[test]
fn the_binary_lists_the_bundled_example_tree() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sysfs");
    let bin = env!("CARGO_BIN_EXE_fastpath");
    let out = Command::new(bin)
        .args(["--sysfs-root", example, "list"])
        .env_remove("FASTPATH_SYSFS_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_golden("two-numa.txt", &String::from_utf8(out.stdout).unwrap());

    // The root also comes from the environment.
    let out = Command::new(bin)
        .args(["list", "--json"])
        .env("FASTPATH_SYSFS_ROOT", example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_golden("two-numa.json", &String::from_utf8(out.stdout).unwrap());
}

#[test]
fn the_binary_fails_clearly_without_a_sysfs_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-sysfs-here");
    let out = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .arg("--sysfs-root")
        .arg(&missing)
        .arg("list")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&missing.join("bus/pci/devices").display().to_string()),
        "{err}"
    );
}

/// Every key in the JSON output is documented in docs/JSON.md and every
/// documented field occurs in some golden output.
#[test]
fn json_schema_doc_lists_exactly_the_fields_printed() {
    fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let mut printed = std::collections::BTreeSet::new();
    for name in catalog::fixtures()
        .iter()
        .map(|f| f.name)
        .chain(["malformed"])
    {
        let text = std::fs::read_to_string(common::golden_path(&format!("{name}.json"))).unwrap();
        keys(&serde_json::from_str(&text).unwrap(), &mut printed);
    }
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/JSON.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(printed, documented);
}
