//! The durable record of a prepared claim, `<state>/dra/claims/<uid>.json`:
//! written (temp file, fsync, rename, 0600, through the CNI records'
//! writer) before anything on the node changes, so what prepare did can
//! be undone by unprepare, by a retry after a crash, or by the start-up
//! reconcile once the claim is gone.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ClaimRef;
use crate::cni::records::{Durability, ensure_dir, write_atomic};
use crate::netlink::vf::{Pf, VfSetting, VfState};
use crate::pci::PciAddress;

/// Where prepare got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Originals saved; changes may be half done.
    Preparing,
    /// Every change made and every file written; the answer is final.
    Prepared,
}

/// The PF a VF's PF-side settings go through, serializable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PfRef {
    /// PF netdev.
    pub name: String,
    /// PF driver (for error messages).
    pub driver: String,
}

impl PfRef {
    /// As the netlink VF code takes it.
    pub fn netlink(&self) -> Pf {
        Pf {
            name: self.name.clone(),
            driver: self.driver.clone(),
        }
    }
}

/// One prepared device: what it was before and what prepare changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// The claim's request.
    pub request: String,
    /// The pool (this node).
    pub pool: String,
    /// The device name.
    pub device: String,
    /// The VF.
    pub pci: PciAddress,
    /// CDI device IDs handed to kubelet.
    pub cdi_ids: Vec<String>,
    /// Driver before prepare (`None`: unbound).
    pub original_driver: Option<String>,
    /// The driver kind prepare rebound to, if it rebound.
    pub rebound: Option<String>,
    /// The PF and VF index, when PF-side settings were applied.
    pub pf: Option<PfRef>,
    /// VF index on its PF.
    pub vf_index: Option<u32>,
    /// The PF's view of the VF before prepare.
    pub saved_vf: Option<VfState>,
    /// PF-side settings prepare applies.
    pub vf_settings: Vec<VfSetting>,
    /// The VF's netdev whose MTU prepare sets.
    pub netdev: Option<String>,
    /// Its MTU before prepare.
    pub original_mtu: Option<u32>,
    /// The MTU prepare sets.
    pub mtu: Option<u32>,
}

/// One claim's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRecord {
    /// The claim.
    pub claim: ClaimRef,
    /// Where prepare got to.
    pub phase: Phase,
    /// Its devices.
    pub devices: Vec<DeviceRecord>,
    /// The claim's CDI spec file.
    pub cdi_spec: Option<PathBuf>,
    /// Device-info files written for Multus.
    pub devinfo: Vec<PathBuf>,
}

/// A record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading, writing or removing the file.
    #[error("claim record {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A kubelet-supplied UID that cannot name a file.
    #[error(
        "claim uid {0:?} is not a Kubernetes UID (lower-case letters, digits and '-', at most 64)"
    )]
    BadUid(String),
}

/// The records directory under the state dir.
pub fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("dra").join("claims")
}

/// True for a UID that is safe as a file name: what the API server
/// generates (a UUID) and nothing that could leave the directory.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn path(state_dir: &Path, uid: &str) -> Result<PathBuf, RecordError> {
    if !valid_uid(uid) {
        return Err(RecordError::BadUid(uid.into()));
    }
    Ok(records_dir(state_dir).join(format!("{uid}.json")))
}

fn io(path: &Path, reason: impl ToString) -> RecordError {
    RecordError::Io {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Saves `r`; `Full` durability before the node changes, `Atomic` for
/// the final phase (losing it only means a retry redoes idempotent steps).
pub fn save(state_dir: &Path, r: &ClaimRecord, durability: Durability) -> Result<(), RecordError> {
    let p = path(state_dir, &r.claim.uid)?;
    let dir = records_dir(state_dir);
    ensure_dir(&dir).map_err(|e| io(&dir, e))?;
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| io(&p, e))?;
    write_atomic(&p, &bytes, durability).map_err(|e| io(&p, e))
}

/// The record of claim `uid`, if any.
pub fn load(state_dir: &Path, uid: &str) -> Result<Option<ClaimRecord>, RecordError> {
    let p = path(state_dir, uid)?;
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io(&p, format!("corrupt: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&p, e)),
    }
}

/// Removes claim `uid`'s record; absent is fine.
pub fn remove(state_dir: &Path, uid: &str) -> Result<(), RecordError> {
    let p = path(state_dir, uid)?;
    match fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p, e)),
        _ => Ok(()),
    }
}

/// Every record, in UID order; unreadable ones are skipped with a log.
pub fn load_all(state_dir: &Path) -> Vec<ClaimRecord> {
    let dir = records_dir(state_dir);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut uids: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    uids.sort();
    uids.iter()
        .filter_map(|u| match load(state_dir, u) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        })
        .collect()
}

/// Every PCI address a record on this node holds (so provisioning and
/// the device plugin leave them alone).
pub fn held(state_dir: &Path) -> Vec<PciAddress> {
    load_all(state_dir)
        .iter()
        .flat_map(|r| r.devices.iter().map(|d| d.pci))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: &str) -> ClaimRecord {
        ClaimRecord {
            claim: ClaimRef {
                namespace: "ns".into(),
                name: "c".into(),
                uid: uid.into(),
            },
            phase: Phase::Preparing,
            devices: vec![],
            cdi_spec: None,
            devinfo: vec![],
        }
    }

    #[test]
    fn records_round_trip_private_and_uids_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let uid = "0b6c2d7e-1f7a-4c1e-9d3b-5b0f6a1e2c3d";
        assert!(load(d.path(), uid).unwrap().is_none());
        save(d.path(), &rec(uid), Durability::Full).unwrap();
        assert_eq!(load(d.path(), uid).unwrap(), Some(rec(uid)));
        let mode = fs::metadata(records_dir(d.path()).join(format!("{uid}.json")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_all(d.path()).len(), 1);
        remove(d.path(), uid).unwrap();
        remove(d.path(), uid).unwrap();
        assert!(load_all(d.path()).is_empty());
        for bad in ["", "../x", "A", "a/b", &"a".repeat(65), "a.json"] {
            assert!(
                matches!(
                    save(d.path(), &rec(bad), Durability::Full),
                    Err(RecordError::BadUid(_))
                ),
                "{bad}"
            );
        }
    }
}
