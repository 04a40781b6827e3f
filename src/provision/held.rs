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
/// recovery restores it.
pub fn held_vfs(state_dir: &Path) -> Result<BTreeSet<PciAddress>, HeldError> {
    let records = crate::cni::records::list(state_dir).map_err(|e| HeldError::ReadRecords {
        dir: crate::cni::records::records_dir(state_dir),
        reason: e.to_string(),
    })?;
    Ok(records.into_iter().map(|a| a.pci).collect())
}
