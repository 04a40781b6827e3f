//! Per-VF lock files: ADDs and DELs on one VF serialise, on different VFs
//! they run in parallel. The lock is an `flock` held for the life of the
//! returned guard (the kernel drops it if the process dies).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::error::{CniError, CniResult};
use super::records::ensure_dir;
use crate::pci::PciAddress;

/// Holds one VF's lock until dropped.
#[derive(Debug)]
pub struct VfLock {
    _lock: Flock<File>,
}

/// `<state>/cni/locks/<pci>.lock`.
pub fn lock_path(state_dir: &Path, pci: PciAddress) -> PathBuf {
    state_dir.join("cni/locks").join(format!("{pci}.lock"))
}

/// Blocks until the VF's lock is ours.
pub fn lock_vf(state_dir: &Path, pci: PciAddress) -> CniResult<VfLock> {
    lock_with(state_dir, pci, FlockArg::LockExclusive)?
        .ok_or_else(|| CniError::io("locking", std::io::Error::other("lock not taken")))
}

/// Takes the VF's lock if nobody holds it; `None` while a CNI call (or
/// another reconcile) works on the VF.
pub fn try_lock_vf(state_dir: &Path, pci: PciAddress) -> CniResult<Option<VfLock>> {
    lock_with(state_dir, pci, FlockArg::LockExclusiveNonblock)
}

fn lock_with(state_dir: &Path, pci: PciAddress, how: FlockArg) -> CniResult<Option<VfLock>> {
    let path = lock_path(state_dir, pci);
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CniError::io(format!("opening lock {}", path.display()), e))?;
    match Flock::lock(file, how) {
        Ok(lock) => Ok(Some(VfLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(CniError::io(format!("locking {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn one_vf_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let pci: PciAddress = "0000:3b:02.1".parse().unwrap();
        let inside = Arc::new(AtomicU32::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let inside = inside.clone();
                let d = dir.path();
                s.spawn(move || {
                    let _l = lock_vf(d, pci).unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    #[test]
    fn try_lock_gives_way_to_a_holder() {
        let dir = tempfile::tempdir().unwrap();
        let pci: PciAddress = "0000:3b:02.1".parse().unwrap();
        let held = lock_vf(dir.path(), pci).unwrap();
        assert!(try_lock_vf(dir.path(), pci).unwrap().is_none());
        drop(held);
        assert!(try_lock_vf(dir.path(), pci).unwrap().is_some());
    }
}
