//! Device-plugin benchmarks against the `fastpath agent` binary as it ships
//! (`FASTPATH_BENCH_BIN`, set by `hack/bench.d/deviceplugin` to the output
//! of `hack/build-release`; without it, cargo's release build)
//! and a fake kubelet, on a fake sysfs with 1,024 VFs (8 E810 PFs x 128)
//! in 8 pools. Prints medians over repeated runs:
//! - process start to the first ListAndWatch response of every pool;
//! - agent RSS while serving them;
//! - Allocate round trip p99 (median of per-run p99s);
//! - a VF appearing in sysfs to the ListAndWatch update (500 ms rescan).
//!
//! Run with `hack/bench.d/deviceplugin` (or `cargo bench --bench deviceplugin`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_kubelet::{FakeKubelet, PluginClient};
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::e810;

const PFS: usize = 8;
const VFS: usize = 128;
const RUNS: usize = 10;
const T: Duration = Duration::from_secs(20);

fn pf_spec(i: usize, vfs: usize) -> sysfs_fixture::PfSpec {
    let bus = 0x10 + 0x10 * i;
    e810(
        &format!("0000:{bus:02x}:00.0"),
        &format!("ens{i}f0"),
        &format!("0000:{:02x}:00.0", bus + 1),
        vfs,
    )
    .numa((i % 2) as i32)
}

fn setup(dir: &Path) -> FakeSysfs {
    let fs = FakeSysfs::new(dir.join("sys")).unwrap();
    for i in 0..PFS {
        fs.add_pf(&pf_spec(i, VFS)).unwrap();
    }
    let pools: Vec<String> = (0..PFS)
        .map(|i| format!(r#"{{"resourceName":"pool{i}","selectors":{{"pfNames":["ens{i}f0"]}}}}"#))
        .collect();
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"resourceList":[{}]}}"#, pools.join(",")),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("proc/net")).unwrap();
    std::fs::write(dir.join("proc/net/route"), "Iface\n").unwrap();
    std::fs::create_dir_all(dir.join("dp")).unwrap();
    fs
}

/// The binary under test: the shipped build when the wrapper names it.
fn agent_binary() -> PathBuf {
    std::env::var_os("FASTPATH_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fastpath")))
}

fn spawn_agent(dir: &Path) -> tokio::process::Child {
    tokio::process::Command::new(agent_binary())
        // BENCH_AGENT_LOG=info shows the agent's own timings on stderr.
        .env(
            "RUST_LOG",
            std::env::var("BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .arg("--sysfs-root")
        .arg(dir.join("sys"))
        .arg("agent")
        .arg("--config")
        .arg(dir.join("config.json"))
        .arg("--device-plugin-dir")
        .arg(dir.join("dp"))
        .arg("--plugins-registry-dir")
        .arg(dir.join("no-registry"))
        .arg("--devinfo-dir")
        .arg(dir.join("devinfo"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--proc-root")
        .arg(dir.join("proc"))
        .arg("--rescan-interval")
        .arg("500ms")
        .stderr(if std::env::var_os("BENCH_AGENT_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

struct Run {
    start_ms: f64,
    rss_mib: f64,
    alloc_p50_us: f64,
    alloc_p99_us: f64,
    appear_ms: f64,
}

async fn one_run(dir: &Path, fs: &FakeSysfs, run: usize) -> Run {
    let dp: PathBuf = dir.join("dp");
    let mut kubelet = FakeKubelet::start(&dp).await.unwrap();
    let t0 = Instant::now();
    let mut child = spawn_agent(dir);
    // Process start to the first ListAndWatch response of every pool.
    let regs = kubelet.registrations(PFS, T).await;
    assert_eq!(regs.len(), PFS, "all pools register");
    let mut watches = Vec::new();
    let mut clients = Vec::new();
    for r in &regs {
        let mut c = PluginClient::connect(&kubelet.endpoint_path(r))
            .await
            .unwrap();
        let mut w = c.list_and_watch().await.unwrap();
        let first = w.next(T).await.unwrap();
        // Earlier runs each added one VF to the last PF.
        assert!(first.devices.len() >= VFS);
        watches.push((r.resource_name.clone(), w));
        clients.push((r.resource_name.clone(), c));
    }
    let start_ms = t0.elapsed().as_secs_f64() * 1e3;

    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rss_mib = rss_kib(pid) as f64 / 1024.0;

    // Allocate round trips on one pool.
    let (_, c) = clients
        .iter_mut()
        .find(|(n, _)| n == "intel.com/pool0")
        .unwrap();
    let mut lat = Vec::with_capacity(1000);
    for i in 0..1000 {
        let id = sysfs_fixture::presets::nth_addr("0000:11:00.0", i % VFS);
        let t = Instant::now();
        c.allocate(&[id]).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let alloc_p50_us = percentile(&mut lat, 0.50);
    let alloc_p99_us = percentile(&mut lat, 0.99);

    // A VF appears on the last PF: time until ListAndWatch shows it.
    let last = PFS - 1;
    let grown = pf_spec(last, VFS + 1 + run);
    let idx = VFS + run;
    let name = format!("intel.com/pool{last}");
    let (_, w) = watches.iter_mut().find(|(n, _)| *n == name).unwrap();
    let t = Instant::now();
    fs.add_vf(&grown, idx, &grown.vfs[idx]).unwrap();
    let want = VFS + run + 1;
    assert_eq!(grown.vfs.len(), want);
    w.until(T, |l| l.devices.len() == want)
        .await
        .expect("VF appears");
    let appear_ms = t.elapsed().as_secs_f64() * 1e3;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = tokio::time::timeout(T, child.wait()).await;
    kubelet.stop().await;
    Run {
        start_ms,
        rss_mib,
        alloc_p50_us,
        alloc_p99_us,
        appear_ms,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = setup(dir.path());
    let mut runs = Vec::new();
    let n: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    for run in 0..n {
        let r = rt.block_on(one_run(dir.path(), &fs, run));
        eprintln!(
            "run {run}: start->first list {:.1} ms, rss {:.1} MiB, allocate p50 {:.0} us p99 {:.0} us, VF appear->update {:.0} ms",
            r.start_ms, r.rss_mib, r.alloc_p50_us, r.alloc_p99_us, r.appear_ms
        );
        runs.push(r);
    }
    let col = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    println!(
        "device plugin, {} VFs in {PFS} pools, median of {n} runs, binary {}:",
        PFS * VFS,
        agent_binary().display()
    );
    println!(
        "  process start -> first ListAndWatch (all pools): {:.1} ms (target < 50 ms)",
        col(|r| r.start_ms)
    );
    println!(
        "  agent RSS serving them:                         {:.1} MiB (target < 15 MiB)",
        col(|r| r.rss_mib)
    );
    println!(
        "  Allocate round trip p50:                        {:.0} us",
        col(|r| r.alloc_p50_us)
    );
    println!(
        "  Allocate round trip p99:                        {:.0} us (target < 1000 us)",
        col(|r| r.alloc_p99_us)
    );
    println!(
        "  VF appears in sysfs -> ListAndWatch update:     {:.0} ms (target < 1000 ms, rescan 500ms)",
        col(|r| r.appear_ms)
    );
}
