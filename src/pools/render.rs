//! Human-readable output of `fastpath pools`.

use std::fmt::Write;

use super::Pools;

/// One block per pool, then every device with its reasons.
pub fn render_table(p: &Pools) -> String {
    let mut out = String::new();
    for pool in &p.pools {
        let healthy = pool.devices.iter().filter(|d| d.healthy()).count();
        let _ = writeln!(
            out,
            "{}: {} devices ({healthy} healthy)",
            pool.resource(),
            pool.devices.len()
        );
        for d in &pool.devices {
            let _ = writeln!(
                out,
                "  {}  pf={} vf={} driver={} numa={}{}",
                d.view.pci,
                d.view.pf_netdev.as_deref().unwrap_or("-"),
                d.view.vf_index.map_or("-".into(), |i| i.to_string()),
                d.view.driver.as_deref().unwrap_or("-"),
                d.view.numa_node.map_or("-".into(), |n| n.to_string()),
                d.unhealthy
                    .as_ref()
                    .map_or(String::new(), |u| format!("  UNHEALTHY: {u}")),
            );
        }
    }
    let _ = writeln!(out, "\ndevices:");
    for a in &p.assignments {
        let _ = writeln!(
            out,
            "  {} -> {}",
            a.pci,
            a.pool.as_deref().unwrap_or("(none)")
        );
        for r in &a.reasons {
            let _ = writeln!(out, "      {r}");
        }
    }
    for n in &p.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}
