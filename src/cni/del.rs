//! DEL: idempotent and best effort. With a record, undo every planned
//! step (tolerating what is already gone), release IPAM, then delete the
//! record, so an interrupted DEL is finished by the next one. Without a
//! record, act on what the config says (deviceID, IPAM).

use super::config::Config;
use super::device;
use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::ipam;
use super::lock::lock_vf;
use super::records::{self, Record};
use super::undo::{UndoCtx, undo};
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::sysfs::Sysfs;

fn ours(r: &Record, env: &CniEnv) -> bool {
    r.container_id == env.container_id && r.ifname == env.ifname
}

fn find(env: &CniEnv, conf: &Config) -> CniResult<Option<Record>> {
    match conf.device {
        Some(pci) => match records::load(&env.state_dir, pci) {
            Ok(r) => Ok(r.filter(|r| ours(r, env))),
            // A record that cannot be read cannot guide a restore; set it
            // aside (for a human) so DEL does not fail forever on it, and
            // go on as without a record.
            Err(e) if e.code == code::DECODE => {
                tracing::error!(pci = %pci, "{e}; quarantining it");
                records::quarantine(&env.state_dir, pci)?;
                Ok(None)
            }
            Err(e) => Err(e),
        },
        None => records::find_attachment(&env.state_dir, &env.container_id, &env.ifname),
    }
}

/// Runs DEL.
pub fn del(env: &CniEnv, conf: &Config) -> CniResult<()> {
    let sysfs = Sysfs::new(&env.sysfs_root);
    let Some(found) = find(env, conf)? else {
        return del_without_record(env, conf, &sysfs);
    };
    let _lock = lock_vf(&env.state_dir, found.pci)?;
    // A concurrent DEL may have finished while we waited for the lock.
    let Some(record) = records::load(&env.state_dir, found.pci)?.filter(|r| ours(r, env)) else {
        return ipam::del(conf, env);
    };
    restore(env, Some(conf), &sysfs, &record)?;
    if let Some(p) = &conf.device_info_file {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!(pci = %record.pci, ifname = %record.ifname, container = %record.container_id, "detached");
    Ok(())
}

/// Undoes a recorded attachment and deletes its record; errors keep the
/// record for the next attempt.
pub fn restore(
    env: &CniEnv,
    conf: Option<&Config>,
    sysfs: &Sysfs,
    record: &Record,
) -> CniResult<()> {
    // IPAM is released with the DEL's own config and environment; the
    // record's plan says whether ADD got as far as allocating.
    let ctx = UndoCtx {
        env,
        conf,
        sysfs,
        record,
        addresses: &[],
    };
    let errors = undo(&record.plan, &ctx);
    if !errors.is_empty() {
        return Err(CniError::kernel(
            format!("restoring VF {}", record.pci),
            errors.join("; "),
        ));
    }
    crate::fault::crash_point("cni.restore.before.record_remove");
    records::remove(&env.state_dir, record.pci)
}

/// No record (never added, already deleted, or state lost): bring a VF
/// named by deviceID home if it is still in the pod, and release IPAM.
fn del_without_record(env: &CniEnv, conf: &Config, sysfs: &Sysfs) -> CniResult<()> {
    if let (Some(pci), Some(netns)) = (conf.device, env.netns.as_deref())
        && let Ok(dev) = device::resolve(sysfs, pci)
        && !dev.dpdk
        && let Ok(pod) = NetNs::open(netns)
    {
        let _lock = lock_vf(&env.state_dir, pci)?;
        let host = NetNs::current().map_err(|e| CniError::kernel("opening the host netns", e))?;
        let mut host_nl = Netlink::open().map_err(|e| CniError::kernel("opening netlink", e))?;
        // The sysfs name is free only if it is not in use in the host.
        let home = match dev.netdev.as_deref() {
            Some(n) if matches!(host_nl.link_by_name_unlocked(n), Ok(None)) => n.to_string(),
            _ => "dev%d".to_string(),
        };
        let moved = move_home(&pod, &env.ifname, &host, &home)
            .map_err(|e| CniError::kernel(format!("moving VF {pci} home without a record"), e))?;
        if moved {
            tracing::warn!(pci = %pci, "no record: moved {} home as {home}; MAC and MTU left as the pod had them", env.ifname);
        }
    }
    ipam::del(conf, env)?;
    if let Some(p) = &conf.device_info_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

/// Moves `ifname` from `pod` into `host` as `home`; false when the pod has
/// no such interface.
pub(super) fn move_home(
    pod: &NetNs,
    ifname: &str,
    host: &NetNs,
    home: &str,
) -> Result<bool, crate::netlink::NetlinkError> {
    let mut nl = Netlink::open_in(pod)?;
    let Some(link) = nl.link_by_name_unlocked(ifname)? else {
        return Ok(false);
    };
    nl.move_to_netns(&link, host.raw_fd(), home)?;
    Ok(true)
}
