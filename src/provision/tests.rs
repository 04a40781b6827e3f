//! Table-driven planning tests over fake sysfs trees: every transition
//! the provisioning issue lists, plus validation and idempotency.

use std::collections::BTreeSet;
use std::path::Path;

use sysfs_fixture::presets::{e810, igb};
use sysfs_fixture::{FakeSysfs, PfSpec};

use super::facts::HostFacts;
use super::plan::{Plan, plan};
use super::policy::Policy;
use crate::inventory::{self, Inventory};
use crate::pci::PciAddress;
use crate::sysfs::Sysfs;

const IGB: &str = "0000:05:00.0";

fn igb_with(n: usize) -> PfSpec {
    igb(IGB, "enp5s0", "0000:05:10.0", n).iommu_groups(10)
}

fn e810_with(n: usize) -> PfSpec {
    e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", n).iommu_groups(40)
}

fn inventory_of(pfs: &[PfSpec]) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(dir.path()).unwrap();
    for p in pfs {
        fs.add_pf(p).unwrap();
    }
    sysfs_fixture::presets::add_plain_device(&fs, "0000:00:1f.6", 0x8086, 0x15bb, 0x020000)
        .unwrap();
    inventory::scan(&Sysfs::new(dir.path())).unwrap()
}

fn facts() -> HostFacts {
    HostFacts {
        pci_drivers: ["igb", "igbvf", "ice", "iavf", "vfio-pci"]
            .map(String::from)
            .into(),
        iommu_present: true,
        other_interfaces: [("eno1".to_string(), Some("0000:00:1f.6".parse().unwrap()))].into(),
        other_pci: ["0000:00:1f.6".parse().unwrap()].into(),
        ..HostFacts::default()
    }
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, Path::new("test.yaml")).unwrap()
}

fn addrs(list: &[&str]) -> BTreeSet<PciAddress> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// The plan's actions, one `Display` line each.
fn lines(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .flat_map(|s| s.actions.iter().map(|a| a.to_string()))
        .collect()
}

enum Expect {
    /// These actions, in this order.
    Actions(&'static [&'static str]),
    /// An error containing each string.
    Error(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    pfs: Vec<PfSpec>,
    policy: &'static str,
    held: &'static [&'static str],
    facts: fn(&mut HostFacts),
    expect: Expect,
    held_out: &'static [&'static str],
}

fn no_change(_: &mut HostFacts) {}

fn cases() -> Vec<Case> {
    use Expect::*;
    let netdev4 = "policies: [{pfNames: [enp5s0], numVfs: 4}]";
    vec![
        Case {
            name: "create 0 -> 4",
            pfs: vec![igb_with(0)],
            policy: netdev4,
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "write 4 to 0000:05:00.0/sriov_numvfs",
                "wait for 4 VFs of 0000:05:00.0",
            ]),
            held_out: &[],
        },
        Case {
            name: "grow 4 -> 7 goes through 0",
            pfs: vec![igb_with(4)],
            policy: "policies: [{rootDevices: [\"0000:05:00.0\"], numVfs: 7}]",
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "write 0 to 0000:05:00.0/sriov_numvfs",
                "write 7 to 0000:05:00.0/sriov_numvfs",
                "wait for 7 VFs of 0000:05:00.0",
            ]),
            held_out: &[],
        },
        Case {
            name: "shrink 7 -> 2",
            pfs: vec![igb_with(7)],
            policy: "policies: [{vendor: \"8086\", deviceID: \"10c9\", numVfs: 2}]",
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "write 0 to 0000:05:00.0/sriov_numvfs",
                "write 2 to 0000:05:00.0/sriov_numvfs",
                "wait for 2 VFs of 0000:05:00.0",
            ]),
            held_out: &[],
        },
        Case {
            name: "destroy all",
            pfs: vec![igb_with(2)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 0}]",
            held: &[],
            facts: no_change,
            expect: Actions(&["write 0 to 0000:05:00.0/sriov_numvfs"]),
            held_out: &[],
        },
        Case {
            name: "two VFs to vfio-pci, loading it first, MAC pinned before unbind",
            pfs: vec![igb_with(4)],
            policy: "policies:
  - {pfNames: [\"enp5s0#0-1\"], numVfs: 4, deviceType: vfio-pci, macs: {1: \"02:00:00:00:00:01\"}}
  - {pfNames: [\"enp5s0#2-3\"], numVfs: 4}",
            held: &[],
            facts: |f| {
                f.pci_drivers.remove("vfio-pci");
            },
            expect: Actions(&[
                "modprobe vfio_pci",
                "unbind 0000:05:10.0 from igbvf",
                "write vfio-pci to 0000:05:10.0/driver_override",
                "bind 0000:05:10.0 to vfio-pci",
                "clear 0000:05:10.0/driver_override",
                "pin admin MAC of VF 1 on enp5s0 to 02:00:00:00:00:01",
                "unbind 0000:05:10.2 from igbvf",
                "write vfio-pci to 0000:05:10.2/driver_override",
                "bind 0000:05:10.2 to vfio-pci",
                "clear 0000:05:10.2/driver_override",
            ]),
            held_out: &[],
        },
        Case {
            name: "back to the kernel driver",
            pfs: vec![igb_with(4).vfio(0..2)],
            policy: netdev4,
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "unbind 0000:05:10.0 from vfio-pci",
                "clear 0000:05:10.0/driver_override",
                "probe 0000:05:10.0 (drivers_probe)",
                "wait for 0000:05:10.0 driver and netdev",
                "unbind 0000:05:10.2 from vfio-pci",
                "clear 0000:05:10.2/driver_override",
                "probe 0000:05:10.2 (drivers_probe)",
                "wait for 0000:05:10.2 driver and netdev",
            ]),
            held_out: &[],
        },
        Case {
            name: "unbound VF probed",
            pfs: vec![igb_with(2).unbound(1..2)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 2}]",
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "clear 0000:05:10.2/driver_override",
                "probe 0000:05:10.2 (drivers_probe)",
                "wait for 0000:05:10.2 driver and netdev",
            ]),
            held_out: &[],
        },
        Case {
            name: "mixed ranges with PF and VF MTU",
            pfs: vec![e810_with(4).vfio(3..4), igb_with(0)],
            policy: "policies:
  - {pfNames: [\"ens1f0#0-1\"], numVfs: 4, deviceType: vfio-pci}
  - {pfNames: [\"ens1f0#2-3\"], numVfs: 4, mtu: 9000, vfMtu: 9000}",
            held: &[],
            facts: no_change,
            expect: Actions(&[
                "set mtu of ens1f0 (PF 0000:3b:00.0) to 9000",
                "unbind 0000:3b:01.0 from iavf",
                "write vfio-pci to 0000:3b:01.0/driver_override",
                "bind 0000:3b:01.0 to vfio-pci",
                "clear 0000:3b:01.0/driver_override",
                "unbind 0000:3b:01.1 from iavf",
                "write vfio-pci to 0000:3b:01.1/driver_override",
                "bind 0000:3b:01.1 to vfio-pci",
                "clear 0000:3b:01.1/driver_override",
                "set mtu of ens1f0v2 (VF 0000:3b:01.2) to 9000",
                "unbind 0000:3b:01.3 from vfio-pci",
                "clear 0000:3b:01.3/driver_override",
                "probe 0000:3b:01.3 (drivers_probe)",
                "wait for 0000:3b:01.3 driver and netdev",
            ]),
            held_out: &[],
        },
        Case {
            name: "PF with the default route is refused",
            pfs: vec![igb_with(0)],
            policy: netdev4,
            held: &[],
            facts: |f| {
                f.default_route_interfaces.insert("enp5s0".into());
            },
            expect: Error(&[
                "policies[0]: PF 0000:05:00.0 (enp5s0) carries the default route",
                "force: true",
            ]),
            held_out: &[],
        },
        Case {
            name: "PF with the primary address is refused",
            pfs: vec![igb_with(0)],
            policy: netdev4,
            held: &[],
            facts: |f| {
                f.primary_address_interfaces.insert("enp5s0".into());
            },
            expect: Error(&["carries the node's primary address"]),
            held_out: &[],
        },
        Case {
            name: "PF with the default route, forced",
            pfs: vec![igb_with(0)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 1, force: true}]",
            held: &[],
            facts: |f| {
                f.default_route_interfaces.insert("enp5s0".into());
            },
            expect: Actions(&[
                "write 1 to 0000:05:00.0/sriov_numvfs",
                "wait for 1 VFs of 0000:05:00.0",
            ]),
            held_out: &[],
        },
        Case {
            name: "allocated VF is held, the others move",
            pfs: vec![igb_with(2)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 2, deviceType: vfio-pci}]",
            held: &["0000:05:10.0"],
            facts: no_change,
            expect: Actions(&[
                "unbind 0000:05:10.2 from igbvf",
                "write vfio-pci to 0000:05:10.2/driver_override",
                "bind 0000:05:10.2 to vfio-pci",
                "clear 0000:05:10.2/driver_override",
            ]),
            held_out: &["0000:05:10.0"],
        },
        Case {
            name: "count change that would destroy a held VF is held",
            pfs: vec![igb_with(4)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 2, vfMtu: 9000}]",
            held: &["0000:05:10.6"],
            facts: no_change,
            expect: Actions(&[
                "set mtu of enp5s0v0 (VF 0000:05:10.0) to 9000",
                "set mtu of enp5s0v1 (VF 0000:05:10.2) to 9000",
            ]),
            held_out: &["0000:05:10.6"],
        },
        Case {
            name: "totalvfs exceeded",
            pfs: vec![igb_with(0)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 4}, {pfNames: [enp5s0], numVfs: 9}]",
            held: &[],
            facts: no_change,
            expect: Error(&["policies[1].numVfs: 9 exceeds sriov_totalvfs 7 of 0000:05:00.0"]),
            held_out: &[],
        },
        Case {
            name: "unknown PF",
            pfs: vec![igb_with(0)],
            policy: "policies: [{pfNames: [ens9f0], numVfs: 2}]",
            held: &[],
            facts: no_change,
            expect: Error(&["policies[0].pfNames[0]: ens9f0 matches no SR-IOV PF on this node"]),
            held_out: &[],
        },
        Case {
            name: "PF that is not SR-IOV capable",
            pfs: vec![igb_with(0)],
            policy: "policies: [{pfNames: [eno1], numVfs: 2}, {rootDevices: [\"0000:00:1f.6\"], numVfs: 1}]",
            held: &[],
            facts: no_change,
            expect: Error(&[
                "policies[0].pfNames[0]: eno1 (0000:00:1f.6) is not SR-IOV capable",
                "policies[1].rootDevices[0]: 0000:00:1f.6 is not SR-IOV capable",
            ]),
            held_out: &[],
        },
        Case {
            name: "vendor selector matching nothing",
            pfs: vec![igb_with(0)],
            policy: "policies: [{vendor: \"15b3\", numVfs: 2}]",
            held: &[],
            facts: no_change,
            expect: Error(&["policies[0]: its selectors together matches no SR-IOV PF"]),
            held_out: &[],
        },
        Case {
            name: "overlapping ranges with conflicting deviceType",
            pfs: vec![igb_with(4)],
            policy: "policies:
  - {pfNames: [\"enp5s0#0-3\"], numVfs: 4, deviceType: vfio-pci}
  - {pfNames: [\"enp5s0#2-3\"], numVfs: 4}",
            held: &[],
            facts: no_change,
            expect: Error(&[
                "policies[1].pfNames: VF 2 of 0000:05:00.0 as deviceType netdevice conflicts with deviceType vfio-pci in policies[0]",
            ]),
            held_out: &[],
        },
        Case {
            name: "numVfs disagreement between entries",
            pfs: vec![igb_with(4)],
            policy: "policies: [{pfNames: [\"enp5s0#0-1\"], numVfs: 4}, {pfNames: [\"enp5s0#2\"], numVfs: 3}]",
            held: &[],
            facts: no_change,
            expect: Error(&[
                "policies[1].numVfs: 3 for 0000:05:00.0 conflicts with numVfs 4 in policies[0]",
            ]),
            held_out: &[],
        },
        Case {
            name: "range beyond numVfs",
            pfs: vec![igb_with(4)],
            policy: "policies: [{pfNames: [\"enp5s0#0-5\"], numVfs: 4}]",
            held: &[],
            facts: no_change,
            expect: Error(&["policies[0].pfNames: VF 5 of 0000:05:00.0 is beyond numVfs 4"]),
            held_out: &[],
        },
        Case {
            name: "vfio-pci without an IOMMU",
            pfs: vec![igb(IGB, "enp5s0", "0000:05:10.0", 2)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 2, deviceType: vfio-pci}]",
            held: &[],
            facts: no_change,
            expect: Error(&[
                "policies[0].deviceType: vfio-pci needs an IOMMU but 0000:05:10.0 has no iommu_group",
                "intel_iommu=on iommu=pt",
            ]),
            held_out: &[],
        },
        Case {
            name: "vfio-pci for VFs yet to be created without an IOMMU",
            pfs: vec![igb(IGB, "enp5s0", "0000:05:10.0", 0)],
            policy: "policies: [{pfNames: [enp5s0], numVfs: 2, deviceType: vfio-pci}]",
            held: &[],
            facts: |f| f.iommu_present = false,
            expect: Error(&["VF 0 of 0000:05:00.0 has no iommu_group"]),
            held_out: &[],
        },
        Case {
            name: "vfio-pci without an IOMMU, allowed",
            pfs: vec![igb(IGB, "enp5s0", "0000:05:10.0", 1)],
            policy: "allowNoIommu: true\npolicies: [{pfNames: [enp5s0], numVfs: 1, deviceType: vfio-pci}]",
            held: &[],
            facts: |f| {
                f.pci_drivers.remove("vfio-pci");
            },
            expect: Actions(&[
                "modprobe vfio enable_unsafe_noiommu_mode=1",
                "modprobe vfio_pci",
                "unbind 0000:05:10.0 from igbvf",
                "write vfio-pci to 0000:05:10.0/driver_override",
                "bind 0000:05:10.0 to vfio-pci",
                "clear 0000:05:10.0/driver_override",
            ]),
            held_out: &[],
        },
        Case {
            name: "MACs on an entry selecting two PFs",
            pfs: vec![igb_with(1), e810_with(1)],
            policy: "policies: [{vendor: \"8086\", numVfs: 1, macs: {0: \"02:00:00:00:00:01\"}}]",
            held: &[],
            facts: no_change,
            expect: Error(&[
                "policies[0].macs: admin MACs need an entry that selects exactly one PF (it selects 2)",
            ]),
            held_out: &[],
        },
    ]
}

#[test]
fn every_transition_plans_as_expected() {
    for c in cases() {
        let inv = inventory_of(&c.pfs);
        let mut f = facts();
        (c.facts)(&mut f);
        let result = plan(&inv, &policy(c.policy), &addrs(c.held), &f);
        match (&c.expect, result) {
            (Expect::Actions(want), Ok(p)) => {
                assert_eq!(lines(&p), *want, "{}", c.name);
                let held: BTreeSet<String> = p.held.iter().map(|h| h.vf.to_string()).collect();
                let want_held: BTreeSet<String> =
                    c.held_out.iter().map(|s| s.to_string()).collect();
                assert_eq!(held, want_held, "{}: held {:?}", c.name, p.held);
            }
            (Expect::Error(want), Err(e)) => {
                let msg = e.to_string();
                for w in *want {
                    assert!(msg.contains(w), "{}: {msg:?} lacks {w:?}", c.name);
                }
            }
            (Expect::Actions(_), Err(e)) => panic!("{}: unexpected error {e}", c.name),
            (Expect::Error(_), Ok(p)) => {
                panic!("{}: expected an error, got {:?}", c.name, lines(&p))
            }
        }
    }
}

#[test]
fn planning_against_the_desired_state_changes_nothing() {
    let mut macs = facts();
    macs.vf_admin_macs
        .insert((IGB.parse().unwrap(), 1), [2, 0, 0, 0, 0, 1]);
    let mut vf_mtu = igb_with(4);
    for vf in &mut vf_mtu.vfs[2..] {
        vf.netdev.as_mut().unwrap().mtu = 9000;
    }
    vf_mtu.netdev.as_mut().unwrap().mtu = 9000;
    for (name, pfs, yaml, f) in [
        (
            "netdevice VFs",
            vec![igb_with(4)],
            "policies: [{pfNames: [enp5s0], numVfs: 4}]",
            facts(),
        ),
        (
            "no VFs",
            vec![igb_with(0)],
            "policies: [{pfNames: [enp5s0], numVfs: 0}]",
            facts(),
        ),
        (
            "vfio VFs with a pinned MAC",
            vec![igb_with(2).vfio(0..2)],
            "policies: [{pfNames: [enp5s0], numVfs: 2, deviceType: vfio-pci, macs: {1: \"02:00:00:00:00:01\"}}]",
            macs,
        ),
        (
            "mixed ranges with MTUs",
            vec![vf_mtu.vfio(0..2)],
            "policies:
  - {pfNames: [\"enp5s0#0-1\"], numVfs: 4, deviceType: vfio-pci}
  - {pfNames: [\"enp5s0#2-3\"], numVfs: 4, mtu: 9000, vfMtu: 9000}",
            facts(),
        ),
    ] {
        let inv = inventory_of(&pfs);
        let p = plan(&inv, &policy(yaml), &BTreeSet::new(), &f).unwrap();
        assert!(p.is_empty(), "{name}: {:?}", lines(&p));
    }
}

#[test]
fn an_unknown_admin_mac_is_pinned_again() {
    let inv = inventory_of(&[igb_with(2).vfio(0..2)]);
    let yaml = "policies: [{pfNames: [enp5s0], numVfs: 2, deviceType: vfio-pci, macs: {1: \"02:00:00:00:00:01\"}}]";
    let p = plan(&inv, &policy(yaml), &BTreeSet::new(), &facts()).unwrap();
    assert_eq!(
        lines(&p),
        ["pin admin MAC of VF 1 on enp5s0 to 02:00:00:00:00:01"]
    );
}

#[test]
fn count_changes_defer_per_vf_settings_until_the_vfs_exist() {
    let inv = inventory_of(&[igb_with(0)]);
    let yaml = "policies: [{pfNames: [\"enp5s0#0-1\"], numVfs: 4, deviceType: vfio-pci}]";
    let p = plan(&inv, &policy(yaml), &BTreeSet::new(), &facts()).unwrap();
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.deferred.len(), 2, "{:?}", p.deferred);
    assert!(p.deferred[0].contains("VF 0 of 0000:05:00.0: deviceType vfio-pci"));
}

#[test]
fn every_step_knows_how_to_undo_itself() {
    let inv = inventory_of(&[igb_with(4).vfio(3..4)]);
    let yaml = "policies:
  - {pfNames: [\"enp5s0#0\"], numVfs: 4, deviceType: vfio-pci}
  - {pfNames: [\"enp5s0#1-3\"], numVfs: 4, vfMtu: 9000}";
    let p = plan(&inv, &policy(yaml), &BTreeSet::new(), &facts()).unwrap();
    let undo: Vec<Vec<String>> = p
        .steps
        .iter()
        .map(|s| s.undo.iter().map(|a| a.to_string()).collect())
        .collect();
    assert_eq!(
        undo[0],
        [
            "unbind 0000:05:10.0 from (any)",
            "write igbvf to 0000:05:10.0/driver_override",
            "bind 0000:05:10.0 to igbvf",
            "clear 0000:05:10.0/driver_override"
        ]
    );
    assert_eq!(undo[1], ["set mtu of enp5s0v1 (VF 0000:05:10.2) to 1500"]);
    assert_eq!(
        undo[3],
        [
            "unbind 0000:05:10.6 from (any)",
            "write vfio-pci to 0000:05:10.6/driver_override",
            "bind 0000:05:10.6 to vfio-pci",
            "clear 0000:05:10.6/driver_override"
        ]
    );
    let inv = inventory_of(&[igb_with(4)]);
    let p = plan(
        &inv,
        &policy("policies: [{pfNames: [enp5s0], numVfs: 2}]"),
        &BTreeSet::new(),
        &facts(),
    )
    .unwrap();
    let undo: Vec<String> = p.steps[0].undo.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        undo,
        [
            "write 0 to 0000:05:00.0/sriov_numvfs",
            "write 4 to 0000:05:00.0/sriov_numvfs",
            "wait for 4 VFs of 0000:05:00.0"
        ]
    );
}

#[test]
fn the_documented_examples_parse_and_plan_on_the_example_host() {
    let dir = tempfile::tempdir().unwrap();
    sysfs_fixture::presets::write_example_host(dir.path()).unwrap();
    let inv = inventory::scan(&Sysfs::new(dir.path())).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "json")
        ) {
            continue;
        }
        let p = Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
        plan(&inv, &p, &BTreeSet::new(), &facts())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert_eq!(seen, 5);
    let yaml = Policy::load(&examples.join("split-ranges.yaml")).unwrap();
    let json = Policy::load(&examples.join("split-ranges.json")).unwrap();
    assert_eq!(yaml, json);
}
