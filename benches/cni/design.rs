//! The order the tools run in, and the idle time before each settled
//! cycle. A netns move waits for RCU grace periods, which end on
//! scheduler ticks, so what a cycle costs depends on what ran just before
//! it and on where in the tick period it starts. Both are spread evenly
//! over the tools here, so that neither favours one of them.

use std::time::Duration;

/// The order of the cycles: a cyclic sequence of the `n` tools in which
/// each tool directly follows each other tool exactly once, and never
/// itself. Run round and round without a break (back to back), every
/// transition the bench makes, including the one from the end of a pass
/// to the start of the next, is one of these. Each tool occurs `n - 1`
/// times per pass. It is an Eulerian circuit of the complete directed
/// graph on the tools (every vertex has in- and out-degree `n - 1`),
/// found with Hierholzer's algorithm; the walk goes on to the tool it
/// visited longest ago, which spreads each tool's cycles over the pass
/// (for 5: 0 1 2 3 4 0 2 1 3 0 4 2 0 3 1 4 3 2 4 1).
pub fn sequence(n: usize) -> Vec<usize> {
    if n < 2 {
        return vec![0; n];
    }
    // unused[a]: the tools that have not yet followed `a`.
    let mut unused: Vec<Vec<usize>> = (0..n)
        .map(|a| (0..n).filter(|&b| b != a).collect())
        .collect();
    // When each tool was last visited (0: not yet); the walk starts at 0.
    let mut last_visit = vec![0usize; n];
    last_visit[0] = 1;
    let mut visits = 1;
    let mut stack = vec![0];
    let mut circuit = Vec::with_capacity(n * (n - 1) + 1);
    while let Some(&a) = stack.last() {
        let next = unused[a]
            .iter()
            .enumerate()
            .min_by_key(|&(_, &b)| (last_visit[b], b))
            .map(|(i, _)| i);
        match next {
            Some(i) => {
                let b = unused[a].swap_remove(i);
                visits += 1;
                last_visit[b] = visits;
                stack.push(b);
            }
            None => circuit.push(stack.pop().unwrap_or_default()),
        }
    }
    circuit.reverse();
    // The circuit ends where it starts; as a cyclic sequence that last
    // visit is the first one.
    circuit.pop();
    circuit
}

/// Panics unless `seq`, taken cyclically, has every ordered pair of
/// distinct tools adjacent exactly once and no tool next to itself: the
/// property the comparison relies on, checked before any cycle runs.
pub fn assert_balanced(seq: &[usize], n: usize) {
    if n < 2 {
        return;
    }
    assert_eq!(seq.len(), n * (n - 1), "sequence {seq:?}");
    let mut follows = vec![vec![0usize; n]; n];
    for (i, &a) in seq.iter().enumerate() {
        follows[a][seq[(i + 1) % seq.len()]] += 1;
    }
    for (a, row) in follows.iter().enumerate() {
        for (b, &count) in row.iter().enumerate() {
            let want = usize::from(a != b);
            assert_eq!(count, want, "{b} follows {a} {count} times in {seq:?}");
        }
    }
}

/// Spread of the idle time before a settled cycle: a whole number of
/// tick periods at HZ 100, 250, 300 and 1000 (10, 4, 3.33 and 1 ms), so
/// that the offsets below cover every phase of the tick evenly.
pub const PHASE_SPAN: Duration = Duration::from_millis(20);

/// The extra idle time before a tool's `k`-th settled cycle: k times the
/// golden ratio, modulo 1, of [`PHASE_SPAN`]. Each tool counts its own
/// cycles, so each gets the same low-discrepancy spread of start phases,
/// deterministic from run to run. Without it a fixed idle time lands
/// every cycle on one phase of the tick, and a run's medians sit on
/// whichever step that phase gives.
pub fn phase_offset(k: usize) -> Duration {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    PHASE_SPAN.mul_f64((k as f64 * GOLDEN).fract())
}
