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
//! The cycles run in three patterns: interleaved back to back, settled
//! (idle before each, for a time spread over the tick period), and runs
//! (each tool's cycles back to back in a row, rounds rotating which tool
//! goes first), since what ran just before a move, and where in the tick
//! it starts, change how long the kernel makes it wait (`cni/design.rs`).
//! Interleaved, a tool's deferred kernel work (journal commits,
//! writeback, RCU and netns cleanup) lands on whichever tool runs next;
//! in runs, each tool pays its own. Then 16 concurrent fastpath ADDs on 16 VFs against
//! 16 single moves and against 16 concurrent minimal movers, each timed
//! from a settled start. Prints medians, means and ratios as Markdown.

#[path = "cni/bed.rs"]
mod bed;
#[path = "cni/concurrency.rs"]
mod concurrency;
#[path = "cni/design.rs"]
mod design;
#[path = "cni/report.rs"]
mod report;

use std::process::Command;
use std::time::{Duration, Instant};

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use serde_json::{Value, json};

use bed::{Bed, run};
use report::{FASTPATH, FLOOR, FLOOR_UP, HOST_DEVICE, MOVER, Sample, Stat, TOOLS, stat};

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
pub const SETTLE: Duration = Duration::from_millis(30);

/// One ADD+DEL cycle by tool `which`; `n` names its container.
fn one_cycle(bed: &Bed, t: &Tools, which: usize, n: usize) -> Sample {
    let c = format!("c{n}");
    let cpu = report::children_cpu();
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
    Sample {
        wall: start.elapsed(),
        cpu: report::children_cpu().saturating_sub(cpu),
    }
}

/// `iters` ADD+DEL cycles by each tool, in the order of `seq` (see
/// [`design::sequence`]), round and round: each tool comes right after
/// each other one equally often, also across passes. A netns move waits
/// for RCU callbacks queued just before it (such as a plugin process's
/// exit), and a fixed order would hand that cost to whichever ran after
/// the heaviest exit. With `settle`, each cycle starts after that long
/// plus the tool's next phase offset.
fn interleaved(
    bed: &Bed,
    t: &Tools,
    seq: &[usize],
    iters: usize,
    settle: Option<Duration>,
) -> [Stat; TOOLS] {
    let mut runs: [Vec<Sample>; TOOLS] = Default::default();
    for (n, &which) in seq.iter().cycle().take(iters * TOOLS).enumerate() {
        if let Some(settle) = settle {
            std::thread::sleep(settle + design::phase_offset(runs[which].len()));
        }
        runs[which].push(one_cycle(bed, t, which, n));
    }
    runs.map(|v| stat(&v))
}

/// The order of the tools in round `r` of the runs pattern: all of them,
/// starting with tool `r mod TOOLS`.
fn rotation(r: usize) -> Vec<usize> {
    (0..TOOLS).map(|k| (r + k) % TOOLS).collect()
}

/// The runs pattern, as the issue measured it: in each of `rounds`
/// rounds, each tool runs its `iters` cycles back to back in a row, the
/// tools in [`rotation`] order. Interleaving hands the deferred kernel
/// work a cycle leaves (a journal commit, writeback, RCU callbacks of a
/// process exit or a netns move) to the next tool; here a tool meets its
/// own, as a runtime attaching pods one after another would. Returns
/// each round's statistics and those over all cycles.
fn runs(bed: &Bed, t: &Tools, iters: usize, rounds: usize) -> (Vec<[Stat; TOOLS]>, [Stat; TOOLS]) {
    let mut all: [Vec<Sample>; TOOLS] = Default::default();
    let mut per_round = Vec::with_capacity(rounds);
    let mut n = 0;
    for r in 0..rounds {
        let mut this: [Vec<Sample>; TOOLS] = Default::default();
        for which in rotation(r) {
            for _ in 0..iters {
                this[which].push(one_cycle(bed, t, which, n));
                n += 1;
            }
        }
        for (which, v) in this.iter().enumerate() {
            all[which].extend_from_slice(v);
        }
        per_round.push(this.map(|v| stat(&v)));
    }
    (per_round, all.map(|v| stat(&v)))
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
    // Rounds of the runs pattern: whole multiples of TOOLS, so that each
    // tool goes first equally often.
    let rounds = std::env::var("FASTPATH_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(2 * TOOLS)
        .max(1)
        .next_multiple_of(TOOLS);
    let back_to_back = interleaved(&bed, &tools, &seq, iters, None);
    let (round_stats, runs_all) = runs(&bed, &tools, iters, rounds);
    let settled = interleaved(&bed, &tools, &seq, iters, Some(SETTLE));
    let concurrent =
        concurrency::concurrency(&bed, fastpath, &host, &pod, iters.div_ceil(4).max(3));

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
        "`hack/bench.d/cni`: {iters} cycles per tool in each interleaved run, in a cyclic order where each tool follows each other once ({seq:?}); runs pattern: {rounds} rounds of {iters} cycles per tool in a row; kernel {}, {} CPUs, state dir {} ({fs}), binary {fastpath}.",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        bed.state.path().display()
    );
    let settled_title = format!(
        "settled: {}-{} ms idle before each cycle",
        SETTLE.as_millis(),
        (SETTLE + design::PHASE_SPAN).as_millis()
    );
    report::print_cycles("interleaved back to back", &back_to_back);
    let orders: Vec<Vec<usize>> = (0..rounds).map(rotation).collect();
    report::print_runs(&orders, &round_stats, &runs_all);
    report::print_cycles(&settled_title, &settled);
    concurrent.print();
}
