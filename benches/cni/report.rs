//! What a cycle measured, the statistics over many, and their Markdown.

use std::time::Duration;

/// One ADD+DEL cycle: wall time, and the CPU time (user + system) of the
/// processes it exec'd (zero for the in-process tools).
#[derive(Clone, Copy, Default)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
}

/// CPU time of every waited-for child so far (`RUSAGE_CHILDREN`); a
/// cycle's own is the difference across it.
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage writes one rusage struct into the zeroed value
    // we pass, and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median and mean of a tool's cycles, and its mean CPU time. Moves wait
/// for RCU grace periods that end on scheduler ticks (4 ms apart at
/// HZ=250), so a median lands on one step or the next; the mean shows
/// the mix of steps.
#[derive(Clone, Copy, Default)]
pub struct Stat {
    pub median: Duration,
    pub mean: Duration,
    pub cpu: Duration,
}

pub fn stat(v: &[Sample]) -> Stat {
    let n = v.len().max(1) as u32;
    let mut wall: Vec<Duration> = v.iter().map(|s| s.wall).collect();
    Stat {
        median: median(&mut wall),
        mean: wall.iter().sum::<Duration>() / n,
        cpu: v.iter().map(|s| s.cpu).sum::<Duration>() / n,
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn diff_ms(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e3
}

/// The tools, as indices into a run's results, with their table labels.
pub const TOOLS: usize = 5;
pub const FASTPATH: usize = 0;
pub const HOST_DEVICE: usize = 1;
pub const FLOOR: usize = 2;
pub const MOVER: usize = 3;
pub const FLOOR_UP: usize = 4;

pub const LABELS: [&str; TOOLS] = [
    "(a) fastpath binary (ADD exec + DEL exec)",
    "(b) Debian host-device 1.1.1, same veth, same config",
    "(c) kernel floor: two single-message netns moves in-process",
    "(d) minimal static C mover, exec'd: move+rename+up, then move back",
    "(e) the messages of (d), in-process",
];

/// The table of one pattern, and the comparisons the targets name.
pub fn print_cycles(run: &str, stats: &[Stat; TOOLS]) {
    let floor = stats[FLOOR];
    println!();
    println!(
        "| one ADD+DEL cycle on a veth stand-in, {run} | median | mean | children's CPU (mean) | vs floor (median) | vs floor (mean) |"
    );
    println!("|---|---|---|---|---|---|");
    for (which, what) in LABELS.iter().enumerate() {
        let d = stats[which];
        let cpu = if matches!(which, FLOOR | FLOOR_UP) {
            "-".to_string()
        } else {
            ms(d.cpu)
        };
        println!(
            "| {what} | {} | {} | {cpu} | {:+.2} ms | {:+.2} ms |",
            ms(d.median),
            ms(d.mean),
            diff_ms(d.median, floor.median),
            diff_ms(d.mean, floor.mean)
        );
    }
    let (fp, hd, mv) = (stats[FASTPATH], stats[HOST_DEVICE], stats[MOVER]);
    println!();
    for (stat, pick) in [
        ("medians", (|s: Stat| s.median) as fn(Stat) -> Duration),
        ("means", |s: Stat| s.mean),
    ] {
        println!(
            "{run}, {stat}: fastpath - minimal mover = {:+.2} ms (target <= 1.0 ms by mean); fastpath / host-device = {:.2} (minimal mover {:.2}); fastpath - floor = {:+.2} ms (minimal mover {:+.2} ms).",
            diff_ms(pick(fp), pick(mv)),
            pick(fp).as_secs_f64() / pick(hd).as_secs_f64(),
            pick(mv).as_secs_f64() / pick(hd).as_secs_f64(),
            diff_ms(pick(fp), pick(floor)),
            diff_ms(pick(mv), pick(floor)),
        );
    }
    println!(
        "{run}, CPU: fastpath - minimal mover = {:+.2} ms per cycle (both processes).",
        diff_ms(fp.cpu, mv.cpu)
    );
}

/// The "runs" pattern's table: each round's median per tool, the median
/// of those, and the mean and CPU over every cycle of every round.
pub fn print_runs(order: &[Vec<usize>], rounds: &[[Stat; TOOLS]], all: &[Stat; TOOLS]) {
    println!();
    let heads: Vec<String> = order
        .iter()
        .enumerate()
        .map(|(r, o)| format!("round {} (first: {})", r + 1, (b'a' + o[0] as u8) as char))
        .collect();
    println!(
        "| runs: each tool's cycles in a row, per-round medians | {} | median of rounds |",
        heads.join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(rounds.len()));
    let mut of_rounds = *all;
    for (which, what) in LABELS.iter().enumerate() {
        let mut meds: Vec<Duration> = rounds.iter().map(|r| r[which].median).collect();
        let cells: Vec<String> = meds.iter().map(|&d| ms(d)).collect();
        let m = median(&mut meds);
        of_rounds[which].median = m;
        println!("| {what} | {} | {} |", cells.join(" | "), ms(m));
    }
    print_cycles(
        "runs (median of round medians; mean of all cycles)",
        &of_rounds,
    );
}
