//! `fastpath plan` and `fastpath apply`: provisioning from a node policy.
//! The set of VFs pods hold comes from [`provision::held_vfs`], shared
//! with the agent.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::inventory;
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

/// `fastpath plan`: what apply would change, changing nothing.
pub fn plan(sysfs: &Sysfs, args: &ProvisionArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let policy = Policy::load(&args.policy)?;
    let held = provision::held_vfs(&args.state_dir)?;
    let procfs = Procfs::new(&args.proc_root);
    let inv =
        inventory::scan(sysfs).with_context(|| format!("scanning {}", sysfs.root().display()))?;
    let facts = facts::gather(sysfs, &procfs, &inv, args.node_ip, policy.pins_macs())?;
    let interrupted = Journal::open(&args.state_dir).read()?;
    let p = provision::plan(&inv, &policy, &held, &facts)
        .with_context(|| format!("policy {}", args.policy.display()))?;
    if args.json {
        let v = serde_json::json!({
            "interrupted": interrupted.as_ref().and_then(|r| r.step()),
            "plan": p,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(step) = interrupted.as_ref().and_then(|r| r.step()) {
        writeln!(
            out,
            "an interrupted apply stopped in step {:?}; apply finishes it first",
            step.summary
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
    let held = provision::held_vfs(&args.state_dir)?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every regular file under `dir` with its content, and every link.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.is_symlink() {
                    let t = std::fs::read_link(&p).unwrap();
                    out.push((p, t.display().to_string()));
                } else if meta.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn setup(policy: &str) -> (tempfile::TempDir, Sysfs, ProvisionArgs) {
        let dir = tempfile::tempdir().unwrap();
        let fs = sysfs_fixture::FakeSysfs::new(dir.path().join("sys")).unwrap();
        fs.add_pf(
            &sysfs_fixture::presets::igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 0)
                .iommu_groups(10),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(dir.path().join("proc/net/route"), "Iface\n").unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let args = ProvisionArgs {
            policy: dir.path().join("policy.yaml"),
            json: false,
            state_dir: dir.path().join("state"),
            node_ip: None,
            proc_root: dir.path().join("proc"),
            wait_timeout: 1,
        };
        let sysfs = Sysfs::new(dir.path().join("sys"));
        (dir, sysfs, args)
    }

    #[test]
    fn plan_prints_the_changes_and_touches_nothing() {
        let (dir, sysfs, args) = setup("policies: [{pfNames: [enp5s0], numVfs: 4}]");
        let before = snapshot(dir.path());
        let mut out = Vec::new();
        plan(&sysfs, &args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "1. PF 0000:05:00.0 numVfs 0 -> 4
     write 4 to 0000:05:00.0/sriov_numvfs
     wait for 4 VFs of 0000:05:00.0
"
        );
        assert_eq!(snapshot(dir.path()), before);
    }

    #[test]
    fn a_bad_policy_is_refused_before_anything_is_written() {
        let (dir, sysfs, args) = setup("policies: [{pfNames: [enp5s0], numVfs: 9}]");
        let before = snapshot(dir.path());
        let e = format!("{:#}", apply(&sysfs, &args, &mut Vec::new()).unwrap_err());
        assert!(
            e.ends_with(": policies[0].numVfs: 9 exceeds sriov_totalvfs 7 of 0000:05:00.0"),
            "{e}"
        );
        assert_eq!(e.matches("exceeds").count(), 1, "said once: {e}");
        assert_eq!(snapshot(dir.path()), before);
    }
}
