//! Policy from the cluster (issue 17): the `fastpath agent
//! --policy-source cluster` binary against the stand-in API server (in
//! this process), a fake kubelet and a fake sysfs with one igb PF whose VFs
//! a fake kernel thread (tests/operate/kernel.rs, in this process) creates
//! when `sriov_numvfs` is written.
//!
//! 1. A SriovNetworkNodePolicy changed to the plan applied: (a) `numVfs`
//!    2 <-> 3 (provisioning writes the count, the fake kernel makes the
//!    VFs, the pool's ListAndWatch follows, the node state says Succeeded);
//!    (b) `resourceName` swapped, same VFs (a pools-only change: no kernel
//!    work; done when kubelet has the new pool with its VFs and the node
//!    state is Succeeded). fastpath's time is the agent process's CPU time
//!    over the change (clock_getcpuclockid on its pid: all threads), from
//!    just before the object changes to 150 ms after the change is seen
//!    done (so the status write and Events are in). The fake kernel's
//!    work is in this process, so it is not in that figure; the agent's
//!    own system calls on the fake tree are. `--rescan-interval 60s`: no
//!    periodic round runs during the changes.
//! 2. Idle: a second agent with `--rescan-interval 50ms`, settled, then
//!    100 rescans (counted from its /metrics) with the request log cleared:
//!    every request by verb, writes asserted 0; the agent's CPU over them;
//!    its VmRSS and VmHWM with the client running.
//!
//! The binary is `FASTPATH_BENCH_BIN` (hack/bench.d/cluster-policy passes
//! the shipped build from hack/build-release), else cargo's release build.
//! `FASTPATH_BENCH_CYCLES` sets the changes per kind (default 30).

mod cluster_bed;
#[path = "../tests/operate/kernel.rs"]
mod kernel;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cluster_bed::{Summary, header, ms, pid_cpu};
use fake_apiserver::FakeApiServer;
use fake_kubelet::{DeviceWatch, FakeKubelet, PluginClient};
use kernel::FakeKernel;
use serde_json::{Value, json};
use sysfs_fixture::presets::igb;
use sysfs_fixture::{FakeSysfs, PfSpec};

const PF: &str = "0000:05:00.0";
const NS: &str = "fastpath";
const NODE: &str = "node-a";
const STATE: (&str, &str) = ("sriovnetwork.openshift.io/v1", "SriovNetworkNodeState");
const T: Duration = Duration::from_secs(20);

fn pf(n: usize) -> PfSpec {
    igb(PF, "enp5s0", "0000:05:10.0", n).iommu_groups(10)
}

fn cycles() -> usize {
    std::env::var("FASTPATH_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

fn policy(resource: &str, n: u32) -> Value {
    json!({"apiVersion": "sriovnetwork.openshift.io/v1", "kind": "SriovNetworkNodePolicy",
           "metadata": {"name": "igb-net", "namespace": NS},
           "spec": {"resourceName": resource, "nodeSelector": {"sriov": "yes"},
                    "numVfs": n, "nicSelector": {"pfNames": ["enp5s0"]}}})
}

fn bin() -> PathBuf {
    std::env::var_os("FASTPATH_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fastpath")))
}

fn tree() -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let fs = FakeSysfs::new(dir.path().join("sys")).unwrap();
    fs.add_pf(&pf(0)).unwrap();
    std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
    std::fs::write(dir.path().join("proc/net/route"), "Iface\tDestination\n").unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"resourceList":[]}"#).unwrap();
    std::fs::create_dir_all(dir.path().join("dp")).unwrap();
    (dir, fs)
}

fn spawn_agent(dir: &Path, url: &str, rescan: &str, http: &str) -> tokio::process::Child {
    let d = |p: &str| dir.join(p);
    tokio::process::Command::new(bin())
        .env(
            "RUST_LOG",
            std::env::var("BENCH_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .arg("--sysfs-root")
        .arg(d("sys"))
        .arg("agent")
        .arg("--config")
        .arg(d("config.json"))
        .arg("--device-plugin-dir")
        .arg(d("dp"))
        .arg("--plugins-registry-dir")
        .arg(d("no-registry"))
        .arg("--devinfo-dir")
        .arg(d("devinfo"))
        .arg("--state-dir")
        .arg(d("state"))
        .arg("--proc-root")
        .arg(d("proc"))
        .args(["--rescan-interval", rescan, "--http-addr", http])
        .args([
            "--policy-source",
            "cluster",
            "--node-name",
            NODE,
            "--namespace",
            NS,
        ])
        .args(["--kube-api-server", url])
        .stderr(if std::env::var_os("BENCH_AGENT_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The node state says Succeeded with `n` VFs on the PF.
fn synced(server: &FakeApiServer, n: u64) -> bool {
    server
        .get(STATE.0, STATE.1, Some(NS), NODE)
        .is_some_and(|s| {
            s["status"]["syncStatus"] == "Succeeded" && s["status"]["interfaces"][0]["numVfs"] == n
        })
}

async fn until_synced(server: &FakeApiServer, n: u64) {
    let t0 = Instant::now();
    while !synced(server, n) {
        assert!(
            t0.elapsed() < T,
            "node state never said Succeeded with {n} VFs"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// kubelet's view of the pool `resource`: registered, then its
/// ListAndWatch until it lists `n` devices.
async fn pool(kubelet: &mut FakeKubelet, resource: &str, n: usize) -> DeviceWatch {
    loop {
        let reg = kubelet.next_registration(T).await.expect("a registration");
        if reg.resource_name != format!("openshift.io/{resource}") {
            continue;
        }
        let mut c = PluginClient::connect(&kubelet.endpoint_path(&reg))
            .await
            .unwrap();
        let mut w = c.list_and_watch().await.unwrap();
        w.until(T, |r| r.devices.len() == n)
            .await
            .expect("the pool lists its VFs");
        return w;
    }
}

/// utime + stime of `pid` in clock ticks (for the user/system split only:
/// ticks are 10 ms).
fn ticks(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("binary: {}", bin().display());
    let server = FakeApiServer::start().await.unwrap();
    server
        .seed(json!({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": NODE, "labels": {"sriov": "yes"}}}))
        .unwrap();
    server.seed(policy("igbvf", 2)).unwrap();
    changes(&server).await;
    idle(&server).await;
}

struct Change {
    cpu: Duration,
    wall: Duration,
}

fn report(what: &str, v: &[Change]) {
    let cpu = Summary::of(&v.iter().map(|c| c.cpu).collect::<Vec<_>>());
    let wall = Summary::of(&v.iter().map(|c| c.wall).collect::<Vec<_>>());
    println!("{what}:");
    println!("  agent CPU (all threads, object changed -> done + 150 ms): {cpu}");
    println!("  wall (object changed -> applied and served): {wall}");
}

async fn changes(server: &FakeApiServer) {
    header("Policy object changed -> plan applied");
    let (dir, fs) = tree();
    let _kernel = FakeKernel::start(fs, PF, pf);
    let mut kubelet = FakeKubelet::start(&dir.path().join("dp")).await.unwrap();
    let child = spawn_agent(dir.path(), &server.url(), "60s", "off");
    let pid = child.id().unwrap();
    let mut w = pool(&mut kubelet, "igbvf", 2).await;
    until_synced(server, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let settle = Duration::from_millis(150);
    let n = cycles();
    // (a) numVfs 2 <-> 3, same pool. Growing waits for the fake kernel's
    // new VFs; shrinking finds the VFs it keeps already there.
    let (mut grow, mut shrink) = (Vec::new(), Vec::new());
    let mut t_vfs = (0, 0);
    let mut want = 2usize;
    for i in 0..2 * n + 4 {
        want = if want == 2 { 3 } else { 2 };
        let (c0, k0, w0) = (pid_cpu(pid), ticks(pid), Instant::now());
        server.seed(policy("igbvf", want as u32)).unwrap();
        w.until(T, |r| r.devices.len() == want)
            .await
            .expect("the pool follows");
        until_synced(server, want as u64).await;
        let wall = w0.elapsed();
        tokio::time::sleep(settle).await;
        let (c1, k1) = (pid_cpu(pid), ticks(pid));
        // The first changes warm the agent up (first rebind of the
        // count, first status patch); they are not counted.
        if i >= 4 {
            let c = Change { cpu: c1 - c0, wall };
            if want == 3 {
                grow.push(c)
            } else {
                shrink.push(c)
            }
            t_vfs = (t_vfs.0 + k1.0 - k0.0, t_vfs.1 + k1.1 - k0.1);
        }
    }
    report(
        &format!("(a) numVfs 2 -> 3 ({} changes)", grow.len()),
        &grow,
    );
    report(
        &format!("(a) numVfs 3 -> 2 ({} changes)", shrink.len()),
        &shrink,
    );
    let all: Vec<Change> = grow.into_iter().chain(shrink).collect();
    report(
        &format!("(a) both directions ({} changes)", all.len()),
        &all,
    );
    println!(
        "  user / system split over them: {} / {} clock ticks (10 ms each)",
        t_vfs.0, t_vfs.1
    );

    // (b) resourceName swapped: provisioning has nothing to do.
    let mut pools = Vec::new();
    let mut t_pools = (0, 0);
    let names = ["igbvf-b", "igbvf"];
    for i in 0..n + 2 {
        let name = names[i % 2];
        let (c0, k0, w0) = (pid_cpu(pid), ticks(pid), Instant::now());
        server.seed(policy(name, want as u32)).unwrap();
        let _w = pool(&mut kubelet, name, want).await;
        until_synced(server, want as u64).await;
        let wall = w0.elapsed();
        tokio::time::sleep(settle).await;
        let (c1, k1) = (pid_cpu(pid), ticks(pid));
        if i >= 2 {
            pools.push(Change { cpu: c1 - c0, wall });
            t_pools = (t_pools.0 + k1.0 - k0.0, t_pools.1 + k1.1 - k0.1);
        }
    }
    report(
        &format!(
            "(b) resourceName swapped, no kernel work ({} changes)",
            pools.len()
        ),
        &pools,
    );
    println!(
        "  user / system split over them: {} / {} clock ticks (10 ms each)",
        t_pools.0, t_pools.1
    );
    // The same settle time with nothing happening, for scale.
    let c0 = pid_cpu(pid);
    tokio::time::sleep(settle).await;
    println!(
        "  agent CPU over {} ms with no change: {} ms",
        settle.as_millis(),
        ms(pid_cpu(pid) - c0)
    );
    drop(child);
    kubelet.stop().await;
}

/// `fastpath_rescan_duration_seconds_count` from the agent's /metrics.
async fn rescans(addr: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("fastpath_rescan_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the rescan count in /metrics")
}

async fn idle(server: &FakeApiServer) {
    header("Idle agent, --rescan-interval 50ms");
    let (dir, fs) = tree();
    let _kernel = FakeKernel::start(fs, PF, pf);
    let mut kubelet = FakeKubelet::start(&dir.path().join("dp")).await.unwrap();
    server.seed(policy("igbvf", 2)).unwrap();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let child = spawn_agent(dir.path(), &server.url(), "50ms", &addr);
    let pid = child.id().unwrap();
    let _w = pool(&mut kubelet, "igbvf", 2).await;
    until_synced(server, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    server.clear_requests();
    let (r0, c0, w0) = (rescans(&addr).await, pid_cpu(pid), Instant::now());
    let mut r1 = r0;
    while r1 < r0 + 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        r1 = rescans(&addr).await;
    }
    let (c1, wall) = (pid_cpu(pid), w0.elapsed());
    let reqs = server.requests();
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for r in &reqs {
        *by.entry(format!("{} {}", r.verb, r.resource)).or_default() += 1;
    }
    let writes = reqs.iter().filter(|r| r.is_write()).count();
    println!(
        "{} rescans in {:.1} s: {} API requests, {writes} writes (asserted 0); by verb: {by:?}",
        r1 - r0,
        wall.as_secs_f64(),
        reqs.len()
    );
    assert_eq!(writes, 0, "{reqs:#?}");
    println!(
        "  agent CPU over them: {} ms ({} ms per rescan, both loops and the /metrics reads)",
        ms(c1 - c0),
        ms((c1 - c0) / (r1 - r0) as u32)
    );
    println!(
        "  VmRSS {} KiB ({:.1} MiB), VmHWM {} KiB, with the client, its watches, the pool and /metrics",
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:")
    );
    drop(child);
    kubelet.stop().await;
}
