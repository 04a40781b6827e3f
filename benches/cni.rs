//! CNI ADD+DEL benchmark on veth stand-ins (run as root; `hack/bench.d/cni`).
//!
//! Side by side in one run, interleaved so that machine noise hits all
//! three alike: one ADD+DEL cycle by (a) the fastpath binary, (b) Debian's
//! host-device plugin moving the same veth with the same config, (c) the
//! kernel floor: two single-message netns moves done in-process. Then 16
//! concurrent fastpath ADDs on 16 VFs against 16 single moves. Prints
//! medians and ratios as Markdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use serde_json::{Value, json};
use sysfs_fixture::{FakeSysfs, NetSpec, presets};

const CONCURRENT: usize = 16;

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {}", args.join(" "));
}

struct Bed {
    pod: String,
    far: String,
    veths: Vec<String>,
    sysfs: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for v in &self.veths {
            let _ = Command::new("ip").args(["link", "del", v]).output();
        }
        for n in [&self.pod, &self.far] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Bed {
    fn new() -> Self {
        let tag = format!("fb{}", std::process::id());
        let pod = format!("{tag}-pod");
        let far = format!("{tag}-far");
        let mut bed = Bed {
            pod: pod.clone(),
            far: far.clone(),
            veths: Vec::new(),
            sysfs: tempfile::tempdir().unwrap(),
            // FASTPATH_BENCH_STATE_BASE puts the state dir elsewhere (e.g.
            // /run, a tmpfs) to show what the record's fsync costs.
            state: match std::env::var("FASTPATH_BENCH_STATE_BASE") {
                Ok(base) => tempfile::tempdir_in(base).unwrap(),
                Err(_) => tempfile::tempdir_in("/var/tmp").unwrap(),
            },
        };
        ip(&["netns", "add", &pod]);
        ip(&["netns", "add", &far]);
        let mut pf = presets::e810("0000:3b:00.0", "benchpf", "0000:3b:01.0", CONCURRENT + 1);
        for (i, vf) in pf.vfs.iter_mut().enumerate() {
            let name = format!("{tag}v{i}");
            let peer = format!("{tag}p{i}");
            ip(&[
                "link", "add", &name, "type", "veth", "peer", "name", &peer, "netns", &far,
            ]);
            vf.netdev = Some(NetSpec::ether(&name, "02:00:00:00:00:01"));
            bed.veths.push(name);
        }
        FakeSysfs::new(bed.sysfs.path())
            .unwrap()
            .add_pf(&pf)
            .unwrap();
        bed
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.pod)
    }

    fn exec(&self, bin: &str, cmd: &str, container: &str, ifname: &str, conf: &Value) {
        let mut child = Command::new(bin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", ifname)
            .env("CNI_NETNS", self.netns_path())
            .env("CNI_PATH", "/usr/lib/cni")
            .env("FASTPATH_STATE_DIR", self.state.path())
            .env("FASTPATH_SYSFS_ROOT", self.sysfs.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{bin} {cmd}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn fastpath_conf(&self, vf: usize) -> Value {
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "fastpath",
               "deviceID": presets::nth_addr("0000:3b:01.0", vf), "logLevel": "error"})
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// In-process: host -> pod (renamed) and pod -> host (renamed back).
fn floor_cycle(host: &NetNs, pod: &NetNs, name: &str) -> Duration {
    let start = Instant::now();
    let mut nl = Netlink::open().unwrap();
    let link = nl.require_link(name).unwrap();
    nl.move_to_netns(&link, pod.raw_fd(), "net1").unwrap();
    pod.run(|| {
        let mut nl = Netlink::open().unwrap();
        let l = nl.require_link("net1").unwrap();
        nl.move_to_netns(&l, host.raw_fd(), name).unwrap();
    })
    .unwrap();
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters: usize = std::env::var("FASTPATH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21);
    // hack/bench.d/cni measures the binary as it ships (hack/build-release);
    // `cargo bench` alone measures cargo's own build of it.
    let fastpath_bin = std::env::var("FASTPATH_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fastpath").to_string());
    let fastpath = fastpath_bin.as_str();
    let host_device = "/usr/lib/cni/host-device";
    let bed = Bed::new();
    let host = NetNs::current().unwrap();
    let pod = NetNs::open(bed.netns_path()).unwrap();
    let v0 = bed.veths[0].clone();
    let hd_conf =
        json!({"cniVersion": "1.0.0", "name": "bench", "type": "host-device", "device": v0});

    // Warm up caches and the page cache for both binaries.
    bed.exec(fastpath, "ADD", "warm", "net1", &bed.fastpath_conf(0));
    bed.exec(fastpath, "DEL", "warm", "net1", &bed.fastpath_conf(0));
    bed.exec(host_device, "ADD", "warm", "net1", &hd_conf);
    bed.exec(host_device, "DEL", "warm", "net1", &hd_conf);

    let (mut fp, mut hd, mut fl) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        let c = format!("c{i}");
        let t = Instant::now();
        bed.exec(fastpath, "ADD", &c, "net1", &bed.fastpath_conf(0));
        bed.exec(fastpath, "DEL", &c, "net1", &bed.fastpath_conf(0));
        fp.push(t.elapsed());
        let t = Instant::now();
        bed.exec(host_device, "ADD", &c, "net1", &hd_conf);
        bed.exec(host_device, "DEL", &c, "net1", &hd_conf);
        hd.push(t.elapsed());
        fl.push(floor_cycle(&host, &pod, &v0));
    }
    let (fp, hd, fl) = (median(&mut fp), median(&mut hd), median(&mut fl));

    let rounds = iters.div_ceil(4).max(3);
    let (mut conc, mut singles) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 1..=CONCURRENT {
                let bed = &bed;
                s.spawn(move || {
                    bed.exec(
                        fastpath,
                        "ADD",
                        &format!("r{r}v{i}"),
                        &format!("net{i}"),
                        &bed.fastpath_conf(i),
                    );
                });
            }
        });
        conc.push(t.elapsed());
        for i in 1..=CONCURRENT {
            bed.exec(
                fastpath,
                "DEL",
                &format!("r{r}v{i}"),
                &format!("net{i}"),
                &bed.fastpath_conf(i),
            );
        }
        // 16 single moves, one after the other, then back (not timed).
        let mut nl = Netlink::open().unwrap();
        let t = Instant::now();
        for i in 1..=CONCURRENT {
            let l = nl.require_link(&bed.veths[i]).unwrap();
            nl.move_to_netns(&l, pod.raw_fd(), &format!("net{i}"))
                .unwrap();
        }
        singles.push(t.elapsed());
        pod.run(|| {
            let mut nl = Netlink::open().unwrap();
            for i in 1..=CONCURRENT {
                let l = nl.require_link(&format!("net{i}")).unwrap();
                nl.move_to_netns(&l, host.raw_fd(), &bed.veths[i]).unwrap();
            }
        })
        .unwrap();
    }
    let (conc, singles) = (median(&mut conc), median(&mut singles));

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(bed.state.path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "`hack/bench.d/cni`: {iters} interleaved cycles, kernel {}, {} CPUs, state dir {} ({fs}), binary {fastpath}.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bed.state.path().display()
    );
    println!();
    println!("| one ADD+DEL cycle on a veth stand-in | median | vs floor |");
    println!("|---|---|---|");
    for (what, d) in [
        ("(a) fastpath binary (ADD exec + DEL exec)", fp),
        ("(b) Debian host-device 1.1.1, same veth, same config", hd),
        (
            "(c) kernel floor: two single-message netns moves in-process",
            fl,
        ),
    ] {
        println!(
            "| {what} | {} | {:+.2} ms |",
            ms(d),
            (d.as_secs_f64() - fl.as_secs_f64()) * 1e3
        );
    }
    println!();
    println!(
        "fastpath / host-device = {:.2} (target <= 0.80); fastpath - floor = {:.2} ms (target <= 3 ms).",
        fp.as_secs_f64() / hd.as_secs_f64(),
        (fp.as_secs_f64() - fl.as_secs_f64()) * 1e3
    );
    println!();
    println!("| 16 VFs ({rounds} rounds) | median |");
    println!("|---|---|");
    println!("| 16 concurrent fastpath ADDs (wall) | {} |", ms(conc));
    println!(
        "| 16 single moves in-process, one after another | {} |",
        ms(singles)
    );
    println!();
    println!(
        "concurrent ADDs / single moves = {:.2} (target <= 1.2).",
        conc.as_secs_f64() / singles.as_secs_f64()
    );
}
