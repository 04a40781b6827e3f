//! Every doctor check against fake node trees: a good node, then one
//! thing broken at a time.

use std::cell::RefCell;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use sysfs_fixture::presets::igb;

use super::*;
use crate::doctor::{CheckId, Report, Status};

const RELEASE: &str = "6.1.0-99-amd64";
const ROUTE_VIA_ENO1: &str =
    "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eno1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
";

/// A fake node: procfs, modules, kubelet, CNI dirs in one temp dir; sysfs
/// is the bundled example host (read only) until a case needs its own.
struct Node {
    dir: tempfile::TempDir,
    sys: RefCell<PathBuf>,
}

impl Node {
    /// A node that passes every check.
    fn good() -> Self {
        // Writing a fake sysfs costs a third of a second; most cases only
        // read it, so they share the tree the repository ships.
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
            sys: RefCell::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sysfs")),
        };
        node.write(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt\n",
        );
        node.write("proc/modules", "ice 1 0 - Live 0x0\n");
        node.write(
            "proc/meminfo",
            "MemTotal: 1 kB\nHugePages_Total:    1024\nHugepagesize:       2048 kB\n",
        );
        node.write("proc/net/route", ROUTE_VIA_ENO1);
        node.write("proc/sys/kernel/osrelease", &format!("{RELEASE}\n"));
        node.write(
            &format!("modules/{RELEASE}/modules.dep"),
            "kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/vfio.ko.xz\n",
        );
        node.write(
            &format!("modules/{RELEASE}/modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        );
        node.socket("kubelet/device-plugins/kubelet.sock");
        node.socket("kubelet/pod-resources/kubelet.sock");
        fs::create_dir_all(node.p("cni/bin")).unwrap();
        node.write(
            "cni/net.d/00-multus.conf",
            r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim"}"#,
        );
        node.write(
            "cni/net.d/10-calico.conflist",
            r#"{"cniVersion":"0.3.1","name":"k8s-pod-network","plugins":[{"type":"calico"}]}"#,
        );
        node
    }

    /// Switches to a private sysfs that a case may change: one igb PF with
    /// two VFs in IOMMU groups (small, so it is quick to write).
    fn own_sysfs(&self) -> PathBuf {
        let sys = self.p("sys");
        if !sys.exists() {
            let fake = sysfs_fixture::FakeSysfs::new(&sys).unwrap();
            fake.add_pf(&igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 2).iommu_groups(10))
                .unwrap();
            *self.sys.borrow_mut() = sys.clone();
        }
        sys
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn rm(&self, rel: &str) {
        let p = self.p(rel);
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }

    /// A unix socket file (it stays on disk when the listener is dropped).
    fn socket(&self, rel: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&p).unwrap());
    }

    fn args(&self, dpdk: bool) -> DoctorArgs {
        DoctorArgs {
            json: false,
            dpdk,
            proc_root: self.p("proc"),
            modules_dir: self.p("modules"),
            kubelet_dir: self.p("kubelet"),
            cni_bin_dir: self.p("cni/bin"),
            cni_conf_dir: self.p("cni/net.d"),
            config: self.p("config.json"),
            policy: None,
            cluster: Default::default(),
        }
    }

    fn diagnose(&self, dpdk: bool) -> Report {
        let sysfs = Sysfs::new(self.sys.borrow().clone());
        doctor::diagnose(&gather(&sysfs, &self.args(dpdk)))
    }
}

fn no_iommu_groups(n: &Node) {
    let groups = n.own_sysfs().join("kernel/iommu_groups");
    fs::remove_dir_all(&groups).unwrap();
    fs::create_dir_all(&groups).unwrap();
}

fn no_hugepages(n: &Node) {
    n.write(
        "proc/meminfo",
        "MemTotal: 1 kB\nHugePages_Total: 0\nHugepagesize: 2048 kB\n",
    );
}

fn no_vfio_anywhere(n: &Node) {
    n.write(
        &format!("modules/{RELEASE}/modules.dep"),
        "kernel/drivers/net/ethernet/intel/ice/ice.ko.xz:\n",
    );
}

struct Case {
    name: &'static str,
    breaks: fn(&Node),
    dpdk: bool,
    check: CheckId,
    status: Status,
    ready: bool,
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "good node",
        breaks: |_| {},
        dpdk: true,
        check: CheckId::Iommu,
        status: Status::Ok,
        ready: true,
        says: "groups",
    },
    Case {
        name: "iommu off, dpdk",
        breaks: no_iommu_groups,
        dpdk: true,
        check: CheckId::Iommu,
        status: Status::Fail,
        ready: false,
        says: "IOMMU is off",
    },
    Case {
        name: "iommu off, netdevice only",
        breaks: no_iommu_groups,
        dpdk: false,
        check: CheckId::Iommu,
        status: Status::Warn,
        ready: true,
        says: "only vfio-pci",
    },
    Case {
        name: "iommu disabled on the command line",
        breaks: |n| {
            no_iommu_groups(n);
            n.write("proc/cmdline", "root=/dev/sda1 intel_iommu=off\n")
        },
        dpdk: true,
        check: CheckId::Iommu,
        status: Status::Fail,
        ready: false,
        says: "has intel_iommu=off",
    },
    Case {
        name: "iommu not requested on the command line",
        breaks: |n| {
            no_iommu_groups(n);
            n.write("proc/cmdline", "root=/dev/sda1\n")
        },
        dpdk: true,
        check: CheckId::Iommu,
        status: Status::Fail,
        ready: false,
        says: "no intel_iommu=on",
    },
    Case {
        name: "iommu=pt set",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::IommuPassthrough,
        status: Status::Ok,
        ready: true,
        says: "iommu=pt",
    },
    Case {
        name: "iommu=pt missing",
        breaks: |n| n.write("proc/cmdline", "intel_iommu=on\n"),
        dpdk: true,
        check: CheckId::IommuPassthrough,
        status: Status::Warn,
        ready: true,
        says: "not set",
    },
    Case {
        name: "iommu=pt irrelevant without iommu",
        breaks: no_iommu_groups,
        dpdk: false,
        check: CheckId::IommuPassthrough,
        status: Status::Skip,
        ready: true,
        says: "off",
    },
    Case {
        name: "vfio-pci loadable",
        breaks: |_| {},
        dpdk: true,
        check: CheckId::VfioPci,
        status: Status::Ok,
        ready: true,
        says: "loadable",
    },
    Case {
        name: "vfio-pci loaded",
        breaks: |n| {
            n.write("proc/modules", "vfio_pci 16384 0 - Live 0x0\n");
            n.rm("modules")
        },
        dpdk: true,
        check: CheckId::VfioPci,
        status: Status::Ok,
        ready: true,
        says: "is loaded",
    },
    Case {
        name: "vfio-pci built in",
        breaks: |n| {
            no_vfio_anywhere(n);
            n.write(
                &format!("modules/{RELEASE}/modules.builtin"),
                "kernel/drivers/vfio/pci/vfio-pci.ko\n",
            )
        },
        dpdk: true,
        check: CheckId::VfioPci,
        status: Status::Ok,
        ready: true,
        says: "built into",
    },
    Case {
        name: "vfio-pci missing, dpdk",
        breaks: no_vfio_anywhere,
        dpdk: true,
        check: CheckId::VfioPci,
        status: Status::Fail,
        ready: false,
        says: RELEASE,
    },
    Case {
        name: "vfio-pci missing, netdevice only",
        breaks: no_vfio_anywhere,
        dpdk: false,
        check: CheckId::VfioPci,
        status: Status::Warn,
        ready: true,
        says: RELEASE,
    },
    Case {
        name: "no modules dir for the running kernel",
        breaks: |n| n.rm("modules"),
        dpdk: true,
        check: CheckId::VfioPci,
        status: Status::Warn,
        ready: true,
        says: "cannot tell",
    },
    Case {
        name: "hugepages reserved",
        breaks: |_| {},
        dpdk: true,
        check: CheckId::Hugepages,
        status: Status::Ok,
        ready: true,
        says: "2048 MiB",
    },
    Case {
        name: "no hugepages, dpdk",
        breaks: no_hugepages,
        dpdk: true,
        check: CheckId::Hugepages,
        status: Status::Fail,
        ready: false,
        says: "no hugepages",
    },
    Case {
        name: "no hugepages, netdevice only",
        breaks: no_hugepages,
        dpdk: false,
        check: CheckId::Hugepages,
        status: Status::Skip,
        ready: true,
        says: "only DPDK",
    },
    Case {
        name: "meminfo unreadable, dpdk",
        breaks: |n| n.rm("proc/meminfo"),
        dpdk: true,
        check: CheckId::Hugepages,
        status: Status::Fail,
        ready: false,
        says: "meminfo",
    },
    Case {
        name: "PFs found",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::SriovPfs,
        status: Status::Ok,
        ready: true,
        says: "5 SR-IOV PFs",
    },
    Case {
        name: "no PFs",
        breaks: |n| {
            // An empty tree: the skeleton without any device.
            *n.sys.borrow_mut() = n.p("empty-sys");
            sysfs_fixture::FakeSysfs::new(n.p("empty-sys")).unwrap();
        },
        dpdk: false,
        check: CheckId::SriovPfs,
        status: Status::Fail,
        ready: false,
        says: "no SR-IOV capable PF",
    },
    Case {
        name: "no sysfs at all",
        breaks: |n| *n.sys.borrow_mut() = n.p("no-such-sys"),
        dpdk: false,
        check: CheckId::SriovPfs,
        status: Status::Fail,
        ready: false,
        says: "cannot scan",
    },
    Case {
        name: "default route on a plain NIC",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::DefaultRoute,
        status: Status::Ok,
        ready: true,
        says: "no SR-IOV device",
    },
    Case {
        name: "default route on an SR-IOV PF",
        breaks: |n| n.write("proc/net/route", &ROUTE_VIA_ENO1.replace("eno1", "ens1f0")),
        dpdk: false,
        check: CheckId::DefaultRoute,
        status: Status::Warn,
        ready: true,
        says: "PF 0000:3b:00.0 (ens1f0)",
    },
    Case {
        name: "device-plugin socket",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::DevicePluginSocket,
        status: Status::Ok,
        ready: true,
        says: "is at",
    },
    Case {
        name: "device-plugin socket missing",
        breaks: |n| n.rm("kubelet/device-plugins/kubelet.sock"),
        dpdk: false,
        check: CheckId::DevicePluginSocket,
        status: Status::Fail,
        ready: false,
        says: "missing",
    },
    Case {
        name: "device-plugin socket is a regular file",
        breaks: |n| {
            n.rm("kubelet/device-plugins/kubelet.sock");
            n.write("kubelet/device-plugins/kubelet.sock", "")
        },
        dpdk: false,
        check: CheckId::DevicePluginSocket,
        status: Status::Fail,
        ready: false,
        says: "not a socket",
    },
    Case {
        name: "pod-resources socket",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::PodResourcesSocket,
        status: Status::Ok,
        ready: true,
        says: "is at",
    },
    Case {
        name: "pod-resources socket missing",
        breaks: |n| n.rm("kubelet/pod-resources"),
        dpdk: false,
        check: CheckId::PodResourcesSocket,
        status: Status::Fail,
        ready: false,
        says: "missing",
    },
    Case {
        name: "cni bin dir writable",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::CniBinDir,
        status: Status::Ok,
        ready: true,
        says: "writable",
    },
    Case {
        name: "cni bin dir missing",
        breaks: |n| n.rm("cni/bin"),
        dpdk: false,
        check: CheckId::CniBinDir,
        status: Status::Fail,
        ready: false,
        says: "does not exist",
    },
    Case {
        name: "cni bin dir is a file",
        breaks: |n| {
            n.rm("cni/bin");
            n.write("cni/bin", "")
        },
        dpdk: false,
        check: CheckId::CniBinDir,
        status: Status::Fail,
        ready: false,
        says: "not a directory",
    },
    Case {
        name: "multus first",
        breaks: |_| {},
        dpdk: false,
        check: CheckId::Multus,
        status: Status::Ok,
        ready: true,
        says: "00-multus.conf",
    },
    Case {
        name: "multus sorted after the primary network",
        breaks: |n| {
            n.rm("cni/net.d/00-multus.conf");
            n.write(
                "cni/net.d/20-multus.conf",
                r#"{"name":"multus-cni-network","type":"multus"}"#,
            );
        },
        dpdk: false,
        check: CheckId::Multus,
        status: Status::Fail,
        ready: false,
        says: "10-calico.conflist because it sorts first",
    },
    Case {
        name: "no multus config",
        breaks: |n| n.rm("cni/net.d/00-multus.conf"),
        dpdk: false,
        check: CheckId::Multus,
        status: Status::Fail,
        ready: false,
        says: "no Multus config",
    },
    Case {
        name: "no cni conf dir",
        breaks: |n| n.rm("cni/net.d"),
        dpdk: false,
        check: CheckId::Multus,
        status: Status::Fail,
        ready: false,
        says: "cannot read",
    },
    Case {
        name: "a vfio-pci pool in the config makes hugepages fatal",
        breaks: |n| {
            no_hugepages(n);
            n.write("config.json", r#"{"resourceList":[{"resourceName":"dpdk","selectors":{"vendors":["8086"],"drivers":["vfio-pci"]}}]}"#);
        },
        dpdk: false,
        check: CheckId::Hugepages,
        status: Status::Fail,
        ready: false,
        says: "no hugepages",
    },
];

#[test]
fn every_check_on_fake_trees() {
    let mut failures = Vec::new();
    for case in CASES {
        let node = Node::good();
        (case.breaks)(&node);
        let report = node.diagnose(case.dpdk);
        let f = report
            .findings
            .iter()
            .find(|f| f.check == case.check)
            .expect("every check reports");
        if f.status != case.status || report.ready != case.ready || !f.message.contains(case.says) {
            failures.push(format!(
                "{}: got {:?} ready={} {:?}, want {:?} ready={} containing {:?}",
                case.name, f.status, report.ready, f.message, case.status, case.ready, case.says
            ));
        }
        if matches!(f.status, Status::Fail | Status::Warn) && f.fix.is_none() {
            failures.push(format!("{}: a problem without a fix", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_good_node_passes_every_check_and_leaves_no_probe_file() {
    let node = Node::good();
    let report = node.diagnose(true);
    assert!(report.ready);
    let bad: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.status != Status::Ok)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(fs::read_dir(node.p("cni/bin")).unwrap().count(), 0);
}

#[test]
fn exit_code_and_json_follow_readiness() {
    let node = Node::good();
    let sysfs = Sysfs::new(node.sys.borrow().clone());
    let mut args = node.args(false);
    args.json = true;
    let mut out = Vec::new();
    assert_eq!(run(&sysfs, &args, &mut out).unwrap(), ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["findings"].as_array().unwrap().len(), 10);

    node.rm("kubelet/device-plugins/kubelet.sock");
    let mut out = Vec::new();
    assert_eq!(run(&sysfs, &args, &mut out).unwrap(), ExitCode::from(1));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ready"], false);
    let dp = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "device-plugin-socket")
        .unwrap();
    assert_eq!(dp["status"], "fail");
    assert!(dp["fix"].as_str().unwrap().contains("kubelet"));

    args.json = false;
    let mut out = Vec::new();
    assert_eq!(run(&sysfs, &args, &mut out).unwrap(), ExitCode::from(1));
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("node is NOT ready: device-plugin-socket failed"),
        "{text}"
    );
}

#[test]
fn a_policy_with_vfio_pci_makes_the_dpdk_checks_fatal() {
    let node = Node::good();
    no_iommu_groups(&node);
    node.write(
        "policy.yaml",
        "nodePolicies:\n- pfNames: [ens1f0]\n  numVfs: 8\n  vfs:\n  - range: \"4-7\"\n    deviceType: vfio-pci\n",
    );
    let mut args = node.args(false);
    args.policy = Some(node.p("policy.yaml"));
    let report = doctor::diagnose(&gather(&Sysfs::new(node.sys.borrow().clone()), &args));
    let iommu = &report.findings[0];
    assert_eq!((iommu.check, iommu.status), (CheckId::Iommu, Status::Fail));
    assert!(!report.ready);
}
