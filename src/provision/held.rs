//! The VFs pods currently hold, which provisioning never unbinds or
//! destroys. Computed in exactly one place for `fastpath apply`, `fastpath
//! plan` and the agent's policy reconcile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::pci::PciAddress;

/// The held-VF set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    /// The CNI records under `<state_dir>/cni/` could not be read.
    #[error("reading CNI records in {dir}: {reason}")]
    ReadRecords {
        /// The records directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The VFs pods currently hold.
///
/// The CNI's durable records (`<state_dir>/cni/`) are the source. Every
/// record counts, attached or not: a record without `attached` is an ADD in
/// progress or one that died mid-way, and its VF is not free until DEL or
/// recovery restores it. The DRA plugin's claim records
/// (`<state_dir>/dra/claims/`) count the same way: a prepared claim's VF
/// is a pod's, and a rebind under it would pull it from the container.
pub fn held_vfs(state_dir: &Path) -> Result<BTreeSet<PciAddress>, HeldError> {
    let records = crate::cni::records::list(state_dir).map_err(|e| HeldError::ReadRecords {
        dir: crate::cni::records::records_dir(state_dir),
        reason: e.to_string(),
    })?;
    let mut held: BTreeSet<PciAddress> = records.into_iter().map(|a| a.pci).collect();
    held.extend(crate::dra::record::held(state_dir));
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::records::Durability;
    use crate::dra::ClaimRef;
    use crate::dra::record::{self, ClaimRecord, DeviceRecord, Phase};

    #[test]
    fn vfs_of_prepared_dra_claims_are_held() {
        let d = tempfile::tempdir().unwrap();
        assert!(held_vfs(d.path()).unwrap().is_empty());
        let pci: PciAddress = "0000:3b:02.1".parse().unwrap();
        let dev = DeviceRecord {
            request: "vf".into(),
            pool: "node-a".into(),
            device: crate::dra::device_name(pci),
            pci,
            cdi_ids: vec![],
            original_driver: Some("iavf".into()),
            rebound: None,
            pf: None,
            vf_index: Some(1),
            saved_vf: None,
            vf_settings: vec![],
            netdev: None,
            original_mtu: None,
            mtu: None,
        };
        let r = ClaimRecord {
            claim: ClaimRef {
                namespace: "ns".into(),
                name: "c".into(),
                uid: "u1".into(),
            },
            phase: Phase::Prepared,
            devices: vec![dev],
            cdi_spec: None,
            devinfo: vec![],
        };
        record::save(d.path(), &r, Durability::Atomic).unwrap();
        assert_eq!(held_vfs(d.path()).unwrap(), BTreeSet::from([pci]));
    }
}
