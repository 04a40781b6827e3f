//! `fastpath plan` and `fastpath apply`: provisioning from a node policy.
//! The set of VFs pods hold is computed in exactly one place,
//! [`held_vfs`].

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::inventory;
use crate::pci::PciAddress;
use crate::procfs::Procfs;
use crate::provision::journal::Journal;
use crate::provision::{self, ApplyReport, Plan, Policy, ReconcileOptions, facts};
use crate::sysfs::Sysfs;

/// Arguments shared by `plan` and `apply`.
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The node policy file (YAML or JSON; see deploy/policy/README.md).
    #[arg(long)]
    pub policy: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// fastpath's state directory (journal in `<dir>/provision/`, CNI
    /// records in `<dir>/cni/`).
    #[arg(long, env = "FASTPATH_STATE_DIR", default_value = "/var/lib/fastpath")]
    pub state_dir: PathBuf,
    /// The node's primary address (kubelet node IP); a PF holding it is
    /// not reconfigured without `force`.
    #[arg(long, env = "FASTPATH_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Where procfs is mounted.
    #[arg(long, env = "FASTPATH_PROC_ROOT", default_value = crate::procfs::DEFAULT_ROOT)]
    pub proc_root: PathBuf,
    /// Bound on each wait for the kernel, in seconds.
    #[arg(long, default_value_t = 10)]
    pub wait_timeout: u64,
}

/// The VFs pods currently hold: never unbound or destroyed by provisioning.
///
/// The CNI's durable records (`<state_dir>/cni/`) are the source; they are
/// read through the CNI module's record list once it is part of this
/// build. Until then no VF is known to be held, and this says so.
pub fn held_vfs(state_dir: &Path) -> anyhow::Result<BTreeSet<PciAddress>> {
    let records = state_dir.join("cni");
    if records.is_dir() {
        tracing::warn!(
            dir = %records.display(),
            "this build does not read CNI records: VFs held by pods are not protected"
        );
    }
    Ok(BTreeSet::new())
}

/// `fastpath plan`: what apply would change, changing nothing.
pub fn plan(sysfs: &Sysfs, args: &ProvisionArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let policy = Policy::load(&args.policy)?;
    let held = held_vfs(&args.state_dir)?;
    let procfs = Procfs::new(&args.proc_root);
    let inv =
        inventory::scan(sysfs).with_context(|| format!("scanning {}", sysfs.root().display()))?;
    let facts = facts::gather(sysfs, &procfs, &inv, args.node_ip, policy.pins_macs())?;
    let interrupted = Journal::open(&args.state_dir).read()?;
    let p = provision::plan(&inv, &policy, &held, &facts)
        .with_context(|| format!("policy {}", args.policy.display()))?;
    if args.json {
        let v = serde_json::json!({
            "interrupted": interrupted.map(|r| r.step),
            "plan": p,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = interrupted {
        writeln!(
            out,
            "an interrupted apply stopped in step {:?}; apply finishes it first",
            r.step.summary
        )?;
    }
    write_plan(&p, out)?;
    Ok(ExitCode::SUCCESS)
}

fn write_plan(p: &Plan, out: &mut dyn Write) -> std::io::Result<()> {
    if p.is_empty() {
        writeln!(out, "nothing to change")?;
    }
    for (i, s) in p.steps.iter().enumerate() {
        writeln!(out, "{}. {}", i + 1, s.summary)?;
        for a in &s.actions {
            writeln!(out, "     {a}")?;
        }
    }
    if !p.deferred.is_empty() {
        writeln!(out, "then, once those have run:")?;
        for d in &p.deferred {
            writeln!(out, "   - {d}")?;
        }
    }
    write_held_and_warnings(&p.held, &p.warnings, out)
}

fn write_held_and_warnings(
    held: &[provision::Held],
    warnings: &[String],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if !held.is_empty() {
        writeln!(out, "held until pods release their VFs:")?;
        for h in held {
            writeln!(out, "   - {}: {}", h.vf, h.pending)?;
        }
    }
    for w in warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

/// `fastpath apply`: brings the node to the policy and reports timings.
pub fn apply(sysfs: &Sysfs, args: &ProvisionArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let policy = Policy::load(&args.policy)?;
    let held = held_vfs(&args.state_dir)?;
    let procfs = Procfs::new(&args.proc_root);
    let opts = ReconcileOptions {
        state_dir: args.state_dir.clone(),
        node_ip: args.node_ip,
        wait_timeout: Duration::from_secs(args.wait_timeout),
    };
    let report = provision::reconcile(sysfs, &procfs, &policy, &held, &opts)
        .with_context(|| format!("applying {}", args.policy.display()))?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_report(&report, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn write_report(r: &ApplyReport, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(rec) = &r.recovered {
        writeln!(out, "{rec}")?;
    }
    if r.steps.is_empty() {
        writeln!(out, "nothing changed")?;
    } else {
        writeln!(
            out,
            "applied {} steps in {} rounds:",
            r.steps.len(),
            r.rounds
        )?;
        for s in &r.steps {
            writeln!(out, "   - {s}")?;
        }
    }
    write_held_and_warnings(&r.held, &r.warnings, out)?;
    writeln!(
        out,
        "time: {} total = kernel {} + fastpath {} (scan {}, plan {}, journal {})",
        ms(r.total),
        ms(r.kernel),
        ms(r.own),
        ms(r.scan),
        ms(r.plan),
        ms(r.journal)
    )?;
    for a in &r.actions {
        writeln!(
            out,
            "   {:>10} kernel {:>10} total  {}",
            ms(a.kernel),
            ms(a.total),
            a.action
        )?;
    }
    Ok(())
}
