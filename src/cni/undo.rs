//! Undoing ADD steps, in reverse, tolerant of steps that never ran or
//! whose objects are gone (the netns deleted, the veth dead). Used by a
//! failed ADD, by DEL and by GC; every error is collected and the rest
//! still runs, so one failure never strands the others.

use super::config::Config;
use super::device::host_netdev;
use super::env::CniEnv;
use super::ipam;
use super::plan::Step;
use super::records::Record;
use super::result::IpNet;
use crate::netlink::Netlink;
use crate::netlink::link::parse_mac;
use crate::netlink::vf::{Pf, VfSetting, restore_settings};
use crate::netns::NetNs;
use crate::sysfs::Sysfs;

/// What undo needs besides the steps.
pub struct UndoCtx<'a> {
    /// CNI_* of the attachment (for IPAM DEL).
    pub env: &'a CniEnv,
    /// The config (for IPAM DEL); `None` skips IPAM.
    pub conf: Option<&'a Config>,
    /// Rooted sysfs, to find the VF's host netdev by PCI address.
    pub sysfs: &'a Sysfs,
    /// The attachment's record (original state, names).
    pub record: &'a Record,
    /// Addresses ADD put on the interface (to remove on rollback).
    pub addresses: &'a [IpNet],
}

/// Undoes `done` (a prefix of the plan) in reverse; returns the errors.
pub fn undo(done: &[Step], ctx: &UndoCtx) -> Vec<String> {
    let mut errors = Vec::new();
    let pod_steps: Vec<&Step> = done.iter().rev().filter(|s| s.in_pod()).collect();
    let moved = done.contains(&Step::MoveToPod);
    let pod = ctx
        .record
        .netns
        .as_deref()
        .and_then(|p| NetNs::open(p).ok());
    if moved {
        match (&pod, NetNs::current()) {
            (Some(pod), Ok(host)) => match Netlink::open_in(pod) {
                Ok(mut nl) => errors.extend(undo_in_pod(&mut nl, &pod_steps, ctx, &host)),
                Err(e) => errors.push(e.to_string()),
            },
            (_, Err(e)) => errors.push(e.to_string()),
            (None, _) => tracing::info!(
                pci = %ctx.record.pci,
                "netns {:?} is gone; looking for the VF in the host",
                ctx.record.netns
            ),
        }
        errors.extend(fix_up_on_host(ctx));
        crate::fault::crash_point("cni.restore.after.host_fixup");
    }
    if done.contains(&Step::Ipam)
        && let Some(conf) = ctx.conf
        && let Err(e) = ipam::del(conf, ctx.env)
    {
        errors.push(e.to_string());
    }
    if done.contains(&Step::Ipam) {
        crate::fault::crash_point("cni.restore.after.ipam_release");
    }
    let changed: Vec<VfSetting> = done
        .iter()
        .filter_map(|s| match s {
            Step::PfSide(v) => Some(v.clone()),
            _ => None,
        })
        .collect();
    if !changed.is_empty() {
        errors.extend(restore_pf_side(ctx.record, &changed));
    }
    errors
}

/// In the pod: undo the pod-side steps, then move the VF home under its
/// original name; it arrives down, as the reference leaves it.
/// `nl` is a socket in the pod netns.
fn undo_in_pod(nl: &mut Netlink, steps: &[&Step], ctx: &UndoCtx, host: &NetNs) -> Vec<String> {
    let mut errors = Vec::new();
    let rec = ctx.record;
    let link = match nl.link_by_name_unlocked(&rec.ifname) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(ifname = %rec.ifname, "not in the pod netns; nothing to move back");
            return errors;
        }
        Err(e) => return vec![e.to_string()],
    };
    for step in steps {
        let r = match step {
            Step::Addresses => ctx
                .addresses
                .iter()
                .try_for_each(|a| nl.del_address(&link, a.ip, a.prefix)),
            // The move home closes the device (the kernel's netns change
            // starts with dev_close). A separate "down" first showed no
            // consistent gain over 20 A/B pairs (docs/PERFORMANCE.md,
            // "CNI ADD/DEL"), so none is sent.
            Step::Up => Ok(()),
            Step::SetMtu(_) => match rec.original.mtu {
                Some(m) => nl.set_mtu(&link, m),
                None => Ok(()),
            },
            Step::SetMac(_) => match rec.original.mac.as_deref().and_then(parse_mac) {
                Some(m) => nl.set_mac(&link, m),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = r {
            errors.push(e.to_string());
        }
        match step {
            Step::SetMtu(_) => crate::fault::crash_point("cni.restore.after.restore_mtu"),
            Step::SetMac(_) => crate::fault::crash_point("cni.restore.after.restore_mac"),
            _ => {}
        }
    }
    let home_name = rec.original.ifname.as_deref().unwrap_or("dev%d");
    if let Err(e) = nl.move_to_netns(&link, host.raw_fd(), home_name) {
        // The original name was taken meanwhile: a kernel-chosen name
        // still brings the VF home, which beats leaving it in the pod.
        tracing::warn!(ifname = %rec.ifname, "moving home as {home_name}: {e}; trying dev%d");
        if let Err(e) = nl.move_to_netns(&link, host.raw_fd(), "dev%d") {
            errors.push(e.to_string());
        }
    }
    crate::fault::crash_point("cni.restore.after.move_home");
    errors
}

/// In the host: the VF may be back under its original name (moved by us)
/// or under a kernel-given one (its netns was deleted). Find it by PCI
/// address, give it back its name, MAC and MTU.
fn fix_up_on_host(ctx: &UndoCtx) -> Vec<String> {
    let rec = ctx.record;
    let orig = &rec.original;
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => return vec![e.to_string()],
    };
    let mut candidates: Vec<String> = orig.ifname.iter().cloned().collect();
    candidates.extend(host_netdev(ctx.sysfs, rec.pci));
    let mut link = None;
    for name in candidates {
        match nl.link_by_name_unlocked(&name) {
            Ok(Some(l)) => {
                link = Some(l);
                break;
            }
            Ok(None) => {}
            Err(e) => return vec![e.to_string()],
        }
    }
    let Some(mut link) = link else {
        tracing::info!(pci = %rec.pci, "VF netdev not in the host netns; nothing to restore there");
        return Vec::new();
    };
    let mut errors = Vec::new();
    if let Some(name) = &orig.ifname
        && &link.name != name
    {
        let r = nl.set_up(&link, false).and_then(|_| nl.rename(&link, name));
        match r {
            Ok(()) => link.name = name.clone(),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some(m) = orig.mac.as_deref().and_then(parse_mac)
        && link.mac.as_deref().and_then(parse_mac) != Some(m)
        && let Err(e) = nl.set_mac(&link, m)
    {
        errors.push(e.to_string());
    }
    if let Some(m) = orig.mtu
        && link.mtu != Some(m)
        && let Err(e) = nl.set_mtu(&link, m)
    {
        errors.push(e.to_string());
    }
    errors
}

fn restore_pf_side(rec: &Record, changed: &[VfSetting]) -> Vec<String> {
    let Some(saved) = &rec.original.pf_side else {
        return vec![format!("no saved PF-side state for VF {}", rec.pci)];
    };
    let Some(pf_name) = &rec.pf_name else {
        return vec![format!("PF {} has no netdev", rec.pf_pci)];
    };
    let pf = Pf {
        name: pf_name.clone(),
        driver: rec.pf_driver.clone(),
    };
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => return vec![e.to_string()],
    };
    let mut errors = Vec::new();
    for s in restore_settings(saved, changed) {
        if let Err(e) = nl.set_vf(&pf, rec.vf_index, &s) {
            errors.push(e.to_string());
        }
        crate::fault::crash_point(crate::fault::restore_pf_side_point(&s));
    }
    errors
}
