//! Network namespaces: open one by path and run a closure inside it.
//!
//! `setns(2)` changes the namespace of the calling thread only, so work in
//! another namespace happens on a dedicated OS thread that is never an
//! async worker; a guard switches the thread back even if the closure
//! panics, so the thread never runs anything else in the wrong namespace.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Opening or entering a network namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (the pod is gone, or a typo).
    #[error("opening netns {path}: {source}")]
    Open {
        /// The path given (CNI_NETNS).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `setns` refused the file (not a network namespace).
    #[error("entering netns {path}: {source}")]
    Enter {
        /// The namespace's path.
        path: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// The worker thread could not be started.
    #[error("starting a thread for netns {path}: {source}")]
    Spawn {
        /// The namespace's path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The closure panicked inside the namespace.
    #[error("work inside netns {0} panicked")]
    Panicked(PathBuf),
}

/// An open network namespace (the file keeps it alive while held).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace bound at `path` (e.g. `/var/run/netns/x` or
    /// `/proc/<pid>/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetnsError> {
        let path = path.as_ref().to_path_buf();
        match File::open(&path) {
            Ok(file) => Ok(Self { file, path }),
            Err(source) => Err(NetnsError::Open { path, source }),
        }
    }

    /// True when `path` is a namespace file (nsfs): a pod netns whose
    /// bind mount is gone leaves at most a plain file behind.
    pub fn exists(path: impl AsRef<Path>) -> bool {
        nix::sys::statfs::statfs(path.as_ref())
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
    }

    /// The calling thread's current network namespace.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor, for `IFLA_NET_NS_FD`.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` inside this namespace on a dedicated thread and returns
    /// its value. The calling thread's namespace is never changed.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let home = NetNs::current()?;
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("fastpath-netns".into())
                .spawn_scoped(scope, || -> Result<T, NetnsError> {
                    let _guard = Entered::enter(self, &home)?;
                    Ok(f())
                })
                .map_err(|source| NetnsError::Spawn {
                    path: self.path.clone(),
                    source,
                })?;
            handle
                .join()
                .map_err(|_| NetnsError::Panicked(self.path.clone()))?
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Switches the current thread back to `home` when dropped.
struct Entered<'a> {
    home: &'a NetNs,
}

impl<'a> Entered<'a> {
    fn enter(target: &NetNs, home: &'a NetNs) -> Result<Self, NetnsError> {
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: target.path.clone(),
            source,
        })?;
        Ok(Self { home })
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            // The thread ends right after this, so nothing else runs in
            // the wrong namespace; still worth a trace.
            tracing::error!(netns = %self.home.path.display(), "switching back: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_names_its_path() {
        let e = NetNs::open("/nonexistent/netns/x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/netns/x"), "{e}");
    }

    #[test]
    fn running_in_the_current_namespace_returns_the_value_and_keeps_ours() {
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let ns = NetNs::current().unwrap();
        let inside = ns
            .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .unwrap();
        assert_eq!(inside, before);
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            before
        );
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        let ns = NetNs::open("/proc/self/status").unwrap();
        assert!(matches!(ns.run(|| ()), Err(NetnsError::Enter { .. })));
    }

    #[test]
    fn only_namespace_files_exist_as_namespaces() {
        assert!(NetNs::exists("/proc/self/ns/net"));
        assert!(!NetNs::exists("/proc/self/status"));
        assert!(!NetNs::exists("/nonexistent/netns/x"));
    }
}
