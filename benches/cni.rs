//! CNI ADD+DEL benchmark on veth stand-ins (run as root; `hack/bench.d/cni`).
//!
//! Side by side in one run, interleaved so that machine noise hits all
//! five alike, one ADD+DEL cycle by: (a) the fastpath binary, (b) Debian's
//! host-device plugin moving the same veth with the same config, (c) the
//! kernel floor as the issue defines it: two single-message netns moves
//! done in-process, (d) a minimal static C program (`cni/mover.c`), exec'd
//! once for the ADD's kernel work (move, rename and up in one message) and
//! once for the DEL's (the move back), and (e) the same two messages as
//! (d), sent in-process. (d) is the least an exec'd plugin can do; (e)
//! beside (c) shows, roughly and settled, what leaving the link up costs
//! (it is opened in the ADD's message and closed inside the move back).
//! The cycles run twice: back to back, and settled (idle before each, for
//! a time spread over the tick period), since what ran just before a
//! move, and where in the tick it starts, change how long the kernel
//! makes it wait (`cni/design.rs`). Then 16 concurrent fastpath ADDs on 16 VFs against
//! 16 single moves and against 16 concurrent minimal movers, each timed
//! from a settled start. Prints medians, means and ratios as Markdown.

#[path = "cni/bed.rs"]
mod bed;
#[path = "cni/design.rs"]
mod design;

use std::process::Command;
use std::time::{Duration, Instant};

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use serde_json::{Value, json};

use bed::{Bed, CONCURRENT, run};

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

/// The DEL half of (c) and (e), in-process: `net1` from the pod back to
/// the host as `name`.
fn move_back(host: &NetNs, pod: &NetNs, name: &str) {
    pod.run(|| {
        let mut nl = Netlink::open().unwrap();
        let l = nl.require_link("net1").unwrap();
        nl.move_to_netns(&l, host.raw_fd(), name).unwrap();
    })
    .unwrap();
}

/// (c) In-process: host -> pod (renamed) and pod -> host (renamed back).
fn floor_cycle(host: &NetNs, pod: &NetNs, name: &str) {
    let mut nl = Netlink::open().unwrap();
    let link = nl.require_link(name).unwrap();
    nl.move_to_netns(&link, pod.raw_fd(), "net1").unwrap();
    move_back(host, pod, name);
}

/// (e) In-process, the messages of (d): move, rename and up in one
/// RTM_NEWLINK, then the move back.
fn floor_up_cycle(host: &NetNs, pod: &NetNs, name: &str) {
    let mut nl = Netlink::open().unwrap();
    let link = nl.require_link(name).unwrap();
    let mut msg = LinkMessage::default();
    msg.header.index = link.index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes.push(LinkAttribute::NetNsFd(pod.raw_fd()));
    msg.attributes.push(LinkAttribute::IfName("net1".into()));
    nl.change(RouteNetlinkMessage::NewLink(msg), &|| {
        format!("moving {name} up")
    })
    .unwrap();
    move_back(host, pod, name);
}

/// (d) The minimal exec'd plugin: the ADD's kernel work (move, rename, up
/// in one message) by one exec of `cni/mover.c`, the DEL's (the move
/// back, from inside the pod) by another.
fn mover_cycle(bed: &Bed, name: &str) {
    let mover = bed.mover.to_str().unwrap();
    let pod = bed.netns_path();
    let pod = pod.to_str().unwrap();
    let home = bed.home_path();
    run(mover, &["-", name, pod, "net1", "up"]);
    run(mover, &[pod, "net1", home.to_str().unwrap(), name, "-"]);
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

/// The least quiet time before each cycle in the settled run: longer
/// than the few RCU grace periods (about 4 ms apart at HZ=250) that the
/// previous cycle's moves and process exits leave running. Each cycle
/// adds [`design::phase_offset`] to it.
const SETTLE: Duration = Duration::from_millis(30);

/// The tools, as indices into a run's results.
const TOOLS: usize = 5;
const FASTPATH: usize = 0;
const HOST_DEVICE: usize = 1;
const FLOOR: usize = 2;
const MOVER: usize = 3;
const FLOOR_UP: usize = 4;

/// `iters` ADD+DEL cycles by each tool, in the order of `seq` (see
/// [`design::sequence`]), round and round: each tool comes right after
/// each other one equally often, also across passes. A netns move waits
/// for RCU callbacks queued just before it (such as a plugin process's
/// exit), and a fixed order would hand that cost to whichever ran after
/// the heaviest exit. With `settle`, each cycle starts after that long
/// plus the tool's next phase offset.
fn cycles(
    bed: &Bed,
    t: &Tools,
    seq: &[usize],
    iters: usize,
    settle: Option<Duration>,
) -> [Stat; TOOLS] {
    let mut runs: [Vec<Duration>; TOOLS] = Default::default();
    for (n, &which) in seq.iter().cycle().take(iters * TOOLS).enumerate() {
        if let Some(settle) = settle {
            std::thread::sleep(settle + design::phase_offset(runs[which].len()));
        }
        let c = format!("c{n}");
        let start = Instant::now();
        match which {
            FASTPATH => {
                bed.exec(t.fastpath, "ADD", &c, "net1", &bed.fastpath_conf(0));
                bed.exec(t.fastpath, "DEL", &c, "net1", &bed.fastpath_conf(0));
            }
            HOST_DEVICE => {
                bed.exec(t.host_device, "ADD", &c, "net1", t.hd_conf);
                bed.exec(t.host_device, "DEL", &c, "net1", t.hd_conf);
            }
            FLOOR => floor_cycle(t.host, t.pod, t.v0),
            MOVER => mover_cycle(bed, t.v0),
            FLOOR_UP => floor_up_cycle(t.host, t.pod, t.v0),
            _ => unreachable!("tool {which}"),
        }
        runs[which].push(start.elapsed());
    }
    runs.map(stat)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seq = design::sequence(TOOLS);
    design::assert_balanced(&seq, TOOLS);
    // Whole passes through the sequence (each tool occurs TOOLS - 1
    // times in one), so that the balance holds.
    let iters = std::env::var("FASTPATH_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(20)
        .max(1)
        .next_multiple_of(TOOLS - 1);
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

    // Warm up caches and the page cache for the binaries.
    bed.exec(fastpath, "ADD", "warm", "net1", &bed.fastpath_conf(0));
    bed.exec(fastpath, "DEL", "warm", "net1", &bed.fastpath_conf(0));
    bed.exec(host_device, "ADD", "warm", "net1", &hd_conf);
    bed.exec(host_device, "DEL", "warm", "net1", &hd_conf);
    mover_cycle(&bed, &v0);

    let tools = Tools {
        fastpath,
        host_device,
        hd_conf: &hd_conf,
        host: &host,
        pod: &pod,
        v0: &v0,
    };
    let back_to_back = cycles(&bed, &tools, &seq, iters, None);
    let settled = cycles(&bed, &tools, &seq, iters, Some(SETTLE));
    let concurrent = concurrency(&bed, fastpath, &host, &pod, iters.div_ceil(4).max(3));

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
        "`hack/bench.d/cni`: {iters} cycles per tool in each run, in a cyclic order where each tool follows each other once ({seq:?}), kernel {}, {} CPUs, state dir {} ({fs}), binary {fastpath}.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bed.state.path().display()
    );
    let settled_title = format!(
        "settled: {}-{} ms idle before each cycle",
        SETTLE.as_millis(),
        (SETTLE + design::PHASE_SPAN).as_millis()
    );
    for (run, stats) in [
        ("back to back", back_to_back),
        (settled_title.as_str(), settled),
    ] {
        print_cycles(run, &stats);
    }
    concurrent.print();
}

fn print_cycles(run: &str, stats: &[Stat; TOOLS]) {
    let floor = stats[FLOOR];
    let vs = |d: Duration, f: Duration| (d.as_secs_f64() - f.as_secs_f64()) * 1e3;
    println!();
    println!(
        "| one ADD+DEL cycle on a veth stand-in, {run} | median | mean | vs floor (median) | vs floor (mean) |"
    );
    println!("|---|---|---|---|---|");
    for (what, which) in [
        ("(a) fastpath binary (ADD exec + DEL exec)", FASTPATH),
        (
            "(b) Debian host-device 1.1.1, same veth, same config",
            HOST_DEVICE,
        ),
        (
            "(c) kernel floor: two single-message netns moves in-process",
            FLOOR,
        ),
        (
            "(d) minimal static C mover, exec'd: move+rename+up, then move back",
            MOVER,
        ),
        ("(e) the messages of (d), in-process", FLOOR_UP),
    ] {
        let d = stats[which];
        println!(
            "| {what} | {} | {} | {:+.2} ms | {:+.2} ms |",
            ms(d.median),
            ms(d.mean),
            vs(d.median, floor.median),
            vs(d.mean, floor.mean)
        );
    }
    let (fp, hd, mv) = (stats[FASTPATH], stats[HOST_DEVICE], stats[MOVER]);
    println!();
    for (stat, pick) in [
        ("medians", (|s: Stat| s.median) as fn(Stat) -> Duration),
        ("means", |s: Stat| s.mean),
    ] {
        let ratio = |a: Stat, b: Stat| pick(a).as_secs_f64() / pick(b).as_secs_f64();
        println!(
            "{run}, {stat}: fastpath / host-device = {:.2} (target <= 0.80; minimal mover {:.2}); fastpath - floor = {:.2} ms (target <= 3 ms; minimal mover {:.2} ms).",
            ratio(fp, hd),
            ratio(mv, hd),
            vs(pick(fp), pick(floor)),
            vs(pick(mv), pick(floor)),
        );
    }
}

/// Medians of the concurrency phase, each from a settled start (spread
/// over the tick like the settled cycles; each of the three phases takes
/// the offsets in the same order).
struct Concurrency {
    rounds: usize,
    adds: Duration,
    singles: Duration,
    movers: Duration,
}

impl Concurrency {
    fn print(&self) {
        println!();
        println!("| 16 VFs ({} rounds) | median |", self.rounds);
        println!("|---|---|");
        println!("| 16 concurrent fastpath ADDs (wall) | {} |", ms(self.adds));
        println!(
            "| 16 single moves in-process, one after another | {} |",
            ms(self.singles)
        );
        println!(
            "| 16 concurrent minimal movers, move+rename+up (wall) | {} |",
            ms(self.movers)
        );
        println!();
        println!(
            "concurrent ADDs / single moves = {:.2} (target <= 1.2); concurrent minimal movers / single moves = {:.2}.",
            self.adds.as_secs_f64() / self.singles.as_secs_f64(),
            self.movers.as_secs_f64() / self.singles.as_secs_f64()
        );
    }
}

/// 16 concurrent ADDs on 16 VFs, 16 in-process single moves one after
/// another, and 16 concurrent minimal movers, `rounds` times each.
fn concurrency(bed: &Bed, fastpath: &str, host: &NetNs, pod: &NetNs, rounds: usize) -> Concurrency {
    let (mut adds, mut singles, mut movers) = (Vec::new(), Vec::new(), Vec::new());
    let pod_path = bed.netns_path();
    let pod_path = pod_path.to_str().unwrap();
    for r in 0..rounds {
        std::thread::sleep(SETTLE + design::phase_offset(r));
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 1..=CONCURRENT {
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
        adds.push(t.elapsed());
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
        std::thread::sleep(SETTLE + design::phase_offset(r));
        let t = Instant::now();
        for i in 1..=CONCURRENT {
            let l = nl.require_link(&bed.veths[i]).unwrap();
            nl.move_to_netns(&l, pod.raw_fd(), &format!("net{i}"))
                .unwrap();
        }
        singles.push(t.elapsed());
        bed.move_all_home(host, pod);
        // 16 concurrent minimal movers: what the process model alone costs.
        std::thread::sleep(SETTLE + design::phase_offset(r));
        let t = Instant::now();
        std::thread::scope(|s| {
            for i in 1..=CONCURRENT {
                let (mover, name) = (bed.mover.to_str().unwrap(), format!("net{i}"));
                s.spawn(move || run(mover, &["-", &bed.veths[i], pod_path, &name, "up"]));
            }
        });
        movers.push(t.elapsed());
        bed.move_all_home(host, pod);
    }
    Concurrency {
        rounds,
        adds: median(&mut adds),
        singles: median(&mut singles),
        movers: median(&mut movers),
    }
}
