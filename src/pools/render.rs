//! Human-readable output of `fastpath pools`.

use std::fmt::Write;

use super::Pool;
use super::report::{Mode, ModeReport};

/// One block per pool (device-plugin pools, then DRA pools, each with
/// its mode), then every device with its mode and reasons, then every
/// device both lists select.
pub fn render_table(r: &ModeReport) -> String {
    let mut out = String::new();
    for (pool, mode) in r
        .pools
        .iter()
        .map(|p| (p, Mode::DevicePlugin))
        .chain(r.dra_pools.iter().map(|p| (p, Mode::Dra)))
    {
        pool_block(&mut out, pool, mode);
    }
    let _ = writeln!(out, "\ndevices:");
    for a in &r.assignments {
        let landed = match (&a.pool, &a.dra_pool) {
            (None, None) => "(none)".to_string(),
            (Some(p), None) => format!("{p} ({})", Mode::DevicePlugin.label()),
            (None, Some(p)) => format!("{p} ({})", Mode::Dra.label()),
            (Some(p), Some(d)) => format!(
                "{p} ({}) and {d} ({}): CONFIG ERROR, a device is in one mode",
                Mode::DevicePlugin.label(),
                Mode::Dra.label()
            ),
        };
        let _ = writeln!(out, "  {} -> {landed}", a.pci);
        for reason in &a.reasons {
            let _ = writeln!(out, "      {reason}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for o in &r.overlaps {
        let _ = writeln!(out, "error: {}", o.error);
    }
    out
}

fn pool_block(out: &mut String, pool: &Pool, mode: Mode) {
    let healthy = pool.devices.iter().filter(|d| d.healthy()).count();
    let _ = writeln!(
        out,
        "{} ({}): {} devices ({healthy} healthy)",
        pool.resource(),
        mode.label(),
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
