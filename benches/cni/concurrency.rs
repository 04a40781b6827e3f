//! The concurrency phase: 16 concurrent fastpath ADDs on 16 VFs against
//! 16 single moves in-process and 16 concurrent minimal movers.

use std::time::Instant;

use fastpath::netlink::Netlink;
use fastpath::netns::NetNs;

use super::SETTLE;
use super::bed::{Bed, CONCURRENT, run};
use super::design;
use super::report::{median, ms};

/// Medians of the concurrency phase, each from a settled start (spread
/// over the tick like the settled cycles; each of the three phases takes
/// the offsets in the same order).
pub struct Concurrency {
    rounds: usize,
    adds: std::time::Duration,
    singles: std::time::Duration,
    movers: std::time::Duration,
}

impl Concurrency {
    pub fn print(&self) {
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
            "concurrent ADDs / single moves = {:.2}; concurrent minimal movers / single moves = {:.2} (target: fastpath no worse).",
            self.adds.as_secs_f64() / self.singles.as_secs_f64(),
            self.movers.as_secs_f64() / self.singles.as_secs_f64()
        );
    }
}

/// 16 concurrent ADDs on 16 VFs, 16 in-process single moves one after
/// another, and 16 concurrent minimal movers, `rounds` times each.
pub fn concurrency(
    bed: &Bed,
    fastpath: &str,
    host: &NetNs,
    pod: &NetNs,
    rounds: usize,
) -> Concurrency {
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
