//! fastpath's own time in provisioning, natively: inventory scan + host
//! facts + plan over a fake tree, the work `fastpath apply` does around
//! the kernel's. Prints the median of repeated runs.
//!
//! `cargo bench --bench provision`

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use fastpath::procfs::Procfs;
use fastpath::provision::{Policy, facts, plan};
use fastpath::sysfs::Sysfs;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::{e810, igb};

const RUNS: usize = 101;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(name: &str, sysfs: &Sysfs, procfs: &Procfs, policy: &str) {
    let policy = Policy::parse(policy, Path::new(name)).expect("policy");
    let held = BTreeSet::new();
    let mut times = Vec::with_capacity(RUNS);
    let mut steps = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let inv = fastpath::inventory::scan(sysfs).expect("scan");
        let f = facts::gather(sysfs, procfs, &inv, None, false).expect("facts");
        let p = plan(&inv, &policy, &held, &f).expect("plan");
        times.push(t.elapsed());
        steps = p.steps.len();
    }
    println!(
        "{name:<40} median {:>8.3} ms over {RUNS} runs ({steps} steps planned)",
        median(times).as_secs_f64() * 1000.0
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("sys");
    let fs = FakeSysfs::new(&root).expect("fake sysfs");
    fs.add_pf(
        &e810("0000:3b:00.0", "ens1f0", "0000:3b:01.0", 128)
            .iommu_groups(100)
            .vfio(0..64),
    )
    .expect("e810");
    fs.add_pf(&igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 7).iommu_groups(10))
        .expect("igb");
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(proc_root.join("net")).expect("proc");
    std::fs::write(
        proc_root.join("net/route"),
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n",
    )
    .expect("route");
    let sysfs = Sysfs::new(&root);
    let procfs = Procfs::new(&proc_root);
    bench(
        "135 VFs, already as wanted (re-apply)",
        &sysfs,
        &procfs,
        "policies:
  - {pfNames: [\"ens1f0#0-63\"], numVfs: 128, deviceType: vfio-pci}
  - {pfNames: [\"ens1f0#64-127\"], numVfs: 128}
  - {pfNames: [enp5s0], numVfs: 7}",
    );
    bench(
        "135 VFs, 128 to rebind",
        &sysfs,
        &procfs,
        "policies:
  - {pfNames: [\"ens1f0#0-63\"], numVfs: 128}
  - {pfNames: [\"ens1f0#64-127\"], numVfs: 128, deviceType: vfio-pci}
  - {pfNames: [enp5s0], numVfs: 7, deviceType: vfio-pci}",
    );
    bench(
        "igb 7 -> 2 VFs",
        &sysfs,
        &procfs,
        "policies: [{pfNames: [enp5s0], numVfs: 2}]",
    );
}
