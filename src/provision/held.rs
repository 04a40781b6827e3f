//! The VFs pods currently hold, which provisioning never unbinds or
//! destroys. Computed in exactly one place for `fastpath apply`, `fastpath
//! plan` and the agent's policy reconcile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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
/// The CNI's durable records (`<state_dir>/cni/`) are the source; they are
/// read through the CNI module's record list once it is part of this
/// build. Until then no VF is known to be held, and this says so.
pub fn held_vfs(state_dir: &Path) -> Result<BTreeSet<PciAddress>, HeldError> {
    // The agent asks on every policy poll: say it once per process.
    static WARNED: AtomicBool = AtomicBool::new(false);
    let records = state_dir.join("cni");
    if records.is_dir() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            dir = %records.display(),
            "this build does not read CNI records: VFs held by pods are not protected"
        );
    }
    Ok(BTreeSet::new())
}
