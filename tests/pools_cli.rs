//! `fastpath pools` on the bundled example tree: a dry run that prints
//! the assignment with reasons, as text and JSON.

use std::path::Path;
use std::process::Command;

fn run(config: &str, json: bool) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, config).unwrap();
    std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
    std::fs::write(dir.path().join("proc/net/route"), "Iface\n").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sysfs");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fastpath"));
    cmd.arg("--sysfs-root")
        .arg(root)
        .arg("pools")
        .arg("--config")
        .arg(&cfg)
        .arg("--proc-root")
        .arg(dir.path().join("proc"));
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_pools_and_reasons() {
    let cfg = r#"{"resourceList":[{"resourceName":"dpdk","selectors":{"drivers":["vfio-pci"]}}]}"#;
    let (ok, text, _) = run(cfg, false);
    assert!(ok);
    assert!(
        text.contains("intel.com/dpdk: 2 devices (2 healthy)"),
        "{text}"
    );
    assert!(text.contains("0000:3b:01.0 -> (none)"), "{text}");
    assert!(
        text.contains("driver iavf not in drivers [vfio-pci]"),
        "{text}"
    );
    let (ok, json, _) = run(cfg, true);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["pools"][0]["devices"][0]["pci"], "0000:3b:01.2");
    let a = v["assignments"].as_array().unwrap();
    assert!(a.iter().any(|a| a["pool"] == "intel.com/dpdk"));
}

#[test]
fn an_invalid_file_fails_naming_the_field() {
    let (ok, _, err) = run(
        r#"{"resourceList":[{"resourceName":"a/b","selectors":{}}]}"#,
        false,
    );
    assert!(!ok);
    assert!(
        err.contains("resourceList[0].resourceName: \"a/b\" must match"),
        "{err}"
    );
}
