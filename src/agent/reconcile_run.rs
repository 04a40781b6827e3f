//! The agent's start-up reconcile, effect half: for each CNI record, take
//! the VF's lock without waiting (a VF a CNI call is working on is left
//! to it), re-read the record, observe the node, [`decide`], and restore
//! through the CNI's own DEL path ([`crate::cni::del::restore`]). Then an
//! interrupted provisioning apply is finished or rolled back when no
//! policy will do it. Best effort: one VF's failure is logged with its
//! PCI address and the others go on. Blocking (netlink, netns threads,
//! IPAM plugins); the agent runs it on a blocking thread.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::reconcile::{Action, HostNetdev, Observed, StartupReport, decide};
use crate::cni::config::Config;
use crate::cni::device::host_netdev;
use crate::cni::env::{CniEnv, Env};
use crate::cni::lock::try_lock_vf;
use crate::cni::records::{self, Record};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sysfs::Sysfs;

/// Where the reconcile works.
#[derive(Debug, Clone)]
pub struct StartupOptions {
    /// fastpath's state directory (CNI records, locks, the journal).
    pub state_dir: PathBuf,
    /// sysfs root.
    pub sysfs_root: PathBuf,
    /// Recover an interrupted provisioning apply here (the agent runs
    /// without `--policy`; with one, the policy's first apply does it).
    pub recover_provisioning: bool,
}

/// Runs the whole start-up reconcile and returns what it did.
pub fn run(opts: &StartupOptions) -> StartupReport {
    let started = Instant::now();
    let mut report = StartupReport::default();
    let sysfs = Sysfs::new(&opts.sysfs_root);
    match records::load_all(&opts.state_dir) {
        Ok(recs) => {
            for r in recs {
                if let Err(what) = reconcile_one(opts, &sysfs, r.pci, &mut report) {
                    tracing::error!(pci = %r.pci, "reconcile: {what}; record kept for the next DEL, GC or start");
                    report.failures.push(format!("{}: {what}", r.pci));
                }
            }
        }
        Err(e) => {
            tracing::error!("reconcile: listing CNI records: {e}");
            report.failures.push(format!("listing CNI records: {e}"));
        }
    }
    if opts.recover_provisioning {
        report.provisioning = recover_provisioning(opts, &sysfs, &mut report);
    }
    report.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    report.finished_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tracing::info!(
        records = report.records,
        restored = report.restored,
        renamed = report.renamed,
        dropped = report.dropped,
        live = report.live,
        busy = report.busy,
        failed = report.failures.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "reconcile: done"
    );
    report
}

fn reconcile_one(
    opts: &StartupOptions,
    sysfs: &Sysfs,
    pci: crate::pci::PciAddress,
    report: &mut StartupReport,
) -> Result<(), String> {
    report.records += 1;
    let _lock = match try_lock_vf(&opts.state_dir, pci) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(pci = %pci, "reconcile: a CNI call holds the VF; left to it");
            report.busy += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("locking: {e}")),
    };
    // Read again under the lock: a DEL may have finished, or an ADD
    // replaced the record, since the directory was listed.
    let rec = match records::load(&opts.state_dir, pci) {
        Ok(Some(r)) => r,
        Ok(None) => {
            report.records -= 1;
            return Ok(());
        }
        Err(e) => return Err(format!("reading the record: {e}")),
    };
    let seen = observe(sysfs, &rec)?;
    let action = decide(&rec, &seen);
    if action == Action::LeaveLive {
        tracing::debug!(pci = %pci, container = %rec.container_id, "reconcile: live attachment left alone");
        report.live += 1;
        return Ok(());
    }
    let (env, conf) = restore_context(opts, &rec)?;
    crate::cni::del::restore(&env, conf.as_ref(), sysfs, &rec)
        .map_err(|e| format!("restoring: {e}"))?;
    let netns = rec
        .netns
        .as_deref()
        .map_or_else(|| "-".to_string(), |p| p.display().to_string());
    match &action {
        Action::RenameBack { from } => {
            report.restored += 1;
            report.renamed += 1;
            tracing::warn!(
                pci = %pci, container = %rec.container_id, netns = %netns, phase = ?rec.phase,
                "reconcile: netns gone; VF renamed back from {from} to {} and restored",
                rec.original.ifname.as_deref().unwrap_or("?")
            );
        }
        Action::Restore => {
            report.restored += 1;
            tracing::warn!(
                pci = %pci, container = %rec.container_id, netns = %netns, phase = ?rec.phase,
                "reconcile: netns gone; attachment restored"
            );
        }
        Action::DropRecord | Action::LeaveLive => {
            report.dropped += 1;
            tracing::info!(
                pci = %pci, container = %rec.container_id,
                "reconcile: VF already home; record dropped"
            );
        }
    }
    Ok(())
}

/// Where the record's netns and VF are now.
fn observe(sysfs: &Sysfs, rec: &Record) -> Result<Observed, String> {
    let netns_live = rec.netns.as_deref().is_some_and(NetNs::exists);
    let mut host = None;
    if !netns_live
        && !rec.dpdk
        && let Some(name) = host_netdev(sysfs, rec.pci)
    {
        // sysfs names the VF's netdev; netlink confirms it is in this
        // (the host) netns and gives its MAC and MTU.
        let mut nl = Netlink::open().map_err(|e| format!("opening netlink: {e}"))?;
        host = nl
            .link_by_name(&name)
            .map_err(|e| format!("reading netdev {name}: {e}"))?
            .map(|l| HostNetdev {
                name: l.name,
                mac: l.mac,
                mtu: l.mtu,
            });
    }
    Ok(Observed {
        netns_live,
        host_netdev: host,
    })
}

/// The CNI environment and config DEL would have had, rebuilt from the
/// record; without a stored IPAM context (an older record) IPAM is left
/// to the runtime's GC.
fn restore_context(
    opts: &StartupOptions,
    rec: &Record,
) -> Result<(CniEnv, Option<Config>), String> {
    let mut env = Env::new();
    env.insert("CNI_CONTAINERID".into(), rec.container_id.clone());
    env.insert("CNI_IFNAME".into(), rec.ifname.clone());
    if let Some(n) = &rec.netns {
        env.insert("CNI_NETNS".into(), n.display().to_string());
    }
    env.insert(
        "FASTPATH_STATE_DIR".into(),
        opts.state_dir.display().to_string(),
    );
    env.insert(
        "FASTPATH_SYSFS_ROOT".into(),
        opts.sysfs_root.display().to_string(),
    );
    if let Some(ipam) = &rec.ipam {
        env.insert("CNI_ARGS".into(), ipam.cni_args.clone());
        let path = std::env::join_paths(&ipam.cni_path)
            .map_err(|e| format!("CNI_PATH in the record: {e}"))?;
        env.insert("CNI_PATH".into(), path.to_string_lossy().into_owned());
    }
    let cenv =
        CniEnv::parse(&env, true, false).map_err(|e| format!("the record's CNI env: {e}"))?;
    let conf = match &rec.ipam {
        Some(ipam) => {
            let bytes = serde_json::to_vec(&ipam.netconf).map_err(|e| e.to_string())?;
            Some(
                Config::parse(&bytes, &cenv)
                    .map_err(|e| format!("the record's network config: {e}"))?,
            )
        }
        None => {
            tracing::info!(pci = %rec.pci, "reconcile: the record has no IPAM context; an IPAM lease, if any, is left to the runtime's GC");
            None
        }
    };
    Ok((cenv, conf))
}

/// Finishes or rolls back an interrupted provisioning apply (after the
/// CNI records were reconciled, so the held set is current).
fn recover_provisioning(
    opts: &StartupOptions,
    sysfs: &Sysfs,
    report: &mut StartupReport,
) -> Option<String> {
    let held = match crate::provision::held_vfs(&opts.state_dir) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("reconcile: {e}; provisioning journal left");
            report.failures.push(e.to_string());
            return None;
        }
    };
    let ropts = crate::provision::ReconcileOptions::new(&opts.state_dir);
    match crate::provision::recover_interrupted(sysfs, &held, &ropts) {
        Ok(Some(outcome)) => {
            tracing::warn!("reconcile: provisioning: {outcome}");
            Some(outcome)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!("reconcile: provisioning journal: {e}");
            report.failures.push(format!("provisioning journal: {e}"));
            Some(format!("failed: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::journal::{Journal, Record as JournalRecord};
    use crate::provision::{Action as ProvisionAction, Step as ProvisionStep};
    use sysfs_fixture::FakeSysfs;
    use sysfs_fixture::presets::igb;

    #[test]
    fn an_interrupted_apply_is_recovered_only_without_a_policy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        FakeSysfs::new(&root)
            .unwrap()
            .add_pf(&igb("0000:05:00.0", "enp5s0", "0000:05:10.0", 2))
            .unwrap();
        let vf: crate::pci::PciAddress = "0000:05:10.2".parse().unwrap();
        let state = dir.path().join("state");
        let journal = Journal::open(&state);
        journal
            .begin(&JournalRecord::new(vec![ProvisionStep {
                summary: "VF 0000:05:10.2 (from igbvf) to nosuchdrv".into(),
                actions: vec![ProvisionAction::Bind {
                    vf,
                    driver: "nosuchdrv".into(),
                }],
                undo: vec![ProvisionAction::ClearDriverOverride { vf }],
            }]))
            .unwrap();
        let mut opts = StartupOptions {
            state_dir: state,
            sysfs_root: root,
            recover_provisioning: false,
        };
        let r = run(&opts);
        assert_eq!(r.provisioning, None, "the policy's first apply does it");
        assert!(journal.read().unwrap().is_some());
        opts.recover_provisioning = true;
        let r = run(&opts);
        let outcome = r.provisioning.unwrap();
        assert!(
            outcome.starts_with("rolled back interrupted step"),
            "{outcome}"
        );
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(journal.read().unwrap(), None);
    }
}
