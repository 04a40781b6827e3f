//! NodePrepareResources and NodeUnprepareResources, the effects: observe
//! the node, write the claim's record, change the VFs (driver rebind
//! through provisioning's actions, PF-side settings through the netlink
//! VF code, MTU), write the CDI spec and device-info files. A failure
//! undoes what was done; unprepare restores from the record and is safe
//! to repeat. Blocking: run it off the async workers.

use std::path::PathBuf;
use std::time::Duration;

use super::ClaimAllocation;
use super::cdi::{self, ClaimOutput};
use super::claim_config::VfDriver;
use super::prepare::{self, DevicePlan, Observed, PlanError};
use super::record::{self, ClaimRecord, DeviceRecord, Phase, RecordError};
use super::stale_cdi;
use crate::agent::allocate::AllocateOptions;
use crate::agent::files;
use crate::cni::lock::{VfLock, try_lock_vf};
use crate::cni::records::Durability;
use crate::netlink::Netlink;
use crate::netlink::vf::{Pf, restore_settings};
use crate::pools::Pools;
use crate::provision::rebind;
use crate::sysfs::Sysfs;

/// Everything prepare and unprepare need besides the claim.
#[derive(Debug, Clone)]
pub struct DraContext {
    /// The driver name.
    pub driver: String,
    /// This node (the pool name).
    pub node: String,
    /// fastpath state directory (records under `dra/claims`).
    pub state_dir: PathBuf,
    /// sysfs root.
    pub sysfs: Sysfs,
    /// Where CDI specs are written.
    pub cdi_dir: PathBuf,
    /// Where device-info files are written.
    pub devinfo_dir: PathBuf,
    /// vfio no-IOMMU and the like.
    pub alloc: AllocateOptions,
    /// Bound on waiting for a driver to bind.
    pub rebind_timeout: Duration,
}

/// Why a claim was not prepared or unprepared; kubelet gets the text.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The claim names devices or config this node cannot serve.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Reading the device's current state failed; nothing was changed.
    #[error("reading the state of {pci}: {reason}")]
    Observe {
        /// The VF.
        pci: String,
        /// What failed.
        reason: String,
    },
    /// A change failed; what was done before it was undone.
    #[error("{pci}: {what}: {reason}{}", undo_note(.undo))]
    Apply {
        /// The VF (or the file).
        pci: String,
        /// The step.
        what: String,
        /// What failed.
        reason: String,
        /// Errors of the undo, if it did not complete.
        undo: Vec<String>,
    },
    /// Restoring failed in part; the record stays for a retry.
    #[error("restoring claim {uid}: {}", .errors.join("; "))]
    Restore {
        /// The claim UID.
        uid: String,
        /// Every step that failed.
        errors: Vec<String>,
    },
}

fn undo_note(undo: &[String]) -> String {
    if undo.is_empty() {
        " (every change undone)".into()
    } else {
        format!(" (undo incomplete, record kept: {})", undo.join("; "))
    }
}

/// A lazily opened netlink socket: claims without PF-side settings or
/// MTU never open one.
#[derive(Default)]
struct Nl(Option<Netlink>);

impl Nl {
    fn get(&mut self) -> Result<&mut Netlink, String> {
        if self.0.is_none() {
            self.0 = Some(Netlink::open().map_err(|e| e.to_string())?);
        }
        self.0.as_mut().ok_or_else(|| "netlink".to_string())
    }
}

/// Prepares one claim: the record of an already prepared claim is the
/// answer (prepare twice = same answer); a record left half-way by a
/// crash is restored first and the claim prepared again.
pub fn prepare(
    ctx: &DraContext,
    alloc: &ClaimAllocation,
    dra: &Pools,
) -> Result<ClaimRecord, PrepareError> {
    let uid = &alloc.claim.uid;
    if !record::valid_uid(uid) {
        return Err(RecordError::BadUid(uid.clone()).into());
    }
    if let Some(r) = record::load(&ctx.state_dir, uid)? {
        if r.phase == Phase::Prepared {
            return Ok(r);
        }
        tracing::warn!(claim = %r.claim, "restoring a prepare that did not finish");
        restore_or_keep(ctx, &r)?;
    }
    let plans = prepare::plan(alloc, &ctx.node, dra)?;
    let _locks = lock_all(ctx, plans.iter().map(|p| p.dev().view.pci))?;
    let mut nl = Nl::default();
    let mut devices = Vec::with_capacity(plans.len());
    for p in &plans {
        let obs = observe(ctx, p, &mut nl).map_err(|reason| PrepareError::Observe {
            pci: p.dev().view.pci.to_string(),
            reason,
        })?;
        devices.push(prepare::device_record(p, &obs));
    }
    let drivers: Vec<Option<String>> = devices.iter().map(final_driver).collect();
    let out = cdi::claim_output(&ctx.driver, &alloc.claim.name, &plans, &drivers, ctx.alloc);
    for (d, ids) in devices.iter_mut().zip(&out.ids) {
        d.cdi_ids = ids.clone();
    }
    let mut rec = ClaimRecord {
        claim: alloc.claim.clone(),
        phase: Phase::Preparing,
        devices,
        cdi_spec: Some(cdi::spec_path(&ctx.cdi_dir, &ctx.driver, uid)),
        devinfo: out
            .devinfo
            .iter()
            .map(|(n, _)| ctx.devinfo_dir.join(n))
            .collect(),
    };
    // Nothing changes on the node before this record is on disk.
    record::save(&ctx.state_dir, &rec, Durability::Full)?;
    crate::fault::crash_point("dra.prepare.after.record");
    if let Err((pci, what, reason)) = apply(ctx, &rec, &out, &mut nl) {
        let undo = restore(ctx, &rec, &mut nl);
        if undo.is_empty() {
            record::remove(&ctx.state_dir, uid)?;
        }
        return Err(PrepareError::Apply {
            pci,
            what,
            reason,
            undo,
        });
    }
    rec.phase = Phase::Prepared;
    record::save(&ctx.state_dir, &rec, Durability::Atomic)?;
    Ok(rec)
}

/// Unprepares claim `uid` from its record; no record: nothing to do.
pub fn unprepare(ctx: &DraContext, uid: &str) -> Result<(), PrepareError> {
    match record::load(&ctx.state_dir, uid)? {
        None => Ok(()),
        Some(r) => restore_or_keep(ctx, &r),
    }
}

/// Takes the CNI's per-VF lock of every VF, without waiting: a CNI call
/// working on one of them makes this claim fail for kubelet to retry,
/// rather than two processes changing one VF at once.
fn lock_all(
    ctx: &DraContext,
    pcis: impl Iterator<Item = crate::pci::PciAddress>,
) -> Result<Vec<VfLock>, PrepareError> {
    let mut locks = Vec::new();
    for pci in pcis {
        let busy = |reason: String| PrepareError::Observe {
            pci: pci.to_string(),
            reason,
        };
        match try_lock_vf(&ctx.state_dir, pci) {
            Ok(Some(l)) => locks.push(l),
            Ok(None) => return Err(busy("a CNI call holds the VF's lock; retry".into())),
            Err(e) => return Err(busy(format!("taking the VF's lock: {e}"))),
        }
    }
    Ok(locks)
}

/// Restores a record and removes it; a partial failure keeps it.
pub fn restore_or_keep(ctx: &DraContext, r: &ClaimRecord) -> Result<(), PrepareError> {
    let _locks = lock_all(ctx, r.devices.iter().map(|d| d.pci))?;
    let errors = restore(ctx, r, &mut Nl::default());
    if !errors.is_empty() {
        return Err(PrepareError::Restore {
            uid: r.claim.uid.clone(),
            errors,
        });
    }
    crate::fault::crash_point("dra.restore.before.record_remove");
    record::remove(&ctx.state_dir, &r.claim.uid)?;
    Ok(())
}

/// The driver a device has once prepared (`None` when a kernel driver of
/// the kernel's choosing will probe it).
fn final_driver(d: &DeviceRecord) -> Option<String> {
    match d.rebound.as_deref() {
        Some(r) if r == VfDriver::VfioPci.as_str() => Some(r.to_string()),
        Some(_) => None,
        None => d.original_driver.clone(),
    }
}

fn observe(ctx: &DraContext, p: &DevicePlan, nl: &mut Nl) -> Result<Observed, String> {
    let v = &p.dev().view;
    let dev = ctx.sysfs.pci_device(v.pci);
    let driver = dev.driver().map_err(|e| e.to_string())?;
    let netdev = dev
        .netdevs()
        .map_err(|e| e.to_string())?
        .first()
        .map(|n| n.name().to_string());
    let mut obs = Observed {
        driver,
        netdev,
        ..Observed::default()
    };
    if p.config.mtu.is_some()
        && let Some(n) = &obs.netdev
    {
        let link = nl.get()?.link_by_name(n).map_err(|e| e.to_string())?;
        obs.mtu = link.and_then(|l| l.mtu);
    }
    if !prepare::vf_settings(&p.config).is_empty()
        && let (Some(pf), Some(pf_name), Some(idx)) = (v.pf, &v.pf_netdev, v.vf_index)
    {
        let pf_driver = ctx
            .sysfs
            .pci_device(pf)
            .driver()
            .map_err(|e| e.to_string())?;
        let pf = Pf {
            name: pf_name.clone(),
            driver: pf_driver.clone().unwrap_or_default(),
        };
        obs.saved_vf = Some(nl.get()?.vf_state(&pf, idx).map_err(|e| e.to_string())?);
        obs.pf_driver = pf_driver;
    }
    Ok(obs)
}

type StepError = (String, String, String);

fn apply(
    ctx: &DraContext,
    rec: &ClaimRecord,
    out: &ClaimOutput,
    nl: &mut Nl,
) -> Result<(), StepError> {
    for d in &rec.devices {
        let pci = d.pci.to_string();
        let fail = |what: &str, reason: String| (pci.clone(), what.to_string(), reason);
        if let Some(kind) = d.rebound.as_deref() {
            let orig = d.original_driver.as_deref();
            let actions = if kind == VfDriver::VfioPci.as_str() {
                rebind::to_vfio(d.pci, orig)
            } else {
                rebind::to_kernel(d.pci, orig)
            };
            rebind::run(&ctx.sysfs, &actions, ctx.rebind_timeout)
                .map_err(|e| fail(&format!("rebinding to {kind}"), e.to_string()))?;
        }
        if let (Some(pf), Some(idx)) = (&d.pf, d.vf_index) {
            for s in &d.vf_settings {
                let what = format!("setting {} through PF {}", s.describe(), pf.name);
                let r = nl
                    .get()
                    .and_then(|n| n.set_vf(&pf.netlink(), idx, s).map_err(|e| e.to_string()));
                r.map_err(|e| fail(&what, e))?;
            }
        }
        if let Some(m) = d.mtu {
            set_mtu(ctx, d, m, nl).map_err(|e| fail(&format!("setting MTU {m}"), e))?;
        }
        crate::fault::crash_point("dra.prepare.after.device");
    }
    let file_err = |p: &PathBuf, e: String| (p.display().to_string(), "writing".into(), e);
    if let Some(p) = &rec.cdi_spec {
        let names: Vec<String> = rec
            .devices
            .iter()
            .map(|d| cdi::device_name(d.pci))
            .collect();
        let kind = cdi::kind(&ctx.driver);
        stale_cdi::clear(&ctx.cdi_dir, &ctx.driver, &kind, p, &names).map_err(|(f, e)| {
            let what = "taking this claim's VFs out of a leftover CDI spec";
            (f.display().to_string(), what.to_string(), e)
        })?;
        let bytes = serde_json::to_vec_pretty(&out.spec).map_err(|e| file_err(p, e.to_string()))?;
        files::write_atomic(p, &bytes, 0o644).map_err(|e| file_err(p, e.to_string()))?;
    }
    for (path, (_, json)) in rec.devinfo.iter().zip(&out.devinfo) {
        files::write_atomic(path, json.as_bytes(), 0o644)
            .map_err(|e| file_err(path, e.to_string()))?;
    }
    crate::fault::crash_point("dra.prepare.after.files");
    Ok(())
}

/// Sets the MTU of the VF's netdev: the one observed, or the one that
/// appeared after a rebind to the kernel driver.
fn set_mtu(ctx: &DraContext, d: &DeviceRecord, mtu: u32, nl: &mut Nl) -> Result<(), String> {
    let name = match &d.netdev {
        Some(n) => n.clone(),
        None => ctx
            .sysfs
            .pci_device(d.pci)
            .netdevs()
            .map_err(|e| e.to_string())?
            .first()
            .map(|n| n.name().to_string())
            .ok_or("the VF has no netdev in the host")?,
    };
    let n = nl.get()?;
    let link = n.require_link(&name).map_err(|e| e.to_string())?;
    n.set_mtu(&link, mtu).map_err(|e| e.to_string())
}

/// Undoes a record's changes in reverse order and removes its files;
/// keeps going after a failure and returns every error.
fn restore(ctx: &DraContext, rec: &ClaimRecord, nl: &mut Nl) -> Vec<String> {
    let mut errors = Vec::new();
    for d in rec.devices.iter().rev() {
        if let (Some(_), Some(orig), Some(name)) = (d.mtu, d.original_mtu, &d.netdev) {
            let r = nl.get().and_then(|n| match n.link_by_name(name) {
                Ok(Some(link)) => n.set_mtu(&link, orig).map_err(|e| e.to_string()),
                // In a pod (the CNI's DEL restores it) or gone with its VF.
                Ok(None) => {
                    tracing::warn!(netdev = %name, "not in the host; MTU left");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            });
            if let Err(e) = r {
                errors.push(format!("{}: restoring MTU {orig} on {name}: {e}", d.pci));
            }
        }
        if let (Some(pf), Some(idx), Some(saved)) = (&d.pf, d.vf_index, &d.saved_vf) {
            for s in restore_settings(saved, &d.vf_settings) {
                let r = nl
                    .get()
                    .and_then(|n| n.set_vf(&pf.netlink(), idx, &s).map_err(|e| e.to_string()));
                if let Err(e) = r {
                    errors.push(format!("{}: restoring {}: {e}", d.pci, s.describe()));
                }
            }
        }
        if d.rebound.is_some() {
            let back = rebind::back_to(d.pci, d.original_driver.as_deref());
            if let Err(e) = rebind::run(&ctx.sysfs, &back, ctx.rebind_timeout) {
                let to = d.original_driver.as_deref().unwrap_or("no driver");
                errors.push(format!("{}: rebinding back to {to}: {e}", d.pci));
            }
        }
    }
    let files = rec.cdi_spec.iter().chain(&rec.devinfo);
    for f in files {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                errors.push(format!("removing {}: {e}", f.display()));
            }
            _ => {}
        }
    }
    errors
}
