//! Apply and recovery over fake sysfs trees. A fake tree does not react to
//! writes the way the kernel does, so these tests cover what does not need
//! a kernel: no-op applies, journal recovery (finish and roll back), undo
//! on failure and non-convergence. The VM rig runs apply for real.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::igb;

use super::*;
use crate::provision::journal::{Journal, Record};
use crate::provision::{Policy, ReconcileOptions};

struct Node {
    dir: tempfile::TempDir,
    sysfs: Sysfs,
    procfs: Procfs,
    opts: ReconcileOptions,
}

fn node(vfio: std::ops::Range<usize>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let fs_root = dir.path().join("sys");
    let fake = FakeSysfs::new(&fs_root).unwrap();
    fake.add_pf(
        &igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 3)
            .iommu_groups(10)
            .vfio(vfio),
    )
    .unwrap();
    let proc_root = dir.path().join("proc");
    fs::create_dir_all(proc_root.join("net")).unwrap();
    fs::write(
        proc_root.join("net/route"),
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n",
    )
    .unwrap();
    let opts = ReconcileOptions {
        wait_timeout: Duration::from_millis(50),
        ..ReconcileOptions::new(dir.path().join("state"))
    };
    Node {
        sysfs: Sysfs::new(&fs_root),
        procfs: Procfs::new(&proc_root),
        opts,
        dir,
    }
}

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, Path::new("t.yaml")).unwrap()
}

fn vf(a: &str) -> PciAddress {
    a.parse().unwrap()
}

fn run(n: &Node, yaml: &str) -> Result<ApplyReport, ApplyError> {
    reconcile(
        &n.sysfs,
        &n.procfs,
        &policy(yaml),
        &BTreeSet::new(),
        &n.opts,
    )
}

const VF0_VFIO: &str = "policies:
  - {pfNames: [\"enp5s0#0\"], numVfs: 3, deviceType: vfio-pci}
  - {pfNames: [\"enp5s0#1-2\"], numVfs: 3}";

#[test]
fn a_node_in_the_desired_state_is_left_alone() {
    let n = node(0..1);
    let r = run(&n, VF0_VFIO).unwrap();
    assert!(r.changed_nothing(), "{r:?}");
    assert_eq!(r.rounds, 0);
    assert!(!n.dir.path().join("state/provision").exists());
}

#[test]
fn recovery_finishes_an_interrupted_rebind() {
    // Interrupted after `bind` and before `driver_override` was cleared:
    // the VF is on vfio-pci with a stale override the plan cannot see.
    let n = node(0..1);
    let addr = vf("0000:05:10.0");
    n.sysfs
        .pci_device(addr)
        .set_driver_override(Some("vfio-pci"))
        .unwrap();
    let step = Step {
        summary: "VF 0000:05:10.0 (from igbvf) to vfio-pci".into(),
        actions: vec![
            Action::Unbind {
                vf: addr,
                driver: "igbvf".into(),
            },
            Action::SetDriverOverride {
                vf: addr,
                driver: "vfio-pci".into(),
            },
            Action::Bind {
                vf: addr,
                driver: "vfio-pci".into(),
            },
            Action::ClearDriverOverride { vf: addr },
        ],
        undo: vec![],
    };
    // The round's first step was done; the second was reached. Were the
    // first re-run, it would unbind VF 1 from igbvf.
    let done = Step {
        summary: "VF 0000:05:10.2 (from igbvf) to its kernel driver".into(),
        actions: vec![Action::Unbind {
            vf: vf("0000:05:10.2"),
            driver: "igbvf".into(),
        }],
        undo: vec![],
    };
    let journal = Journal::open(&n.opts.state_dir);
    let mut rec = Record::new(vec![done, step]);
    journal.begin(&rec).unwrap();
    rec.reached = 1;
    journal.advance(&rec).unwrap();
    let r = run(&n, VF0_VFIO).unwrap();
    // The step reached was finished, not the one before it.
    let igbvf_unbind = n.sysfs.root().join("bus/pci/drivers/igbvf/unbind");
    assert_eq!(fs::read_to_string(igbvf_unbind).unwrap(), "");
    assert!(
        r.recovered
            .as_deref()
            .unwrap()
            .starts_with("finished interrupted step"),
        "{r:?}"
    );
    assert_eq!(n.sysfs.pci_device(addr).driver_override().unwrap(), None);
    assert_eq!(journal.read().unwrap(), None);
    // Bind was already done, so it is not written again.
    let bind = n.sysfs.root().join("bus/pci/drivers/vfio-pci/bind");
    assert_eq!(fs::read_to_string(bind).unwrap(), "");
}

#[test]
fn recovery_rolls_back_a_step_it_cannot_finish() {
    let n = node(0..1);
    let addr = vf("0000:05:10.2");
    let step = Step {
        summary: "VF 0000:05:10.2 (from igbvf) to nosuchdrv".into(),
        actions: vec![Action::Bind {
            vf: addr,
            driver: "nosuchdrv".into(),
        }],
        undo: vec![
            Action::SetDriverOverride {
                vf: addr,
                driver: "igbvf".into(),
            },
            Action::ClearDriverOverride { vf: addr },
        ],
    };
    let journal = Journal::open(&n.opts.state_dir);
    journal.begin(&Record::new(vec![step])).unwrap();
    let r = run(&n, VF0_VFIO).unwrap();
    let rec = r.recovered.unwrap();
    assert!(rec.starts_with("rolled back interrupted step"), "{rec}");
    assert!(rec.contains("nosuchdrv"), "{rec}");
    assert_eq!(journal.read().unwrap(), None);
}

#[test]
fn a_failed_step_is_undone_and_named() {
    let n = node(2..3);
    // bind cannot be written: the step fails after unbind and override.
    let bind = n.sysfs.root().join("bus/pci/drivers/vfio-pci/bind");
    fs::remove_file(&bind).unwrap();
    fs::create_dir(&bind).unwrap();
    let e = run(
        &n,
        "policies:
  - {pfNames: [\"enp5s0#0\"], numVfs: 3, deviceType: vfio-pci}
  - {pfNames: [\"enp5s0#1-2\"], numVfs: 3}",
    )
    .unwrap_err()
    .to_string();
    // VF 0's step runs first and fails at bind; the undo puts igbvf back.
    assert!(
        e.contains("VF 0000:05:10.0 (from igbvf) to vfio-pci"),
        "{e}"
    );
    assert!(e.contains("drivers/vfio-pci/bind"), "{e}");
    assert!(e.ends_with("(step undone)"), "{e}");
    let dev = n.sysfs.pci_device(vf("0000:05:10.0"));
    assert_eq!(dev.driver_override().unwrap(), None);
    assert_eq!(Journal::open(&n.opts.state_dir).read().unwrap(), None);
}

#[test]
fn a_kernel_that_ignores_writes_is_reported_not_looped_on() {
    // Back to the kernel driver with a VF MTU: the MTU waits for a netdev
    // the fake tree never creates, so every round plans the same step.
    let n = node(2..3);
    let e = run(
        &n,
        "policies: [{pfNames: [enp5s0], numVfs: 3, vfMtu: 9000}]",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("still changes to make after 4 rounds"), "{e}");
    assert!(
        e.contains("VF 0000:05:10.4 (from vfio-pci) to its kernel driver"),
        "{e}"
    );
}

#[test]
fn recovery_does_not_redo_a_finished_count_change() {
    // Killed after `sriov_numvfs` reached 3 but before the journal moved
    // on: finishing the step must not write 0 again (and destroy VFs).
    let n = node(0..1);
    let pf = vf("0000:05:00.0");
    let step = Step {
        summary: "PF 0000:05:00.0 numVfs 1 -> 3".into(),
        actions: vec![
            Action::SetNumVfs { pf, count: 0 },
            Action::SetNumVfs { pf, count: 3 },
            Action::WaitVfs { pf, count: 3 },
        ],
        undo: vec![],
    };
    let journal = Journal::open(&n.opts.state_dir);
    journal.begin(&Record::new(vec![step])).unwrap();
    let r = run(&n, VF0_VFIO).unwrap();
    assert!(r.recovered.unwrap().starts_with("finished"));
    let writes: Vec<String> = r.actions.iter().map(|a| a.action.to_string()).collect();
    assert_eq!(writes, ["wait for 3 VFs of 0000:05:00.0"]);
    assert_eq!(n.sysfs.pci_device(pf).sriov_numvfs().unwrap(), 3);
}

#[test]
fn recovery_without_a_policy_rolls_back_and_clears_the_journal() {
    let n = node(0..1);
    assert_eq!(
        recover_interrupted(&n.sysfs, &BTreeSet::new(), &n.opts).unwrap(),
        None,
        "no journal, nothing to do"
    );
    let addr = vf("0000:05:10.2");
    let step = Step {
        summary: "VF 0000:05:10.2 (from igbvf) to nosuchdrv".into(),
        actions: vec![Action::Bind {
            vf: addr,
            driver: "nosuchdrv".into(),
        }],
        undo: vec![Action::ClearDriverOverride { vf: addr }],
    };
    let journal = Journal::open(&n.opts.state_dir);
    journal.begin(&Record::new(vec![step])).unwrap();
    let outcome = recover_interrupted(&n.sysfs, &BTreeSet::new(), &n.opts)
        .unwrap()
        .unwrap();
    assert!(
        outcome.starts_with("rolled back interrupted step"),
        "{outcome}"
    );
    assert_eq!(journal.read().unwrap(), None);
}
