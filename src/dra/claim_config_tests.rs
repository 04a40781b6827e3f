use serde_json::json;

use super::*;

fn params(extra: Value) -> Value {
    let mut v = json!({"apiVersion": API_VERSION, "kind": KIND});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn entry(source: ConfigSource, requests: &[&str], extra: Value) -> OpaqueConfig {
    OpaqueConfig {
        requests: requests.iter().map(|s| s.to_string()).collect(),
        source,
        parameters: params(extra),
    }
}

#[test]
fn every_field_parses() {
    let c = parse(
        "e",
        &params(
            json!({"driver": "vfio-pci", "vlan": 100, "mac": "02:00:00:00:00:01",
                       "trust": true, "spoofChk": false}),
        ),
    )
    .unwrap();
    assert_eq!(
        c,
        VfConfig {
            driver: Some(VfDriver::VfioPci),
            vlan: Some(100),
            mtu: None,
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            trust: Some(true),
            spoof_chk: Some(false),
        }
    );
    let n = parse(
        "e",
        &params(json!({"driver": "netdevice", "mtu": 9000, "vlan": 0})),
    )
    .unwrap();
    assert_eq!(
        (n.driver, n.mtu, n.vlan),
        (Some(VfDriver::Netdevice), Some(9000), Some(0))
    );
    assert_eq!(parse("e", &params(json!({}))).unwrap(), VfConfig::default());
}

#[test]
fn bad_parameters_name_the_field_and_value() {
    let cases = [
        (
            json!({"vlan": 4095}),
            "e.vlan: 4095 is not a VLAN id 0-4094",
        ),
        (json!({"vlan": -1}), "e.vlan: -1 is not a VLAN id 0-4094"),
        (
            json!({"vlan": "100"}),
            "e.vlan: \"100\" is not a VLAN id 0-4094",
        ),
        (json!({"mtu": 67}), "e.mtu: 67 is not an MTU 68-65535"),
        (
            json!({"mtu": 1500.5}),
            "e.mtu: 1500.5 is not an MTU 68-65535",
        ),
        (
            json!({"driver": "igb_uio"}),
            "e.driver: \"igb_uio\" is not \"vfio-pci\" or \"netdevice\"",
        ),
        (
            json!({"mac": "02:00:00:00:00"}),
            "e.mac: invalid MAC \"02:00:00:00:00\"",
        ),
        (
            json!({"mac": "01:00:5e:00:00:01"}),
            "e.mac: invalid MAC \"01:00:5e:00:00:01\": multicast",
        ),
        (json!({"mac": 7}), "e.mac: 7 is not a MAC string"),
        (
            json!({"trust": "on"}),
            "e.trust: \"on\" is not true or false",
        ),
        (json!({"spoofChk": 1}), "e.spoofChk: 1 is not true or false"),
        (
            json!({"spoofchk": true}),
            "e.spoofchk: unknown field (known: apiVersion",
        ),
        (
            json!({"kind": "NetConfig"}),
            "e.kind: \"NetConfig\" is not \"VfConfig\"",
        ),
        (
            json!({"apiVersion": "sriov.fastpath.dev/v1"}),
            "e.apiVersion: \"sriov.fastpath.dev/v1\" is not \"sriov.fastpath.dev/v1alpha1\"",
        ),
    ];
    for (extra, want) in cases {
        let e = parse("e", &params(extra.clone())).unwrap_err().to_string();
        assert!(e.starts_with(want), "{extra}: {e}");
    }
    let e = parse("e", &json!({"kind": KIND})).unwrap_err().to_string();
    assert_eq!(
        e,
        "e.apiVersion: missing (must be \"sriov.fastpath.dev/v1alpha1\")"
    );
    let e = parse("e", &json!([1])).unwrap_err().to_string();
    assert_eq!(e, "e.(parameters): must be an object, got [1]");
}

#[test]
fn class_then_claim_later_wins_per_request() {
    use ConfigSource::{Claim, Class};
    let entries = [
        // The claim's entry is listed first; class entries still go first.
        entry(Claim, &[], json!({"vlan": 200})),
        entry(
            Class,
            &[],
            json!({"vlan": 100, "trust": true, "driver": "netdevice"}),
        ),
        entry(Claim, &["dpdk"], json!({"driver": "vfio-pci"})),
        entry(Claim, &["net"], json!({"mtu": 9000})),
    ];
    let cases = [
        ("net", Some(VfDriver::Netdevice), Some(200), Some(9000)),
        ("dpdk", Some(VfDriver::VfioPci), Some(200), None),
        // A subrequest takes its main request's entries.
        ("dpdk/small", Some(VfDriver::VfioPci), Some(200), None),
        ("other", Some(VfDriver::Netdevice), Some(200), None),
    ];
    for (req, driver, vlan, mtu) in cases {
        let c = resolve(&entries, req).unwrap();
        assert_eq!(
            (c.driver, c.vlan, c.mtu, c.trust),
            (driver, vlan, mtu, Some(true)),
            "{req}"
        );
    }
    assert_eq!(resolve(&[], "x").unwrap(), VfConfig::default());
}

#[test]
fn a_bad_entry_fails_every_request_and_conflicts_are_errors() {
    use ConfigSource::{Claim, Class};
    let bad_other = [
        entry(Claim, &["a"], json!({"vlan": 1})),
        entry(Claim, &["b"], json!({"vlan": 5000})),
    ];
    let e = resolve(&bad_other, "a").unwrap_err();
    assert_eq!(e.entry, "claim config[1] parameters");
    assert_eq!(e.field, "vlan");
    let conflict = [
        entry(Class, &[], json!({"mtu": 9000})),
        entry(Claim, &[], json!({"driver": "vfio-pci"})),
    ];
    let e = resolve(&conflict, "a").unwrap_err().to_string();
    assert_eq!(
        e,
        "claim config[1] parameters.mtu: 9000 with driver vfio-pci: a vfio-pci VF has no netdev to set an MTU on"
    );
}
