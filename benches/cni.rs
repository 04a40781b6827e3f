//! CNI ADD+DEL benchmark on veth stand-ins (run as root; `hack/bench.d/cni`).
//!
//! Side by side in one run, interleaved so that machine noise hits all
//! four alike: one ADD+DEL cycle by (a) the fastpath binary, (b) Debian's
//! host-device plugin moving the same veth with the same config, (c) the
//! kernel floor: two single-message netns moves done in-process, (d) the
//! same two moves by `ip`, the second under `nsenter --net` (the cost of a
//! process that does nothing but the move). The cycles run twice: back to back, and settled
//! (idle before each), since what ran just before a move changes how long
//! the kernel makes it wait. Then 16 concurrent fastpath ADDs on 16 VFs
//! against 16 single moves and against 16 concurrent `ip` moves, each
//! timed from a settled start. Prints medians and ratios as Markdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use serde_json::{Value, json};
use sysfs_fixture::{FakeSysfs, NetSpec, presets};

const CONCURRENT: usize = 16;

/// Runs a setup or baseline command; it must succeed.
fn run(program: &str, args: &[&str]) {
    let ok = Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{program} {}", args.join(" "));
}

fn ip(args: &[&str]) {
    run("ip", args);
}

struct Bed {
    pod: String,
    far: String,
    /// The bench's own netns under /run/netns, so that `ip` in the pod can
    /// name it as the destination of the move back.
    home: String,
    veths: Vec<String>,
    sysfs: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for v in &self.veths {
            let _ = Command::new("ip").args(["link", "del", v]).output();
        }
        for n in [&self.pod, &self.far, &self.home] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Bed {
    fn new() -> Self {
        let tag = format!("fb{}", std::process::id());
        let pod = format!("{tag}-pod");
        let far = format!("{tag}-far");
        let home = format!("{tag}-home");
        let mut bed = Bed {
            pod: pod.clone(),
            far: far.clone(),
            home: home.clone(),
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
        ip(&["netns", "attach", &home, &std::process::id().to_string()]);
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

    /// Moves net1..net16 from the pod back to the host under their names.
    fn move_all_home(&self, host: &NetNs, pod: &NetNs) {
        pod.run(|| {
            let mut nl = Netlink::open().unwrap();
            for i in 1..=CONCURRENT {
                let l = nl.require_link(&format!("net{i}")).unwrap();
                nl.move_to_netns(&l, host.raw_fd(), &self.veths[i]).unwrap();
            }
        })
        .unwrap();
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

/// Median and mean of a tool's cycles. Moves wait for RCU grace periods
/// that end on scheduler ticks (4 ms apart at HZ=250), so a median lands
/// on one step or the next; the mean shows the mix of steps.
#[derive(Clone, Copy)]
struct Stat {
    median: Duration,
    mean: Duration,
}

fn stat(mut v: Vec<Duration>) -> Stat {
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    Stat {
        median: median(&mut v),
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// In-process: host -> pod (renamed) and pod -> host (renamed back).
fn floor_cycle(host: &NetNs, pod: &NetNs, name: &str) {
    let mut nl = Netlink::open().unwrap();
    let link = nl.require_link(name).unwrap();
    nl.move_to_netns(&link, pod.raw_fd(), "net1").unwrap();
    pod.run(|| {
        let mut nl = Netlink::open().unwrap();
        let l = nl.require_link("net1").unwrap();
        nl.move_to_netns(&l, host.raw_fd(), name).unwrap();
    })
    .unwrap();
}

/// (d) The same two moves by `ip link set ... netns ... name ...` (iproute2
/// sends each as one RTM_NEWLINK), the second under `nsenter --net`: what
/// a plugin that does nothing but the move costs, process start and exit
/// included.
fn ip_cycle(bed: &Bed, name: &str) {
    ip(&[
        "link", "set", "dev", name, "netns", &bed.pod, "name", "net1",
    ]);
    // `ip -n` would also unshare the mount namespace and remount /sys;
    // nsenter enters only the network namespace before exec'ing `ip`.
    let net = format!("--net={}", bed.netns_path().display());
    run(
        "nsenter",
        &[
            &net, "ip", "link", "set", "dev", "net1", "netns", &bed.home, "name", name,
        ],
    );
}

/// What one cycle runs: the plugin binaries and the floor's namespaces.
struct Tools<'a> {
    fastpath: &'a str,
    host_device: &'a str,
    hd_conf: &'a Value,
    host: &'a NetNs,
    pod: &'a NetNs,
    v0: &'a str,
}

/// The quiet time before each cycle in the settled run: longer than the
/// few RCU grace periods (about 4 ms apart at HZ=250) that the previous
/// cycle's moves and process exits leave running.
const SETTLE: Duration = Duration::from_millis(30);

/// The cycle orders, one per iteration in turn: a Williams Latin square,
/// so that within the four orders each tool comes right after each other
/// tool exactly once (and first once).
const ORDERS: [[usize; 4]; 4] = [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]];

/// Medians of one ADD+DEL cycle by fastpath, host-device, `ip` and the
/// floor. The order changes every iteration (see [`ORDERS`]), so each of
/// the four follows each other one equally often: a netns move waits for RCU callbacks queued
/// just before it (such as a plugin process's exit), and a fixed order
/// would hand that cost to whichever ran after the heaviest exit.
fn cycles(bed: &Bed, t: &Tools, iters: usize, settle: Duration) -> [Stat; 4] {
    let mut runs: [Vec<Duration>; 4] = Default::default();
    for i in 0..iters {
        let c = format!("c{i}");
        for &which in &ORDERS[i % ORDERS.len()] {
            std::thread::sleep(settle);
            let start = Instant::now();
            match which {
                0 => {
                    bed.exec(t.fastpath, "ADD", &c, "net1", &bed.fastpath_conf(0));
                    bed.exec(t.fastpath, "DEL", &c, "net1", &bed.fastpath_conf(0));
                }
                1 => {
                    bed.exec(t.host_device, "ADD", &c, "net1", t.hd_conf);
                    bed.exec(t.host_device, "DEL", &c, "net1", t.hd_conf);
                }
                2 => ip_cycle(bed, t.v0),
                _ => floor_cycle(t.host, t.pod, t.v0),
            }
            runs[which].push(start.elapsed());
        }
    }
    runs.map(stat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let iters: usize = std::env::var("FASTPATH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(21)
        .max(1);
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

    let tools = Tools {
        fastpath,
        host_device,
        hd_conf: &hd_conf,
        host: &host,
        pod: &pod,
        v0: &v0,
    };
    let back_to_back = cycles(&bed, &tools, iters, Duration::ZERO);
    let settled = cycles(&bed, &tools, iters, SETTLE);

    let rounds = iters.div_ceil(4).max(3);
    let (mut conc, mut singles, mut ip_conc) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        std::thread::sleep(SETTLE);
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
        std::thread::sleep(SETTLE);
        let t = Instant::now();
        for i in 1..=CONCURRENT {
            let l = nl.require_link(&bed.veths[i]).unwrap();
            nl.move_to_netns(&l, pod.raw_fd(), &format!("net{i}"))
                .unwrap();
        }
        singles.push(t.elapsed());
        bed.move_all_home(&host, &pod);
        // 16 concurrent `ip` moves: what the process model alone costs.
        std::thread::sleep(SETTLE);
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 1..=CONCURRENT {
                let (bed, name) = (&bed, format!("net{i}"));
                s.spawn(move || {
                    ip(&[
                        "link",
                        "set",
                        "dev",
                        &bed.veths[i],
                        "netns",
                        &bed.pod,
                        "name",
                        &name,
                    ])
                });
            }
        });
        ip_conc.push(t.elapsed());
        bed.move_all_home(&host, &pod);
    }
    let (conc, singles, ip_conc) = (
        median(&mut conc),
        median(&mut singles),
        median(&mut ip_conc),
    );

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // findmnt names ext4 as such; `stat -f` reports its magic as ext2/ext3.
    let fs = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "--target"])
        .arg(bed.state.path())
        .output()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout);
            // Stacked mounts list one line each; the first is the one seen.
            out.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default();
    println!(
        "`hack/bench.d/cni`: {iters} cycles per tool in each run, order balanced (Williams square), kernel {}, {} CPUs, state dir {} ({fs}), binary {fastpath}.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bed.state.path().display()
    );
    for (run, [fp, hd, ipr, fl]) in [
        ("back to back", back_to_back),
        ("settled: 30 ms idle before each cycle", settled),
    ] {
        println!();
        println!(
            "| one ADD+DEL cycle on a veth stand-in, {run} | median | mean | median vs floor |"
        );
        println!("|---|---|---|---|");
        for (what, d) in [
            ("(a) fastpath binary (ADD exec + DEL exec)", fp),
            ("(b) Debian host-device 1.1.1, same veth, same config", hd),
            (
                "(c) kernel floor: two single-message netns moves in-process",
                fl,
            ),
            (
                "(d) iproute2: the same two moves by `ip` (back under `nsenter --net`)",
                ipr,
            ),
        ] {
            println!(
                "| {what} | {} | {} | {:+.2} ms |",
                ms(d.median),
                ms(d.mean),
                (d.median.as_secs_f64() - fl.median.as_secs_f64()) * 1e3
            );
        }
        println!();
        println!(
            "{run}: fastpath / host-device = {:.2} (target <= 0.80); fastpath - floor = {:.2} ms (target <= 3 ms); medians.",
            fp.median.as_secs_f64() / hd.median.as_secs_f64(),
            (fp.median.as_secs_f64() - fl.median.as_secs_f64()) * 1e3
        );
    }
    println!();
    println!("| 16 VFs ({rounds} rounds) | median |");
    println!("|---|---|");
    println!("| 16 concurrent fastpath ADDs (wall) | {} |", ms(conc));
    println!(
        "| 16 single moves in-process, one after another | {} |",
        ms(singles)
    );
    println!(
        "| 16 concurrent `ip link set` moves (wall) | {} |",
        ms(ip_conc)
    );
    println!();
    println!(
        "concurrent ADDs / single moves = {:.2} (target <= 1.2); concurrent `ip` / single moves = {:.2}.",
        conc.as_secs_f64() / singles.as_secs_f64(),
        ip_conc.as_secs_f64() / singles.as_secs_f64()
    );
}
