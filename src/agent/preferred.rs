//! GetPreferredAllocation, decided as data: must-include devices first,
//! then devices on one NUMA node when the request fits there, then spread
//! over PFs (or packed onto few PFs) by the pool's policy.

use std::collections::BTreeMap;

use crate::pci::PciAddress;
use crate::pools::{AllocationPolicy, Pool};

/// What the picker knows about one available device.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    id: &'a str,
    pf: Option<PciAddress>,
    numa: Option<u32>,
}

/// Picks `size` IDs out of `available`, starting with `must_include`.
/// IDs unknown to the pool or unhealthy are never picked beyond
/// must-include (kubelet asked for them explicitly).
pub fn preferred(
    pool: &Pool,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(size);
    for id in must_include {
        if out.len() < size && !out.contains(id) {
            out.push(id.clone());
        }
    }
    let cands: Vec<Candidate> = available
        .iter()
        .filter(|id| !out.contains(id))
        .filter_map(|id| {
            let d = pool.device(id).filter(|d| d.healthy())?;
            Some(Candidate {
                id,
                pf: d.view.pf.or(Some(d.view.pci)),
                numa: d.view.numa_node,
            })
        })
        .collect();
    let info = |id: &str| {
        pool.device(id)
            .map(|d| (d.view.pf.or(Some(d.view.pci)), d.view.numa_node))
    };
    let chosen_numa: Vec<Option<u32>> = out.iter().filter_map(|id| info(id).map(|i| i.1)).collect();
    let mut pf_use: BTreeMap<Option<PciAddress>, usize> = BTreeMap::new();
    for id in &out {
        if let Some((pf, _)) = info(id) {
            *pf_use.entry(pf).or_default() += 1;
        }
    }
    let need = size.saturating_sub(out.len());
    for node in numa_order(&cands, &chosen_numa, need) {
        let mut group: Vec<Candidate> = cands.iter().copied().filter(|c| c.numa == node).collect();
        while out.len() < size && !group.is_empty() {
            let i = pick(&group, &pf_use, pool.config.allocation_policy);
            let c = group.swap_remove(i);
            *pf_use.entry(c.pf).or_default() += 1;
            out.push(c.id.to_string());
        }
    }
    out
}

/// NUMA nodes in the order to draw from: a node that alone can satisfy
/// `need` first (preferring the must-include devices' node), then the
/// rest by how many devices they have.
fn numa_order(cands: &[Candidate], chosen: &[Option<u32>], need: usize) -> Vec<Option<u32>> {
    let mut count: BTreeMap<Option<u32>, usize> = BTreeMap::new();
    for c in cands {
        *count.entry(c.numa).or_default() += 1;
    }
    let mut nodes: Vec<(Option<u32>, usize)> = count.into_iter().collect();
    nodes.sort_by_key(|&(node, n)| {
        let fits = n >= need;
        let matches_chosen = chosen.is_empty() || chosen.contains(&node);
        // false sorts first: fitting nodes, then the chosen node, then bigger.
        (
            !(fits && matches_chosen),
            !fits,
            !matches_chosen,
            usize::MAX - n,
            node,
        )
    });
    nodes.into_iter().map(|(n, _)| n).collect()
}

/// Index in `group` of the next device by policy; ties go to the lowest ID.
fn pick(
    group: &[Candidate],
    pf_use: &BTreeMap<Option<PciAddress>, usize>,
    policy: AllocationPolicy,
) -> usize {
    let used = |c: &Candidate| pf_use.get(&c.pf).copied().unwrap_or(0);
    let left = |c: &Candidate| group.iter().filter(|o| o.pf == c.pf).count();
    let best = group.iter().enumerate().min_by(|(_, a), (_, b)| {
        let key = |c: &Candidate| match policy {
            // Least-used PF first.
            AllocationPolicy::Spread => (used(c) as isize, 0isize),
            // Most-used PF first, then the PF with most devices left.
            AllocationPolicy::Pack => (-(used(c) as isize), -(left(c) as isize)),
        };
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(b.id))
    });
    best.map_or(0, |(i, _)| i)
}

#[cfg(test)]
#[path = "preferred_tests.rs"]
mod tests;
