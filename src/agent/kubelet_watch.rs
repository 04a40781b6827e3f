//! Watches kubelet's device-plugin directory with inotify so a kubelet
//! restart (its socket removed and created again) is seen at once rather
//! than on a 5 s poll, which misses a quick recreate.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// The inotify watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}")]
pub struct WatchError {
    /// The directory.
    pub path: PathBuf,
    /// The errno.
    pub source: nix::Error,
}

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Something happened to a socket in the watched directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEvent {
    /// `name` was created.
    Created(String),
    /// `name` was removed.
    Removed(String),
}

/// Starts watching `dir`; events arrive on the returned channel until it
/// is dropped.
pub fn watch_dir(dir: &Path) -> Result<mpsc::UnboundedReceiver<SocketEvent>, WatchError> {
    let err = |source| WatchError {
        path: dir.to_path_buf(),
        source,
    };
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(err)?;
    ino.add_watch(
        dir,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM,
    )
    .map_err(err)?;
    // SAFETY: `Fd` owns the inotify descriptor, which stays open and is the
    // same descriptor for as long as the AsyncFd owns `Fd`.
    let fd = unsafe { AsyncFd::register(Fd(ino)) }.map_err(|e| {
        err(nix::Error::from_raw(
            e.into_parts().1.raw_os_error().unwrap_or(0),
        ))
    })?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let mut guard = tokio::select! {
                g = fd.readable() => match g {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::error!("inotify: {e}");
                        return;
                    }
                },
                () = tx.closed() => return,
            };
            match guard.get_inner().0.read_events() {
                Ok(events) => {
                    for e in events {
                        let Some(name) = e.name.and_then(|n| n.into_string().ok()) else {
                            continue;
                        };
                        let ev = if e
                            .mask
                            .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                        {
                            SocketEvent::Created(name)
                        } else {
                            SocketEvent::Removed(name)
                        };
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                }
                Err(nix::Error::EAGAIN) => guard.clear_ready(),
                Err(e) => {
                    tracing::error!("inotify read: {e}");
                    return;
                }
            }
        }
    });
    Ok(rx)
}
