//! `fastpath pools` on the bundled example tree: a dry run that prints
//! the assignment with reasons, as text and JSON, for device-plugin and
//! DRA pools.

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
        text.contains("intel.com/dpdk (device plugin): 2 devices (2 healthy)"),
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
    assert_eq!(v["draPools"], serde_json::json!([]));
    assert_eq!(v["overlaps"], serde_json::json!([]));
}

const BOTH: &str = r#"{
  "resourceList": [{"resourceName": "netdev", "selectors": {"drivers": ["iavf"]}}],
  "draPools": [{"resourceName": "dra_vf", "selectors": {"drivers": ["vfio-pci"]}}]
}"#;

#[test]
fn dra_pools_are_shown_beside_device_plugin_pools_with_their_mode() {
    let (ok, text, _) = run(BOTH, false);
    assert!(ok, "{text}");
    for want in [
        "intel.com/netdev (device plugin): 2 devices (2 healthy)",
        "intel.com/dra_vf (DRA): 2 devices (2 healthy)",
        "  0000:3b:01.0 -> intel.com/netdev (device plugin)\n",
        "  0000:3b:01.2 -> intel.com/dra_vf (DRA)\n",
        "      draPools[0] (intel.com/dra_vf) selectors[0] match",
        "      draPools[0] (intel.com/dra_vf): selectors[0]: driver iavf not in drivers [vfio-pci]",
        "      resourceList[0] (intel.com/netdev): selectors[0]: driver vfio-pci not in drivers [iavf]",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    assert!(!text.contains("error:"), "{text}");
    // The DRA pool's block comes after the device-plugin pool's.
    let dp = text.find("intel.com/netdev (device plugin)").unwrap();
    let dra = text.find("intel.com/dra_vf (DRA)").unwrap();
    assert!(dp < dra);

    let (ok, json, _) = run(BOTH, true);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["pools"][0]["config"]["resourceName"], "netdev");
    assert_eq!(v["draPools"][0]["config"]["resourceName"], "dra_vf");
    let dra_pcis: Vec<&str> = v["draPools"][0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pci"].as_str().unwrap())
        .collect();
    assert_eq!(dra_pcis, ["0000:3b:01.2", "0000:3b:01.3"]);
    let by_pci = |pci: &str| {
        v["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["pci"] == pci)
            .unwrap()
            .clone()
    };
    let a = by_pci("0000:3b:01.2");
    assert_eq!(a["mode"], "dra");
    assert_eq!(a["draPool"], "intel.com/dra_vf");
    assert_eq!(a["pool"], serde_json::Value::Null);
    let a = by_pci("0000:3b:01.0");
    assert_eq!(a["mode"], "devicePlugin");
    assert_eq!(a["pool"], "intel.com/netdev");
    assert_eq!(a["draPool"], serde_json::Value::Null);
    assert_eq!(v["overlaps"], serde_json::json!([]));
}

#[test]
fn a_device_in_both_lists_fails_naming_the_device_and_both_pools() {
    let cfg = r#"{
      "resourceList": [{"resourceName": "dpdk", "selectors": {"drivers": ["vfio-pci"]}}],
      "draPools": [{"resourceName": "dra_vf", "selectors": {"drivers": ["vfio-pci"]}}]
    }"#;
    let (ok, text, _) = run(cfg, false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("  0000:3b:01.2 -> intel.com/dpdk (device plugin) and intel.com/dra_vf (DRA): CONFIG ERROR"),
        "{text}"
    );
    for pci in ["0000:3b:01.2", "0000:3b:01.3"] {
        let want = format!(
            "error: device {pci} is selected by resourceList entry \"intel.com/dpdk\" and by draPools entry \"dra_vf\""
        );
        assert!(text.contains(&want), "{want} in\n{text}");
    }
    let (ok, json, _) = run(cfg, true);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let o = &v["overlaps"][0];
    assert_eq!(o["device"], "0000:3b:01.2");
    assert_eq!(o["devicePluginPool"], "intel.com/dpdk");
    assert_eq!(o["draPool"], "dra_vf");
    assert!(
        o["error"]
            .as_str()
            .unwrap()
            .contains("narrow one of the two selectors")
    );
    assert_eq!(v["overlaps"].as_array().unwrap().len(), 2);
    let a = v["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["pci"] == "0000:3b:01.2")
        .unwrap();
    assert_eq!(a["mode"], serde_json::Value::Null);
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
