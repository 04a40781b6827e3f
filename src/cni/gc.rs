//! STATUS and GC (CNI 1.1).

use std::collections::HashSet;

use serde_json::Value;

use super::config::Config;
use super::del::restore;
use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::ipam;
use super::lock::lock_vf;
use super::records::{self, Durability, ensure_dir, records_dir, write_atomic};
use crate::sysfs::Sysfs;

/// STATUS: ready when the state dir is writable and IPAM answers STATUS.
pub fn status(env: &CniEnv, conf: &Config) -> CniResult<()> {
    let dir = records_dir(&env.state_dir);
    let probe = dir.join(".status-probe");
    ensure_dir(&dir)
        .and_then(|_| write_atomic(&probe, b"ok", Durability::Atomic))
        .map_err(|e| CniError::new(code::NOT_AVAILABLE, "state dir not writable", e.to_string()))?;
    let _ = std::fs::remove_file(&probe);
    ipam::forward("STATUS", conf, env)
}

/// The `cni.dev/valid-attachments` of a GC config, as (containerID, ifname).
fn valid_attachments(conf: &Config) -> CniResult<HashSet<(String, String)>> {
    let Some(list) = conf.raw.get("cni.dev/valid-attachments") else {
        return Ok(HashSet::new());
    };
    let Some(list) = list.as_array() else {
        return Err(CniError::invalid_field(
            "cni.dev/valid-attachments",
            list,
            "must be a list",
        ));
    };
    list.iter()
        .map(|a| {
            let s = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            match (s("containerID"), s("ifname")) {
                (Some(c), Some(i)) => Ok((c, i)),
                _ => Err(CniError::invalid_field(
                    "cni.dev/valid-attachments",
                    a,
                    "entries need containerID and ifname",
                )),
            }
        })
        .collect()
}

/// GC: restores every VF of this network whose attachment is not valid,
/// then forwards GC to IPAM. Errors are collected; all records are tried.
pub fn gc(env: &CniEnv, conf: &Config) -> CniResult<()> {
    let valid = valid_attachments(conf)?;
    let sysfs = Sysfs::new(&env.sysfs_root);
    let mut errors = Vec::new();
    for rec in records::load_all(&env.state_dir)? {
        if rec.network != conf.name
            || valid.contains(&(rec.container_id.clone(), rec.ifname.clone()))
        {
            continue;
        }
        let _lock = lock_vf(&env.state_dir, rec.pci)?;
        let Some(rec) = records::load(&env.state_dir, rec.pci)? else {
            continue;
        };
        let rec_env = CniEnv {
            container_id: rec.container_id.clone(),
            ifname: rec.ifname.clone(),
            netns: rec.netns.clone(),
            ..env.clone()
        };
        tracing::info!(pci = %rec.pci, container = %rec.container_id, "GC: restoring");
        if let Err(e) = restore(&rec_env, Some(conf), &sysfs, &rec) {
            errors.push(e.to_string());
        }
        crate::fault::crash_point("cni.gc.after.vf");
    }
    if let Err(e) = ipam::forward("GC", conf, env) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::kernel("GC", errors.join("; ")))
    }
}
