//! A corpus of bad configurations (tests/data/cni-bad-configs.json), each
//! with the error ADD must give: the right CNI code, a message naming the
//! field and value, and nothing changed on the node.

mod cni_host;

use cni_host::{Host, host_link, ns_link};
use serde_json::Value;

#[test]
fn every_bad_config_gets_its_error_and_changes_nothing() {
    let corpus: Vec<Value> =
        serde_json::from_str(include_str!("data/cni-bad-configs.json")).unwrap();
    assert!(corpus.len() >= 25, "the corpus has {} cases", corpus.len());
    let mut h = Host::new("bad", 2);
    let fake = sysfs_fixture::FakeSysfs::new(h.sysfs.path()).unwrap();
    sysfs_fixture::presets::add_plain_device(&fake, "0000:00:1f.6", 0x8086, 0x15bb, 0x020000)
        .unwrap();
    let pod = h.pod(0);
    let before = host_link(&h.vfs[0].ifname).unwrap();
    let mut failures = Vec::new();
    for case in &corpus {
        let name = case["case"].as_str().unwrap();
        let mut env = h.env("c", case["ifname"].as_str().unwrap_or("net1"), Some(&pod));
        if let Some(a) = case["cni_args"].as_str() {
            env.insert("CNI_ARGS".into(), a.into());
        }
        let input = match case["raw"].as_str() {
            Some(raw) => raw.to_string(),
            None => h.conf("1.1.0", 0, case["set"].clone()).to_string(),
        };
        let mut out = Vec::new();
        let code = fastpath::cni::run("ADD", &env, &mut input.as_bytes(), &mut out);
        let err: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        let msg = err["msg"].as_str().unwrap_or("");
        let ok = code != 0
            && err["code"] == case["code"]
            && msg.starts_with(case["msg"].as_str().unwrap())
            && case["details"]
                .as_str()
                .is_none_or(|d| err["details"].as_str() == Some(d));
        if !ok {
            failures.push(format!("{name}: exit {code}, got {err}"));
        }
        assert_eq!(
            host_link(&h.vfs[0].ifname).as_ref(),
            Some(&before),
            "{name}"
        );
        assert!(ns_link(&pod, "net1").is_none(), "{name}");
        assert!(h.records().is_empty(), "{name}");
        assert!(h.leases().is_empty(), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
