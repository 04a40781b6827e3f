//! Network namespaces: open one by path and run a closure inside it, or
//! create a descriptor (a netlink socket) that lives in it.
//!
//! `setns(2)` changes the namespace of the calling thread only, so general
//! work in another namespace happens on a dedicated OS thread that is never
//! an async worker; a guard switches the thread back even if the closure
//! panics, so the thread never runs anything else in the wrong namespace.
//!
//! A socket keeps the namespace it was created in. The CNI's pod-side work
//! is all netlink, so it creates one socket in the pod ([`NetNs::create_in`]:
//! setns, socket, setns back, on the calling thread) and talks to the pod
//! through it: no thread start and wake-up per pod-side batch, which on a
//! busy 2-core node cost milliseconds of scheduling each.

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

impl NetNs {
    /// Calls `make` with the calling thread inside this namespace and
    /// switches back before returning. For creating descriptors only (a
    /// socket stays in the namespace it was made in): `make` must not do
    /// other work. If switching back fails the process aborts: going on in
    /// the pod's namespace could act on the wrong interfaces.
    pub fn create_in<T>(&self, make: impl FnOnce() -> T) -> Result<T, NetnsError> {
        let home = NetNs::current()?;
        let _back = Entered::enter(self, &home)?.or_abort();
        Ok(make())
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
    /// The thread lives on after the switch back (not a dedicated one).
    abort_on_failure: bool,
}

impl<'a> Entered<'a> {
    fn enter(target: &NetNs, home: &'a NetNs) -> Result<Self, NetnsError> {
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: target.path.clone(),
            source,
        })?;
        Ok(Self {
            home,
            abort_on_failure: false,
        })
    }

    fn or_abort(mut self) -> Self {
        self.abort_on_failure = true;
        self
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(self.home.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(netns = %self.home.path.display(), "switching back: {e}");
            // A dedicated thread ends right after this, so nothing else
            // runs in the wrong namespace; the calling thread would.
            if self.abort_on_failure {
                std::process::abort();
            }
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
    fn a_socket_made_in_a_namespace_stays_there_and_the_thread_comes_back() {
        let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let ns = NetNs::current().unwrap();
        let inside = ns
            .create_in(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap())
            .unwrap();
        assert_eq!(inside, before);
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            before
        );
        let bad = NetNs::open("/proc/self/status").unwrap();
        assert!(matches!(
            bad.create_in(|| ()),
            Err(NetnsError::Enter { .. })
        ));
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
