//! The order the tools run in, and the idle time before each settled
//! cycle. A netns move waits for RCU grace periods, which end on
//! scheduler ticks, so what a cycle costs depends on what ran just before
//! it and on where in the tick period it starts. Both are spread evenly
//! over the tools here, so that neither favours one of them.

use std::time::Duration;

/// A Williams design for `n` treatments: rows of a Latin square in which
/// each treatment follows each other one equally often (once for even
/// `n`; for odd `n` the square is followed by its mirror image, and each
/// pair occurs twice).
pub fn williams(n: usize) -> Vec<Vec<usize>> {
    // First row 0, 1, n-1, 2, n-2, ...; row i adds i to it (mod n).
    let mut first = vec![0];
    let (mut lo, mut hi) = (1, n.saturating_sub(1));
    while first.len() < n {
        if first.len() % 2 == 1 {
            first.push(lo);
            lo += 1;
        } else {
            first.push(hi);
            hi -= 1;
        }
    }
    let mut rows: Vec<Vec<usize>> = (0..n)
        .map(|i| first.iter().map(|&t| (t + i) % n).collect())
        .collect();
    if n % 2 == 1 {
        let mirrored: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| r.iter().rev().copied().collect())
            .collect();
        rows.extend(mirrored);
    }
    rows
}

/// Panics unless every ordered pair of distinct tools is adjacent equally
/// often in `rows` and every tool comes first equally often: the property
/// the cycle medians rely on, checked before any cycle runs.
pub fn assert_balanced(rows: &[Vec<usize>], n: usize) {
    let mut follows = vec![vec![0usize; n]; n];
    let mut first = vec![0usize; n];
    for r in rows {
        let mut seen = r.clone();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..n).collect::<Vec<_>>(),
            "row {r:?} is not a permutation"
        );
        first[r[0]] += 1;
        for w in r.windows(2) {
            follows[w[0]][w[1]] += 1;
        }
    }
    let want = follows[0][1];
    for (a, row) in follows.iter().enumerate() {
        for (b, &count) in row.iter().enumerate() {
            if a != b {
                assert_eq!(count, want, "{b} follows {a} {count} times, not {want}");
            }
        }
    }
    assert!(first.iter().all(|&f| f == first[0]), "firsts {first:?}");
}

/// Spread of the idle time before a settled cycle: longer than one tick
/// period at any HZ from 100 up, so that cycle starts cover every phase
/// of the tick.
pub const PHASE_SPAN: Duration = Duration::from_millis(10);

/// The extra idle time before settled cycle `k`: k times the golden ratio,
/// modulo 1, of [`PHASE_SPAN`]. A low-discrepancy sequence, deterministic
/// from run to run, whose every arithmetic subsequence (one tool's cycles)
/// is evenly spread too. Without it a fixed idle time lands every cycle on
/// the same phase of the tick, and a run's medians sit on whichever step
/// that phase gives.
pub fn phase_offset(k: usize) -> Duration {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    PHASE_SPAN.mul_f64((k as f64 * GOLDEN).fract())
}
