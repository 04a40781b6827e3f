//! Atomic installation of the fastpath binary into a CNI bin dir.
//!
//! The container runtime may exec the CNI binary at any moment, so a
//! reader must see either the old file or the complete new one: copy to a
//! temporary name in the destination directory (same filesystem), fsync,
//! chmod 0755, then `rename` over the final name, and fsync the directory
//! so the rename survives a crash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Mode of an installed CNI binary: runnable by all, writable by root.
const INSTALLED_MODE: u32 = 0o755;

/// Installing the binary failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The destination directory does not exist (or is not a directory).
    #[error("destination {0} is not an existing directory")]
    DestinationMissing(PathBuf),
    /// The source binary could not be opened.
    #[error("opening source binary {path}: {source}")]
    OpenSource {
        /// The source.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An installed name is not a plain file name.
    #[error("invalid installed name {0:?}: must be a plain file name")]
    InvalidName(String),
    /// Writing the temporary copy failed.
    #[error("writing temporary copy {path}: {source}")]
    WriteTemp {
        /// The temporary file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Renaming the temporary copy into place failed.
    #[error("renaming {from} to {to}: {source}")]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The final name.
        to: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Syncing the destination directory failed.
    #[error("syncing directory {path}: {source}")]
    SyncDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Copies `source` into `dest_dir` under each of `names` atomically and
/// returns the installed paths. Stops at the first failure; a name that
/// failed keeps its previous content and leaves no temporary file behind.
pub fn install_binary(
    source: &Path,
    dest_dir: &Path,
    names: &[&str],
) -> Result<Vec<PathBuf>, InstallError> {
    if !dest_dir.is_dir() {
        return Err(InstallError::DestinationMissing(dest_dir.to_path_buf()));
    }
    for name in names {
        if !valid_name(name) {
            return Err(InstallError::InvalidName((*name).to_string()));
        }
    }
    let mut installed = Vec::with_capacity(names.len());
    for name in names {
        installed.push(install_one(source, dest_dir, name)?);
    }
    let dir = File::open(dest_dir).map_err(|source| InstallError::SyncDir {
        path: dest_dir.to_path_buf(),
        source,
    })?;
    dir.sync_all().map_err(|source| InstallError::SyncDir {
        path: dest_dir.to_path_buf(),
        source,
    })?;
    Ok(installed)
}

/// A name that joins into `dest_dir` as exactly one component.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn install_one(source: &Path, dest_dir: &Path, name: &str) -> Result<PathBuf, InstallError> {
    let mut src = File::open(source).map_err(|e| InstallError::OpenSource {
        path: source.to_path_buf(),
        source: e,
    })?;
    let target = dest_dir.join(name);
    let (tmp, mut out) = create_temp(dest_dir, name)
        .map_err(|(path, source)| InstallError::WriteTemp { path, source })?;
    if let Err(source) = write_temp(&mut src, &mut out) {
        drop(out);
        let _ = fs::remove_file(&tmp);
        return Err(InstallError::WriteTemp { path: tmp, source });
    }
    drop(out);
    if let Err(source) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(InstallError::Rename {
            from: tmp,
            to: target,
            source,
        });
    }
    tracing::info!(path = %target.display(), "installed CNI binary");
    Ok(target)
}

/// Creates a new, private temporary file beside the target. Two
/// installers may run at once (two init containers during a rollout, each
/// possibly pid 1 in its own namespace), so the name mixes pid, time and a
/// counter, and the file must not exist yet.
fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File), (PathBuf, io::Error)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempt = 0;
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{name}.fastpath-tmp.{}.{nanos:09}.{n}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err((tmp, e)),
        }
    }
}

/// Copies `src` into `out`, sets the final mode, and syncs.
fn write_temp(src: &mut File, out: &mut File) -> io::Result<()> {
    io::copy(src, out)?;
    // Explicit chmod: the umask may have narrowed the create mode.
    out.set_permissions(fs::Permissions::from_mode(INSTALLED_MODE))?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn source_in(dir: &Path, content: &[u8]) -> PathBuf {
        let p = dir.join("fastpath-src");
        fs::write(&p, content).unwrap();
        p
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("fastpath-tmp"))
            .collect()
    }

    #[test]
    fn installs_under_every_name_with_mode_0755() {
        let src_dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let src = source_in(src_dir.path(), b"\x7fELF binary");
        let got = install_binary(&src, dest.path(), &["fastpath", "sriov"]).unwrap();
        assert_eq!(
            got,
            vec![dest.path().join("fastpath"), dest.path().join("sriov")]
        );
        for p in &got {
            assert_eq!(fs::read(p).unwrap(), b"\x7fELF binary");
            assert_eq!(fs::metadata(p).unwrap().mode() & 0o7777, 0o755);
        }
        assert!(leftovers(dest.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_replaced_by_rename_not_rewritten_in_place() {
        let src_dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let old = dest.path().join("fastpath");
        fs::write(&old, b"old version").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o700)).unwrap();
        // A runtime that has the old binary open keeps reading the old
        // inode: the install must swap the name, not write into the file.
        let held_open = File::open(&old).unwrap();
        let old_inode = held_open.metadata().unwrap().ino();

        let src = source_in(src_dir.path(), b"new version");
        install_binary(&src, dest.path(), &["fastpath"]).unwrap();

        let meta = fs::metadata(&old).unwrap();
        assert_ne!(meta.ino(), old_inode, "the name must point at a new inode");
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(fs::read(&old).unwrap(), b"new version");
        let mut still = String::new();
        io::Read::read_to_string(&mut &held_open, &mut still).unwrap();
        assert_eq!(still, "old version");
        assert!(leftovers(dest.path()).is_empty());
    }

    #[test]
    fn a_missing_destination_is_a_clear_error() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = source_in(src_dir.path(), b"x");
        let missing = src_dir.path().join("no/such/dir");
        let err = install_binary(&src, &missing, &["fastpath"]).unwrap_err();
        assert!(matches!(err, InstallError::DestinationMissing(ref p) if p == &missing));
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn a_file_as_destination_is_rejected() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = source_in(src_dir.path(), b"x");
        let err = install_binary(&src, &src, &["fastpath"]).unwrap_err();
        assert!(matches!(err, InstallError::DestinationMissing(_)));
    }

    #[test]
    fn a_missing_source_names_the_source_and_leaves_the_old_binary() {
        let dest = tempfile::tempdir().unwrap();
        fs::write(dest.path().join("fastpath"), b"old").unwrap();
        let missing = dest.path().join("nope");
        let err = install_binary(&missing, dest.path(), &["fastpath"]).unwrap_err();
        assert!(matches!(err, InstallError::OpenSource { ref path, .. } if path == &missing));
        assert_eq!(fs::read(dest.path().join("fastpath")).unwrap(), b"old");
        assert!(leftovers(dest.path()).is_empty());
    }

    #[test]
    fn names_that_are_not_plain_file_names_change_nothing() {
        let src_dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let src = source_in(src_dir.path(), b"x");
        for bad in ["", ".", "..", "../escape", "a/b"] {
            let err = install_binary(&src, dest.path(), &["fastpath", bad]).unwrap_err();
            assert!(matches!(err, InstallError::InvalidName(_)), "{bad:?}");
        }
        assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_copy_removes_its_temporary_file_and_keeps_the_old_binary() {
        let dest = tempfile::tempdir().unwrap();
        fs::write(dest.path().join("fastpath"), b"old").unwrap();
        // A directory opens fine but fails on read (EISDIR): the copy
        // fails after the temporary file exists.
        let src_dir = tempfile::tempdir().unwrap();
        let err = install_binary(src_dir.path(), dest.path(), &["fastpath"]).unwrap_err();
        assert!(matches!(err, InstallError::WriteTemp { .. }), "{err}");
        assert_eq!(fs::read(dest.path().join("fastpath")).unwrap(), b"old");
        assert!(leftovers(dest.path()).is_empty());
    }

    #[test]
    fn concurrent_installs_never_share_a_temporary_file() {
        let src_dir = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let src = source_in(src_dir.path(), &content);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| install_binary(&src, dest.path(), &["fastpath"]).unwrap());
            }
        });
        assert_eq!(fs::read(dest.path().join("fastpath")).unwrap(), content);
        assert!(leftovers(dest.path()).is_empty());
    }
}
