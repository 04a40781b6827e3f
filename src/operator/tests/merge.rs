//! Selection and merging by the operator's rules (sort order, overlapping
//! ranges, nodeSelector) and every refusal.

use serde_json::{Value, json};

use super::{decide_all, describe, pol};

struct Case {
    name: &'static str,
    objs: Vec<Value>,
    /// Interfaces as `describe` prints them.
    want: &'static [&'static str],
    /// Each refusal's text must contain the paired strings.
    refused: &'static [&'static [&'static str]],
    /// Notes, as `policy: substring`.
    notes: &'static [&'static str],
}

#[test]
fn merges_by_the_operators_rules() {
    let cases = vec![
        Case {
            name: "a label mismatch or a missing label deselects; an empty selector selects",
            objs: vec![
                pol("other-zone", json!({"nodeSelector": {"zone": "b"}})),
                pol("no-label", json!({"nodeSelector": {"gpu": "yes"}})),
                pol(
                    "everyone",
                    json!({"nodeSelector": {}, "nicSelector": {"pfNames": ["ens2f0"]}, "numVfs": 2}),
                ),
            ],
            want: &["ens2f0 numVfs=2 mtu=- [everyone:everyone:0-1:netdevice]"],
            refused: &[],
            notes: &[],
        },
        Case {
            name: "the smaller priority number wins an overlap; the loser is told",
            objs: vec![
                pol("dpdk", json!({"priority": 10, "deviceType": "vfio-pci"})),
                pol("kernel", json!({"numVfs": 4})),
            ],
            want: &["ens1f0 numVfs=8 mtu=- [dpdk:dpdk:0-7:vfio-pci]"],
            refused: &[],
            notes: &["kernel: VFs 0-3 of ens1f0 are overridden by policy dpdk (priority 10)"],
        },
        Case {
            name: "disjoint ranges on one PF combine, PF settings take the larger value",
            objs: vec![
                pol(
                    "low",
                    json!({"priority": 20, "nicSelector": {"pfNames": ["ens1f0#0-3"]}, "mtu": 1500}),
                ),
                pol(
                    "high",
                    json!({"priority": 5, "numVfs": 16, "nicSelector": {"pfNames": ["ens1f0#8-15"]}, "deviceType": "vfio-pci"}),
                ),
            ],
            want: &["ens1f0 numVfs=16 mtu=1500 [high:high:8-15:vfio-pci low:low:0-3:netdevice]"],
            refused: &[],
            notes: &[],
        },
        Case {
            name: "a later policy that keeps no group and has another priority sets numVfs and mtu alone",
            objs: vec![
                pol("big", json!({"priority": 50, "numVfs": 16, "mtu": 9000})),
                pol("small", json!({"priority": 40, "numVfs": 4})),
            ],
            want: &["ens1f0 numVfs=4 mtu=- [small:small:0-3:netdevice]"],
            refused: &[],
            notes: &["big: VFs 0-15 of ens1f0 are overridden by policy small (priority 40)"],
        },
        Case {
            name: "equal priorities: PF settings take the larger value even when a group is dropped",
            objs: vec![
                pol(
                    "b-policy",
                    json!({"resourceName": "shared", "numVfs": 4, "nicSelector": {"pfNames": ["ens1f0#0-1"]}}),
                ),
                pol(
                    "a-policy",
                    json!({"resourceName": "shared", "numVfs": 8, "mtu": 9000, "nicSelector": {"pfNames": ["ens1f0#4-7"]}}),
                ),
            ],
            want: &["ens1f0 numVfs=8 mtu=9000 [b-policy:shared:0-1:netdevice]"],
            refused: &[],
            notes: &[
                "a-policy: VFs 4-7 of ens1f0 are overridden by policy b-policy (priority 99), whose VFs share its resource \"shared\"",
            ],
        },
        Case {
            name: "equal priority and overlapping ranges: the earlier by name is refused as a conflict",
            objs: vec![
                pol("zeta", json!({"nicSelector": {"pfNames": ["ens1f0#2-5"]}})),
                pol("alpha", json!({"nicSelector": {"pfNames": ["ens1f0#0-3"]}})),
            ],
            want: &["ens1f0 numVfs=8 mtu=- [zeta:zeta:2-5:netdevice]"],
            refused: &[&[
                "alpha",
                "spec.nicSelector.pfNames",
                "conflicts with policy zeta",
                "VFs 0-3 of ens1f0 overlap VFs 2-5 at the same priority 99",
            ]],
            notes: &[],
        },
        Case {
            name: "vendor, deviceID and rootDevices select PFs; a policy matching no PF is noted",
            objs: vec![
                pol(
                    "intel",
                    json!({"numVfs": 2, "nicSelector": {"vendor": "8086", "deviceID": "1572"}}),
                ),
                pol(
                    "by-addr",
                    json!({"numVfs": 2, "nicSelector": {"rootDevices": ["0000:3b:00.0"]}}),
                ),
                pol("nowhere", json!({"nicSelector": {"vendor": "1234"}})),
            ],
            want: &[
                "ens1f0 numVfs=2 mtu=- [by-addr:by-addr:0-1:netdevice]",
                "ens2f0 numVfs=2 mtu=- [intel:intel:0-1:netdevice]",
            ],
            refused: &[],
            notes: &["nowhere: its nicSelector matches no SR-IOV PF"],
        },
        Case {
            name: "the deprecated policy named default is ignored, as the operator does",
            objs: vec![pol("default", json!({}))],
            want: &[],
            refused: &[],
            notes: &[],
        },
        Case {
            name: "a broken policy for other nodes is not this node's to report",
            objs: vec![pol(
                "elsewhere",
                json!({"nodeSelector": {"zone": "b"}, "numVfs": "x"}),
            )],
            want: &[],
            refused: &[],
            notes: &[],
        },
        Case {
            name: "unknown fields are tolerated (the API server prunes them)",
            objs: vec![pol(
                "future",
                json!({"someNewField": {"x": 1}, "numVfs": 2}),
            )],
            want: &["ens1f0 numVfs=2 mtu=- [future:future:0-1:netdevice]"],
            refused: &[],
            notes: &[],
        },
        Case {
            name: "excludeTopology must agree per resource; the later in apply order is refused",
            objs: vec![
                pol(
                    "first",
                    json!({"resourceName": "r", "priority": 50, "nicSelector": {"pfNames": ["ens1f0#0-3"]}}),
                ),
                pol(
                    "second",
                    json!({"resourceName": "r", "priority": 40, "excludeTopology": true, "nicSelector": {"pfNames": ["ens1f0#4-7"]}}),
                ),
            ],
            want: &["ens1f0 numVfs=8 mtu=- [first:r:0-3:netdevice]"],
            refused: &[&[
                "second",
                "spec.excludeTopology",
                "conflicts with policy first",
            ]],
            notes: &[],
        },
        Case {
            name: "externallyManaged must agree on one PF",
            objs: vec![
                pol(
                    "made",
                    json!({"numVfs": 2, "nicSelector": {"pfNames": ["ens2f0#0-1"]}, "externallyManaged": true}),
                ),
                pol(
                    "ours",
                    json!({"numVfs": 4, "priority": 1, "nicSelector": {"pfNames": ["ens2f0#2-3"]}}),
                ),
            ],
            want: &["ens2f0 numVfs=2 mtu=- [made:made:0-1:netdevice]"],
            refused: &[&[
                "ours",
                "spec.externallyManaged",
                "conflicts with policy made",
            ]],
            notes: &[],
        },
    ];
    for c in cases {
        let d = decide_all(&c.objs);
        assert_eq!(describe(&d), c.want, "{}", c.name);
        let got: Vec<String> = d.refused.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), c.refused.len(), "{}: {got:#?}", c.name);
        for (g, want) in got.iter().zip(c.refused) {
            for w in *want {
                assert!(g.contains(w), "{}: {g:?} lacks {w:?}", c.name);
            }
        }
        let notes: Vec<String> = d
            .notes
            .iter()
            .map(|n| format!("{}: {}", n.policy, n.message))
            .collect();
        assert_eq!(notes.len(), c.notes.len(), "{}: {notes:#?}", c.name);
        for (g, w) in notes.iter().zip(c.notes) {
            assert!(g.contains(w), "{}: {g:?} lacks {w:?}", c.name);
        }
    }
}

#[test]
fn apply_order_is_priority_descending_then_name() {
    let d = decide_all(&[
        pol(
            "b",
            json!({"priority": 10, "numVfs": 2, "nicSelector": {"pfNames": ["ens1f0#0-0"]}}),
        ),
        pol(
            "a",
            json!({"priority": 10, "numVfs": 2, "nicSelector": {"pfNames": ["ens1f0#1-1"]}}),
        ),
        pol(
            "z",
            json!({"numVfs": 2, "nicSelector": {"pfNames": ["ens2f0"]}}),
        ),
        pol(
            "y",
            json!({"priority": 0, "numVfs": 2, "nicSelector": {"pfNames": ["ib0"]}}),
        ),
    ]);
    assert_eq!(d.selected, ["z", "a", "b", "y"]);
}

/// Every refusal: (case, spec overrides, strings the error must contain).
#[test]
fn refuses_with_the_field_and_value_named() {
    let cases: &[(&str, Value, &[&str])] = &[
        (
            "switchdev",
            json!({"eSwitchMode": "switchdev"}),
            &[
                "spec.eSwitchMode",
                "\"switchdev\" is not supported by fastpath",
            ],
        ),
        (
            "bad eswitch",
            json!({"eSwitchMode": "fast"}),
            &["spec.eSwitchMode", "\"fast\""],
        ),
        (
            "netFilter",
            json!({"nicSelector": {"netFilter": "openstack/NetworkID:abc"}}),
            &[
                "spec.nicSelector.netFilter",
                "openstack/NetworkID:abc",
                "not supported",
            ],
        ),
        (
            "vdpa",
            json!({"vdpaType": "virtio"}),
            &["spec.vdpaType", "\"virtio\"", "switchdev"],
        ),
        (
            "bridge",
            json!({"bridge": {"ovs": {}}}),
            &["spec.bridge", "not supported", "OVS"],
        ),
        (
            "rdma vfio",
            json!({"isRdma": true, "deviceType": "vfio-pci"}),
            &["spec.isRdma", "vfio-pci"],
        ),
        (
            "device type",
            json!({"deviceType": "dpdk"}),
            &["spec.deviceType", "\"dpdk\""],
        ),
        (
            "link type value",
            json!({"linkType": "fddi"}),
            &["spec.linkType", "\"fddi\""],
        ),
        (
            "priority",
            json!({"priority": 100}),
            &["spec.priority", "100 is outside 0-99"],
        ),
        (
            "mtu",
            json!({"mtu": 20}),
            &["spec.mtu", "20 is outside 68-65535"],
        ),
        (
            "numVfs type",
            json!({"numVfs": "8"}),
            &["spec.numVfs", "must be an integer"],
        ),
        (
            "numVfs missing",
            json!({"numVfs": null}),
            &["spec.numVfs", "missing"],
        ),
        (
            "numVfs zero",
            json!({"numVfs": 0}),
            &["spec.numVfs", "0 VFs for PF 0000:3b:00.0 is not allowed"],
        ),
        (
            "too many",
            json!({"numVfs": 200}),
            &[
                "spec.numVfs",
                "200 exceeds sriov_totalvfs 128 of PF 0000:3b:00.0",
            ],
        ),
        (
            "resourceName",
            json!({"resourceName": "-bad"}),
            &["spec.resourceName", "\"-bad\""],
        ),
        (
            "resourceName missing",
            json!({"resourceName": ""}),
            &["spec.resourceName", "missing"],
        ),
        (
            "resourceName long",
            json!({"resourceName": "r".repeat(64)}),
            &["spec.resourceName", "longer than 63"],
        ),
        (
            "vendor",
            json!({"nicSelector": {"vendor": "0x8086"}}),
            &["spec.nicSelector.vendor", "\"0x8086\""],
        ),
        (
            "rootDevices",
            json!({"nicSelector": {"rootDevices": ["3b:00.0"]}}),
            &["spec.nicSelector.rootDevices[0]", "3b:00.0"],
        ),
        (
            "range reversed",
            json!({"nicSelector": {"pfNames": ["ens1f0#3-1"]}}),
            &["spec.nicSelector.pfNames[0]", "ends before it starts"],
        ),
        (
            "range beyond",
            json!({"nicSelector": {"pfNames": ["ens1f0#0-8"]}}),
            &["spec.nicSelector.pfNames[0]", "VF 8 is beyond numVfs 8"],
        ),
        (
            "range list",
            json!({"nicSelector": {"pfNames": ["ens1f0#1,3"]}}),
            &["spec.nicSelector.pfNames[0]", "first-last"],
        ),
        (
            "empty nicSelector",
            json!({"nicSelector": {}}),
            &["spec.nicSelector", "selects nothing"],
        ),
        (
            "nodeSelector value",
            json!({"nodeSelector": {"sriov": true}}),
            &["spec.nodeSelector[\"sriov\"]", "must be a string"],
        ),
        (
            "link type mismatch",
            json!({"linkType": "eth", "nicSelector": {"pfNames": ["ib0"]}}),
            &["spec.linkType", "PF 0000:af:00.0 is ib", "firmware"],
        ),
        (
            "external count",
            json!({"externallyManaged": true, "nicSelector": {"pfNames": ["ens2f0"]}}),
            &[
                "spec.numVfs",
                "8 is more than the 4 VFs PF 0000:5e:00.0 has",
                "externallyManaged",
            ],
        ),
        (
            "external mtu",
            json!({"externallyManaged": true, "numVfs": 2, "mtu": 9000, "nicSelector": {"pfNames": ["ens2f0"]}}),
            &["spec.mtu", "9000 is above PF 0000:5e:00.0's MTU 1500"],
        ),
    ];
    for (name, spec, want) in cases {
        let d = decide_all(&[
            pol("p", spec.clone()),
            pol(
                "fine",
                json!({"nicSelector": {"pfNames": ["ens2f0#0-1"]}, "numVfs": 4, "priority": 1}),
            ),
        ]);
        assert_eq!(d.refused.len(), 1, "{name}: {:#?}", d.refused);
        let e = d.refused[0].to_string();
        assert!(e.starts_with("SriovNetworkNodePolicy p: "), "{name}: {e}");
        for w in *want {
            assert!(e.contains(w), "{name}: {e:?} lacks {w:?}");
        }
        // The refused policy changes nothing; the other one still applies.
        assert!(
            d.interfaces
                .iter()
                .all(|i| i.groups.iter().all(|g| g.policy == "fine")),
            "{name}"
        );
        assert_eq!(
            d.selected.last().map(String::as_str),
            Some("fine"),
            "{name}"
        );
        assert!(
            d.policy
                .policies
                .iter()
                .all(|e| e.root_devices[0].to_string() == "0000:5e:00.0"),
            "{name}"
        );
    }
}
