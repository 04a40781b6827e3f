use std::collections::BTreeSet;

use sysfs_fixture::presets::{e810, example_host, x710};
use sysfs_fixture::{FakeSysfs, PfSpec};

use super::*;
use crate::inventory::scan;
use crate::procfs::Procfs;
use crate::sysfs::Sysfs;

const EXAMPLE_NO_OPTIONAL: &str =
    r#"{"resourceList":[{"resourceName":"net","selectors":{"drivers":["iavf"]}}]}"#;

fn host(pfs: &[PfSpec]) -> (tempfile::TempDir, Inventory, HostFacts) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
    for p in pfs {
        fs.add_pf(p).unwrap();
    }
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("net")).unwrap();
    std::fs::write(
        proc_root.join("net/route"),
        "Iface\tDestination\tGateway\tFlags\n",
    )
    .unwrap();
    let sysfs = Sysfs::new(dir.path().join("sys"));
    let inv = scan(&sysfs).unwrap();
    let facts = HostFacts::gather(&sysfs, &Procfs::new(proc_root), &inv, FactNeeds::ALL);
    (dir, inv, facts)
}

fn cfg(text: &str) -> Config {
    config::parse(text, "intel.com").unwrap()
}

fn members(p: &Pools, resource: &str) -> Vec<String> {
    p.pool(resource)
        .unwrap()
        .devices
        .iter()
        .map(|d| d.view.pci.to_string())
        .collect()
}

#[test]
fn keys_are_case_insensitive_and_selectors_take_both_shapes() {
    let a = cfg(
        r#"{"ResourceList":[{"ResourceName":"a","Selectors":{"IsRdma":true,"PFNames":["ens1f0#1-2"]}}]}"#,
    );
    let s = &a.resource_list[0].selectors[0];
    assert!(s.is_rdma);
    assert_eq!(s.pf_names[0].to_string(), "ens1f0#1-2");
    let b = cfg(
        r#"{"resourceList":[{"resourceName":"a","selectors":[{"drivers":["iavf"]},{"vendors":["15B3"]}]}]}"#,
    );
    assert_eq!(b.resource_list[0].selectors.len(), 2);
    assert_eq!(
        b.resource_list[0].selectors[1].vendors[0].to_string(),
        "15b3"
    );
    assert_eq!(b.resource_list[0].full_name(), "intel.com/a");
}

#[test]
fn additional_info_keeps_inner_keys_and_overrides_per_device() {
    let c = cfg(r#"{"resourceList":[{"resourceName":"a","selectors":{},
        "additionalInfo":{"*":{"Mode":"x","k":"1"},"0000:3b:01.0":{"Mode":"y"}}}]}"#);
    let rc = &c.resource_list[0];
    let own = additional_info(rc, "0000:3b:01.0".parse().unwrap());
    assert_eq!(own.get("Mode").unwrap(), "y");
    assert_eq!(own.get("k").unwrap(), "1");
    let other = additional_info(rc, "0000:3b:01.1".parse().unwrap());
    assert_eq!(other.get("Mode").unwrap(), "x");
}

#[test]
fn first_pool_wins_and_every_device_has_a_reason() {
    let (_d, inv, facts) = host(&example_host());
    let c = cfg(r#"{"resourceList":[
        {"resourceName":"intel_dpdk","selectors":{"drivers":["vfio-pci"]}},
        {"resourceName":"intel_all","selectors":{"vendors":["8086"]}}]}"#);
    let p = assign(&inv, &c, &facts);
    assert_eq!(
        members(&p, "intel.com/intel_dpdk"),
        ["0000:3b:01.2", "0000:3b:01.3"]
    );
    // The X710 has no VFs, so the PF itself is a candidate.
    assert_eq!(
        members(&p, "intel.com/intel_all"),
        [
            "0000:05:10.0",
            "0000:05:10.2",
            "0000:18:00.0",
            "0000:3b:01.0",
            "0000:3b:01.1"
        ]
    );
    let a = p
        .assignments
        .iter()
        .find(|a| a.pci.to_string() == "0000:3b:01.2")
        .unwrap();
    assert!(a.reasons[1].contains("also matches"), "{:?}", a.reasons);
    let mlx = p
        .assignments
        .iter()
        .find(|a| a.pci.to_string() == "0000:af:00.2")
        .unwrap();
    assert_eq!(mlx.pool, None);
    assert!(
        mlx.reasons[1].contains("vendor 15b3 not in vendors [8086]"),
        "{:?}",
        mlx.reasons
    );
    // Every candidate is accounted for.
    assert_eq!(p.assignments.len(), candidates(&inv).len());

    // Without reasons (the agent's rescans) the pools are the same.
    let quiet = assign_with(&inv, &c, &facts, Reasons::Skip);
    assert_eq!(quiet.pools, p.pools);
    let placed = |p: &Pools| {
        p.assignments
            .iter()
            .map(|a| (a.pci, a.pool.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(placed(&quiet), placed(&p));
    let mlx = quiet
        .assignments
        .iter()
        .find(|a| a.pci.to_string() == "0000:af:00.2")
        .unwrap();
    assert!(mlx.reasons.is_empty(), "{:?}", mlx.reasons);
}

#[test]
fn pf_names_entries_for_one_pf_are_merged_not_dropped() {
    let (_d, inv, facts) = host(&[e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 8)]);
    let c = cfg(
        r#"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0#0-1","ENS1F0#5"]}}]}"#,
    );
    assert_eq!(c.notes.len(), 1);
    let p = assign(&inv, &c, &facts);
    assert_eq!(
        members(&p, "intel.com/a"),
        ["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.5"]
    );
}

#[test]
fn default_route_device_is_excluded_with_a_reason() {
    let (_d, inv, mut facts) = host(&[e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 2)]);
    facts.default_route_interfaces = BTreeSet::from(["ens1f0v1".to_string()]);
    let c = cfg(r#"{"resourceList":[{"resourceName":"a","selectors":{"drivers":["iavf"]}}]}"#);
    let p = assign(&inv, &c, &facts);
    assert_eq!(members(&p, "intel.com/a"), ["0000:3b:01.0"]);
    let a = &p.assignments[1];
    assert!(
        a.pool.is_none() && a.reasons[0].contains("default route"),
        "{a:?}"
    );
}

#[test]
fn unbound_vfs_are_skipped_and_vfs_in_pods_still_count() {
    let mut pf = e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 4).unbound(3..4);
    // VFs 0-1 are inside pods: no host netdev, driver still bound.
    for vf in &mut pf.vfs[0..2] {
        vf.netdev = None;
    }
    let (_d, inv, facts) = host(&[pf]);
    let c = cfg(
        r#"{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["ens1f0"],"linkTypes":["ether"]}}]}"#,
    );
    let p = assign(&inv, &c, &facts);
    assert_eq!(
        members(&p, "intel.com/a"),
        ["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"]
    );
    assert_eq!(p.assignments[3].reasons, ["no driver bound"]);
}

#[test]
fn pf_link_down_makes_its_vfs_unhealthy() {
    let mut pf = x710("0000:18:00.0", "ens2f0", "0000:18:02.0", 2);
    pf.netdev.as_mut().unwrap().operstate = "down".into();
    let (_d, inv, facts) = host(&[pf]);
    let c = cfg(r#"{"resourceList":[{"resourceName":"a","selectors":{"drivers":["iavf"]}}]}"#);
    let p = assign(&inv, &c, &facts);
    let pool = p.pool("intel.com/a").unwrap();
    assert!(pool.devices.iter().all(|d| !d.healthy()));
    assert!(
        pool.devices[0]
            .unhealthy
            .as_ref()
            .unwrap()
            .contains("ens2f0")
    );
}

#[test]
fn accelerator_pools_take_only_accelerator_class() {
    let mut qat = x710("0000:3d:00.0", "qat0", "0000:3d:01.0", 2);
    qat.class = 0x120000;
    qat.netdev = None;
    for vf in &mut qat.vfs {
        vf.netdev = None;
        vf.driver = Some("4xxxvf".into());
    }
    let (_d, inv, facts) = host(&[qat, e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 1)]);
    let c = cfg(
        r#"{"resourceList":[{"resourceName":"qat","deviceType":"accelerator","selectors":{"vendors":["8086"]}},
        {"resourceName":"net","selectors":{"vendors":["8086"]}}]}"#,
    );
    let p = assign(&inv, &c, &facts);
    assert_eq!(
        members(&p, "intel.com/qat"),
        ["0000:3d:01.0", "0000:3d:01.1"]
    );
    assert_eq!(members(&p, "intel.com/net"), ["0000:3b:01.0"]);
}

#[test]
fn rdma_and_acpi_index_selectors_use_host_facts() {
    let (dir, _inv, _) = host(&example_host());
    let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
    fs.write_attr("0000:3b:01.1", "acpi_index", "7\n").unwrap();
    let sysfs = Sysfs::new(dir.path().join("sys"));
    let inv = scan(&sysfs).unwrap();
    let c = cfg(
        r#"{"resourceList":[{"resourceName":"acpi","selectors":{"acpiIndexes":["7"]}},
        {"resourceName":"rdma","selectors":{"isRdma":true,"needVhostNet":true}}]}"#,
    );
    assert_eq!(FactNeeds::of(&c), FactNeeds::ALL);
    assert_eq!(
        FactNeeds::of(&cfg(EXAMPLE_NO_OPTIONAL)),
        FactNeeds::default()
    );
    let facts = HostFacts::gather(
        &sysfs,
        &Procfs::new(dir.path().join("proc")),
        &inv,
        FactNeeds::of(&c),
    );
    // A config without such selectors does not read them.
    let lean = HostFacts::gather(
        &sysfs,
        &Procfs::new(dir.path().join("proc")),
        &inv,
        FactNeeds::default(),
    );
    assert!(
        lean.devices
            .values()
            .all(|d| d.acpi_index.is_none() && d.rdma.is_empty())
    );
    assert!(lean.devices.values().any(|d| d.class.is_some()));
    let p = assign(&inv, &c, &facts);
    assert_eq!(members(&p, "intel.com/acpi"), ["0000:3b:01.1"]);
    let rdma = p.pool("intel.com/rdma").unwrap();
    assert_eq!(rdma.devices.len(), 4);
    assert_eq!(rdma.devices[0].rdma, ["mlx5_1"]);
    assert!(rdma.devices[0].is_rdma && rdma.devices[0].need_vhost_net);
}
