//! What the cluster benches (dra, cluster_policy) share: CPU clocks for
//! this process, one of its threads and another process; a thread of
//! "everyone else" (the stand-in API server, kubelet's side) whose CPU time
//! is taken out of the process's, so what is left is fastpath's own; and
//! the summary statistics the benches print.

#![allow(dead_code)]

use std::future::Future;
use std::os::unix::thread::JoinHandleExt;
use std::time::Duration;

/// Reads a CPU-time clock.
fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write; `id` is
    // a CPU-time clock id the kernel gave us (or a constant it supports).
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({id})");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of this process, all threads, the exited ones included.
pub fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of process `pid` (all its threads, exited ones included).
pub fn pid_cpu(pid: u32) -> Duration {
    let mut id: libc::clockid_t = 0;
    // SAFETY: `id` is a valid place for the clock id; the pid is a child
    // of this process, so it exists until we reap it.
    let rc = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut id) };
    assert_eq!(rc, 0, "clock_getcpuclockid({pid})");
    clock(id)
}

/// A thread running a current-thread tokio runtime for everything that is
/// not fastpath: the stand-in API server and kubelet's client. Its CPU
/// time is read from outside, so each measurement can take it out of the
/// process's.
pub struct Outside {
    handle: tokio::runtime::Handle,
    clock: libc::clockid_t,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outside {
    /// Starts the thread and its runtime.
    pub fn start() -> Self {
        let (htx, hrx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("outside".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                htx.send(rt.handle().clone()).unwrap();
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .unwrap();
        let handle = hrx.recv().unwrap();
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (it blocks until `stop`), its
        // pthread_t comes from its JoinHandle and `clock` is a valid place
        // for the id.
        let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
        assert_eq!(rc, 0, "pthread_getcpuclockid");
        Self {
            handle,
            clock,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the outside thread and waits for its output.
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the outside task finished")
    }

    /// The outside thread's CPU time so far.
    pub fn cpu(&self) -> Duration {
        clock(self.clock)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU and wall time of one measured operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// fastpath's own CPU time (the process's minus the outside thread's,
    /// or the agent process's).
    pub own: Duration,
    /// The outside thread's CPU time (stand-in API server, kubelet).
    pub outside: Duration,
    /// Wall time.
    pub wall: Duration,
}

/// Measures `f` run on this thread: process CPU minus the outside
/// thread's CPU, and wall time.
pub fn measure<T>(outside: &Outside, f: impl FnOnce() -> T) -> (T, Sample) {
    let (p0, o0, w0) = (process_cpu(), outside.cpu(), std::time::Instant::now());
    let out = f();
    let (p1, o1, wall) = (process_cpu(), outside.cpu(), w0.elapsed());
    let outside_t = o1.saturating_sub(o0);
    let s = Sample {
        own: p1.saturating_sub(p0).saturating_sub(outside_t),
        outside: outside_t,
        wall,
    };
    (out, s)
}

/// Median, fastest, 90th percentile and slowest of some durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub median: Duration,
    pub min: Duration,
    pub p90: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(v: &[Duration]) -> Self {
        assert!(!v.is_empty());
        let mut s = v.to_vec();
        s.sort();
        let n = s.len();
        // The median of an even count is the mean of the middle two.
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        let p90 = s[((n * 9).div_ceil(10)).clamp(1, n) - 1];
        Self {
            n,
            median,
            min: s[0],
            p90,
            max: s[n - 1],
        }
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {} ms (min {}, p90 {}, max {}; n={})",
            ms(self.median),
            ms(self.min),
            ms(self.p90),
            ms(self.max),
            self.n
        )
    }
}

/// The three columns of a sample set, summarized.
pub fn summarize(samples: &[Sample]) -> (Summary, Summary, Summary) {
    let col = |f: fn(&Sample) -> Duration| samples.iter().map(f).collect::<Vec<_>>();
    (
        Summary::of(&col(|s| s.own)),
        Summary::of(&col(|s| s.outside)),
        Summary::of(&col(|s| s.wall)),
    )
}

/// `/proc/loadavg`'s first three fields, to print beside the figures.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A line saying when and under what load a bench ran.
pub fn header(what: &str) {
    let now = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("## {what}: {now}, load average {}", load());
}
