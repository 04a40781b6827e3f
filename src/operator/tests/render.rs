//! Rendering into the node policy and pools, and the node-state status.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{decide_all, labels, node, pol};
use crate::operator::{Options, Outcome, decide, node_state_status};
use crate::provision::Held;

#[test]
fn renders_the_node_policy_and_one_pool_per_resource() {
    let d = decide_all(&[
        pol(
            "dpdk",
            json!({"resourceName": "dpdk", "deviceType": "vfio-pci", "nicSelector": {"pfNames": ["ens1f0#0-3"]}, "mtu": 9000}),
        ),
        pol(
            "kernel",
            json!({"resourceName": "net", "nicSelector": {"pfNames": ["ens1f0#4-7"]}, "mtu": 9000, "linkType": "ETH", "isRdma": true, "needVhostNet": true}),
        ),
        pol(
            "ib",
            json!({"resourceName": "ib", "numVfs": 4, "nicSelector": {"rootDevices": ["0000:af:00.0"]}, "excludeTopology": true}),
        ),
    ]);
    assert!(d.refused.is_empty(), "{:#?}", d.refused);
    let entries: Vec<String> = d
        .policy
        .policies
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {} {} {:?} {:?}",
                e.root_devices[0],
                e.pf_names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                e.num_vfs,
                e.device_type,
                e.mtu,
                e.vf_mtu
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            "0000:3b:00.0 [\"ens1f0#4-7\"] 8 netdevice Some(9000) Some(9000)",
            "0000:3b:00.0 [\"ens1f0#0-3\"] 8 vfio-pci Some(9000) None",
            "0000:af:00.0 [\"ib0#0-3\"] 4 netdevice None None",
        ]
    );
    let pools: Value = serde_json::from_str(&d.pools_json).unwrap();
    assert_eq!(
        pools,
        json!({"resourceList": [
            {"resourceName": "dpdk", "resourcePrefix": "openshift.io", "excludeTopology": false,
             "selectors": [{"rootDevices": ["0000:3b:00.0"], "pfNames": ["ens1f0#0-3"], "drivers": ["vfio-pci"]}]},
            {"resourceName": "ib", "resourcePrefix": "openshift.io", "excludeTopology": true,
             "selectors": [{"rootDevices": ["0000:af:00.0"], "pfNames": ["ib0#0-3"]}]},
            {"resourceName": "net", "resourcePrefix": "openshift.io", "excludeTopology": false,
             "selectors": [{"rootDevices": ["0000:3b:00.0"], "pfNames": ["ens1f0#4-7"], "linkTypes": ["ether"], "isRdma": true, "needVhostNet": true}]},
        ]})
    );
    let names: Vec<String> = d
        .pools
        .resource_list
        .iter()
        .map(|r| r.full_name())
        .collect();
    assert_eq!(
        names,
        ["openshift.io/dpdk", "openshift.io/ib", "openshift.io/net"]
    );
}

#[test]
fn resource_prefix_is_configurable_and_checked() {
    let objs = [pol("p", json!({}))];
    let opts = Options {
        resource_prefix: "example.com".into(),
    };
    let d = decide(&objs, &labels(), &node(), &opts).unwrap();
    assert_eq!(d.pools.resource_list[0].full_name(), "example.com/p");
    let bad = Options {
        resource_prefix: "Not_A_Domain".into(),
    };
    let e = decide(&objs, &labels(), &node(), &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resourcePrefix") && e.contains("Not_A_Domain"),
        "{e}"
    );
}

#[test]
fn externally_managed_binds_drivers_without_changing_the_count_or_pf_mtu() {
    let d = decide_all(&[pol(
        "ext",
        json!({"externallyManaged": true, "numVfs": 2, "mtu": 1500, "deviceType": "vfio-pci", "nicSelector": {"pfNames": ["ens2f0"]}}),
    )]);
    assert!(d.refused.is_empty(), "{:#?}", d.refused);
    let e = &d.policy.policies[0];
    assert_eq!(e.num_vfs, 4, "the 4 VFs made outside stay");
    assert_eq!(e.pf_names[0].to_string(), "ens2f0#0-1");
    assert_eq!(e.mtu, None);
    assert!(d.interfaces[0].externally_managed);
}

#[test]
fn the_decision_plans_on_the_node() {
    use crate::provision::{HostFacts, plan};
    let inv = node();
    let d = decide(
        &[pol("dpdk", json!({"numVfs": 2, "deviceType": "vfio-pci"}))],
        &labels(),
        &inv,
        &Options::default(),
    )
    .unwrap();
    let facts = HostFacts {
        pci_drivers: ["ice", "iavf", "vfio-pci"].map(String::from).into(),
        iommu_present: true,
        ..HostFacts::default()
    };
    let p = plan(&inv, &d.policy, &BTreeSet::new(), &facts).unwrap();
    let actions: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.actions.iter().map(ToString::to_string))
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.contains("sriov_numvfs") && a.contains('2')),
        "{actions:#?}"
    );
    assert!(
        !p.deferred.is_empty(),
        "binding the new VFs waits for them: {p:#?}"
    );
}

#[test]
fn node_state_status_reports_interfaces_sync_and_held() {
    let inv = node();
    let d = decide_all(&[pol(
        "p",
        json!({"numVfs": 2, "nicSelector": {"pfNames": ["ens2f0"]}}),
    )]);
    let s = node_state_status(&inv, &d, &Outcome::Applied { held: vec![] });
    assert_eq!(s.sync_status, "Succeeded");
    assert_eq!(s.last_sync_error, "");
    let v = serde_json::to_value(&s).unwrap();
    let x710 = &v["interfaces"][1];
    assert_eq!(x710["name"], "ens2f0");
    assert_eq!(x710["pciAddress"], "0000:5e:00.0");
    assert_eq!(x710["vendor"], "8086");
    assert_eq!(x710["deviceID"], "1572");
    assert_eq!(x710["numVfs"], 4);
    assert_eq!(x710["totalvfs"], 64);
    assert_eq!(x710["linkType"], "ETH");
    assert_eq!(x710["Vfs"][1]["vfID"], 1);
    assert_eq!(x710["Vfs"][1]["driver"], "iavf");
    assert_eq!(x710["Vfs"][1]["pciAddress"], "0000:5e:02.1");
    assert_eq!(v["interfaces"][2]["linkType"], "IB");

    let held = Held {
        vf: "0000:5e:02.1".parse().unwrap(),
        pending: "rebind to vfio-pci".into(),
    };
    let s = node_state_status(&inv, &d, &Outcome::Applied { held: vec![held] });
    assert_eq!(s.sync_status, "InProgress");
    assert!(
        s.last_sync_error.contains("held back: VF 0000:5e:02.1"),
        "{}",
        s.last_sync_error
    );
    assert_eq!(
        node_state_status(&inv, &d, &Outcome::Applying).sync_status,
        "InProgress"
    );
    let s = node_state_status(
        &inv,
        &d,
        &Outcome::Failed("writing sriov_numvfs: EBUSY".into()),
    );
    assert_eq!(
        (s.sync_status, s.last_sync_error.as_str()),
        ("Failed", "writing sriov_numvfs: EBUSY")
    );

    let refused = decide_all(&[pol("sw", json!({"eSwitchMode": "switchdev"}))]);
    let s = node_state_status(&inv, &refused, &Outcome::Applied { held: vec![] });
    assert_eq!(s.sync_status, "Failed");
    assert!(
        s.last_sync_error
            .contains("SriovNetworkNodePolicy sw: spec.eSwitchMode"),
        "{}",
        s.last_sync_error
    );
}

#[test]
fn reports_each_change_and_refusal_once() {
    use crate::operator::report::{Target, new_reports, reports};
    let d = decide_all(&[
        pol("ok", json!({"numVfs": 2})),
        pol("sw", json!({"eSwitchMode": "switchdev"})),
    ]);
    let applied = Outcome::Applied { held: vec![] };
    let first = reports(&d, &applied, &["ens1f0: create 2 VFs".to_string()]);
    let got: Vec<(Target, bool, &str)> = first
        .iter()
        .map(|r| (r.target.clone(), r.warning, r.reason))
        .collect();
    assert_eq!(
        got,
        [
            (Target::Policy("ok".into()), false, "PolicyApplied"),
            (Target::Policy("sw".into()), true, "UnsupportedField"),
            (Target::Node, false, "PolicyApplied"),
            (Target::Node, true, "UnsupportedField"),
        ]
    );
    // The next idle round: nothing new to say.
    let idle = reports(&d, &applied, &[]);
    assert!(new_reports(&idle, &idle).is_empty());
    assert!(new_reports(&first, &idle).is_empty());
    // A pod holding a VF is reported on the Node once.
    let held = Outcome::Applied {
        held: vec![Held {
            vf: "0000:3b:01.0".parse().unwrap(),
            pending: "rebind to vfio-pci".into(),
        }],
    };
    let with_held = reports(&d, &held, &[]);
    let new = new_reports(&idle, &with_held);
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(
        (new[0].target.clone(), new[0].reason),
        (Target::Node, "ChangeHeld")
    );
    assert!(new[0].note.contains("0000:3b:01.0"), "{}", new[0].note);
    let failed = reports(&d, &Outcome::Failed("EBUSY".into()), &[]);
    assert!(
        failed
            .iter()
            .any(|r| r.target == Target::Policy("ok".into()) && r.reason == "ApplyFailed")
    );
}
