//! Discovery benchmark: `inventory::scan` over fake trees of N PFs x 128
//! VFs (E810 preset, iavf VFs with netdevs, IOMMU groups) on tmpfs.
//!
//! Run: `cargo bench --bench discovery` (or `hack/bench.d/discovery`).
//! Each size is written once, scanned a few times to warm the dentry and
//! inode caches, then scanned repeatedly; the median, the fastest and the
//! 90th percentile of the runs are printed, with the median per VF, and
//! the median CPU time of the process (what the scan itself costs, summed
//! over its threads, when other processes compete for the cores). Each size is
//! measured single-threaded and with 2 threads (what `scan` uses on a
//! machine with 2 or more CPUs).

use std::path::Path;
use std::time::{Duration, Instant};

use fastpath::inventory;
use fastpath::sysfs::Sysfs;
use sysfs_fixture::FakeSysfs;
use sysfs_fixture::presets::e810;

const VFS_PER_PF: usize = 128;
const PF_COUNTS: [usize; 4] = [1, 4, 8, 16];
/// Threads given to `scan_with_threads`: 1 and 2 (what `scan` uses when
/// it has 2 CPUs), to show what the second thread buys.
const THREADS: [usize; 2] = [1, 2];
const WARMUP_RUNS: usize = 5;
const MIN_RUNS: usize = 31;
const MIN_TIME: Duration = Duration::from_secs(2);

fn write_tree(root: &Path, pfs: usize) {
    let fs = FakeSysfs::new(root).expect("create tree");
    for i in 0..pfs {
        let bus = 0x20 + 2 * i;
        let spec = e810(
            &format!("0000:{bus:02x}:00.0"),
            &format!("ens{i}f0"),
            &format!("0000:{bus:02x}:01.0"),
            VFS_PER_PF,
        )
        .numa((i % 2) as i32)
        .iommu_groups(200 * i as u32);
        fs.add_pf(&spec).expect("write PF");
    }
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match tempfile::tempdir_in(shm) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("warning: /dev/shm unusable ({e}); the tree is not on tmpfs");
            tempfile::tempdir().expect("temp dir")
        }
    }
}

struct Stats {
    runs: usize,
    min: Duration,
    median: Duration,
    p90: Duration,
    cpu_median: Duration,
}

/// CPU time this process (all its threads) has used: unlike wall time, it
/// does not count the time other processes on a shared machine hold the
/// cores.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a
    // constant the kernel supports; clock_gettime writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn measure(sysfs: &Sysfs, threads: usize, expected_vfs: usize) -> Stats {
    let scan = || {
        let inv = inventory::scan_with_threads(sysfs, threads).expect("scan");
        assert_eq!(inv.vfs().count(), expected_vfs, "scan found every VF");
        inv
    };
    for _ in 0..WARMUP_RUNS {
        std::hint::black_box(scan());
    }
    let (mut times, mut cpu) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while times.len() < MIN_RUNS || started.elapsed() < MIN_TIME {
        let (t, c) = (Instant::now(), cpu_time());
        let inv = scan();
        cpu.push(cpu_time() - c);
        times.push(t.elapsed());
        drop(std::hint::black_box(inv));
    }
    times.sort_unstable();
    Stats {
        runs: times.len(),
        min: times[0],
        median: times[times.len() / 2],
        p90: times[times.len() * 9 / 10],
        cpu_median: median(cpu),
    }
}

fn main() {
    // `--write-tree <dir> <pfs>` writes one benchmark tree and exits, for
    // profiling the CLI on it (`strace -c fastpath --sysfs-root <dir> list`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-tree") {
        let (Some(dir), Some(pfs)) = (args.get(i + 1), args.get(i + 2)) else {
            panic!("usage: discovery --write-tree <dir> <pfs>");
        };
        write_tree(Path::new(dir), pfs.parse().expect("PF count"));
        return;
    }
    println!("discovery: inventory::scan of N PFs x {VFS_PER_PF} VFs on tmpfs");
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    println!(
        "{:>5} {:>6} {:>7} {:>6} {:>11} {:>11} {:>11} {:>10} {:>11} {:>10}",
        "PFs", "VFs", "threads", "runs", "median", "min", "p90", "ns/VF", "cpu median", "cpu ns/VF"
    );
    for pfs in PF_COUNTS {
        // One PF is always scanned on one thread.
        let threads: &[usize] = if pfs == 1 { &THREADS[..1] } else { &THREADS };
        let dir = scratch();
        write_tree(dir.path(), pfs);
        let sysfs = Sysfs::new(dir.path());
        let vfs = pfs * VFS_PER_PF;
        for &threads in threads {
            let s = measure(&sysfs, threads, vfs);
            let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
            let per_vf = |d: Duration| d.as_nanos() as f64 / vfs as f64;
            println!(
                "{:>5} {:>6} {:>7} {:>6} {:>11} {:>11} {:>11} {:>10.0} {:>11} {:>10.0}",
                pfs,
                vfs,
                threads,
                s.runs,
                ms(s.median),
                ms(s.min),
                ms(s.p90),
                per_vf(s.median),
                ms(s.cpu_median),
                per_vf(s.cpu_median),
            );
        }
    }
}
