//! The pure parts of doctor: parsers and the readiness verdict.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::json;

use super::facts::*;
use super::*;
use crate::inventory::Inventory;

#[test]
fn vfio_pci_state_from_module_files() {
    let none = BTreeSet::new();
    let loaded = BTreeSet::from(["vfio_pci".to_string()]);
    let dep = "kernel/drivers/vfio/vfio.ko.zst:\nkernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/pci/vfio-pci-core.ko.zst\n";
    let core_only = "kernel/drivers/vfio/pci/vfio-pci-core.ko:\n";
    // (loaded modules, modules.builtin, modules.dep, expected)
    type Case<'a> = (
        &'a BTreeSet<String>,
        Option<&'a str>,
        Option<&'a str>,
        ModuleState,
    );
    let cases: &[Case] = &[
        (&loaded, None, None, ModuleState::Loaded),
        (
            &none,
            Some("kernel/drivers/vfio/pci/vfio-pci.ko\n"),
            None,
            ModuleState::Builtin,
        ),
        (
            &none,
            Some(""),
            Some(dep),
            ModuleState::Loadable("kernel/drivers/vfio/pci/vfio-pci.ko.zst".into()),
        ),
        // vfio-pci-core alone is not vfio-pci.
        (
            &none,
            Some(""),
            Some(core_only),
            ModuleState::Missing {
                release: "6.1".into(),
            },
        ),
        (
            &none,
            Some(""),
            None,
            ModuleState::Missing {
                release: "6.1".into(),
            },
        ),
        (
            &none,
            None,
            None,
            ModuleState::Unknown("no modules.dep for kernel 6.1".into()),
        ),
    ];
    for (loaded, builtin, dep, want) in cases {
        assert_eq!(
            &vfio_pci_state(loaded, "6.1", *builtin, *dep),
            want,
            "{builtin:?} {dep:?}"
        );
    }
}

#[test]
fn multus_is_recognised_in_confs_and_conflists() {
    let cases = [
        (r#"{"type":"multus"}"#, true),
        (
            r#"{"type":"multus-shim","name":"multus-cni-network"}"#,
            true,
        ),
        (
            r#"{"name":"x","plugins":[{"type":"multus"},{"type":"portmap"}]}"#,
            true,
        ),
        (r#"{"name":"x","plugins":[{"type":"calico"}]}"#, false),
        (r#"{"type":"flannel","delegate":{"type":"multus"}}"#, false),
        ("not json at all", false),
        ("", false),
    ];
    for (text, want) in cases {
        assert_eq!(conf_is_multus(text), want, "{text}");
    }
    assert!(is_cni_conf_name("00-multus.conf"));
    assert!(is_cni_conf_name("10-calico.conflist"));
    assert!(!is_cni_conf_name("multus.d"));
    assert!(!is_cni_conf_name("00-multus.conf.bak"));
}

#[test]
fn dpdk_is_expected_from_the_flag_the_pools_or_the_policy() {
    let netdev = json!({"resourceList":[{"resourceName":"a","selectors":{"drivers":["iavf"]}}]});
    let vfio_list = json!({"resourceList":[{"resourceName":"b","selectors":[{"pfNames":["x"]},{"Drivers":["vfio-pci"]}]}]});
    let uio = json!({"resourceList":[{"resourceName":"c","selectors":{"drivers":["igb_uio"]}}]});
    let policy =
        json!({"nodePolicies":[{"vfs":[{"deviceType":"netdevice"},{"deviceType":"vfio-pci"}]}]});
    let netdev_policy = json!([{"deviceType":"netdevice"}]);
    assert!(dpdk_from_config(true, None, None).expected());
    assert!(!dpdk_from_config(false, None, None).expected());
    assert!(!dpdk_from_config(false, Some(&netdev), Some(&netdev_policy)).expected());
    assert_eq!(
        dpdk_from_config(false, Some(&vfio_list), None),
        DpdkExpectation::Expected("the pool config selects driver vfio-pci".into())
    );
    assert!(dpdk_from_config(false, Some(&uio), None).expected());
    assert!(dpdk_from_config(false, Some(&netdev), Some(&policy)).expected());
}

fn facts() -> Facts {
    Facts {
        dpdk: DpdkExpectation::NotExpected,
        cmdline: Ok("intel_iommu=on iommu=pt".into()),
        iommu_groups: (PathBuf::from("/sys/kernel/iommu_groups"), Ok(3)),
        vfio_pci: ModuleState::Loaded,
        hugepages: Ok(Hugepages {
            total: 0,
            size_kb: 2048,
        }),
        inventory: (PathBuf::from("/sys"), Ok(Inventory { pfs: Vec::new() })),
        default_routes: Ok(BTreeSet::new()),
        device_plugin_socket: (PathBuf::from("/k/dp.sock"), PathState::Socket),
        pod_resources_socket: (PathBuf::from("/k/pr.sock"), PathState::Socket),
        cni_bin_dir: (PathBuf::from("/opt/cni/bin"), DirState::Writable),
        cni_confs: (
            PathBuf::from("/etc/cni/net.d"),
            Ok(vec![MultusConf {
                file: "00-multus.conf".into(),
                is_multus: true,
            }]),
        ),
        cluster_policy: None,
    }
}

#[test]
fn cluster_policy_is_reported_only_when_asked_and_never_fatal() {
    let mut f = facts();
    let base = diagnose(&f);
    assert!(
        base.findings
            .iter()
            .all(|x| x.check != CheckId::ClusterPolicy)
    );
    for (fact, status, want) in [
        (ClusterPolicy::Ready, Status::Ok, "readable"),
        (
            ClusterPolicy::CrdAbsent,
            Status::Warn,
            "CRD is not installed",
        ),
        (
            ClusterPolicy::Forbidden("no list".into()),
            Status::Warn,
            "forbidden (no list)",
        ),
        (
            ClusterPolicy::Unreachable("refused".into()),
            Status::Warn,
            "cannot be reached: refused",
        ),
    ] {
        f.cluster_policy = Some(fact.clone());
        let r = diagnose(&f);
        let x = r
            .findings
            .iter()
            .find(|x| x.check == CheckId::ClusterPolicy)
            .unwrap();
        assert_eq!(x.status, status, "{fact:?}");
        assert!(x.message.contains(want), "{fact:?}: {}", x.message);
        assert!(!x.fatal);
        assert_eq!(x.fix.is_some(), status != Status::Ok, "{fact:?}");
        assert_eq!(r.ready, base.ready, "{fact:?}: never changes readiness");
    }
}

#[test]
fn a_read_only_cni_bin_dir_fails_with_the_error() {
    let mut f = facts();
    f.cni_bin_dir.1 = DirState::NotWritable("Read-only file system (os error 30)".into());
    let r = diagnose(&f);
    let c = r
        .findings
        .iter()
        .find(|x| x.check == CheckId::CniBinDir)
        .unwrap();
    assert_eq!(c.status, Status::Fail);
    assert!(c.message.contains("Read-only"));
    assert!(c.fix.as_deref().unwrap().contains("read-write"));
}

#[test]
fn unreadable_facts_become_findings_not_errors() {
    let mut f = facts();
    f.iommu_groups.1 = Err("permission denied".into());
    f.default_routes = Err("no /proc/net/route".into());
    f.pod_resources_socket.1 = PathState::Unreadable("EACCES".into());
    let r = diagnose(&f);
    let by = |c| r.findings.iter().find(|x| x.check == c).unwrap();
    assert_eq!(by(CheckId::Iommu).status, Status::Warn);
    assert_eq!(by(CheckId::DefaultRoute).status, Status::Skip);
    assert_eq!(by(CheckId::PodResourcesSocket).status, Status::Fail);
}

#[test]
fn readiness_is_the_absence_of_failures_and_the_table_says_which() {
    let r = diagnose(&facts());
    // No PFs in the fixture: the one fatal failure.
    assert!(!r.ready);
    let failed: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .map(|f| f.check)
        .collect();
    assert_eq!(failed, vec![CheckId::SriovPfs]);
    let text = render_table(&r);
    assert!(text.contains("FAIL  sriov-pfs"), "{text}");
    assert!(
        text.ends_with("node is NOT ready: sriov-pfs failed\n"),
        "{text}"
    );
    assert!(
        r.findings
            .iter()
            .all(|f| f.status != Status::Fail || f.fatal)
    );
}
