//! Reads relative to an open directory (`openat`, `readlinkat`): a scan of
//! a thousand VFs reads tens of thousands of attributes, and walking the
//! full path from the sysfs root for each one was most of its cost.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;

use super::{Result, SysfsError};

/// The most a sysfs attribute can hold (one page); longer content in a fake
/// tree is cut here rather than read without bound.
pub(crate) const ATTR_MAX: usize = 4096;

/// An open directory (`O_PATH`), shared by the handles made from it.
#[derive(Debug, Clone)]
pub(crate) struct DirFd(Arc<OwnedFd>);

impl DirFd {
    /// Opens `path` as a directory.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty())?;
        Ok(Self(Arc::new(fd)))
    }

    /// Reads the file `rel` below this directory (at most [`ATTR_MAX`] bytes).
    pub(crate) fn read(&self, rel: &Path) -> io::Result<String> {
        let fd = openat(
            &*self.0,
            rel,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        read_bounded(File::from(fd))
    }

    /// The target of the link `rel` below this directory.
    pub(crate) fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        Ok(PathBuf::from(readlinkat(&*self.0, rel)?))
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Reads at most [`ATTR_MAX`] bytes of UTF-8, trimmed of the kernel's
/// trailing newline. A short read ends it: sysfs returns an attribute whole
/// in one read, and for regular files a short read means end of file.
pub(crate) fn read_bounded(mut file: File) -> io::Result<String> {
    let mut buf = [0u8; ATTR_MAX];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(s.trim_end_matches(['\n', '\0', ' ']).to_string())
}

/// A sysfs directory by path, optionally reached from an open ancestor:
/// reads then go through `<ancestor fd>/<rel>/<name>` (a few components)
/// instead of the full path; errors always name the full path.
#[derive(Debug, Clone)]
pub(crate) struct AttrDir {
    path: PathBuf,
    at: Option<(DirFd, PathBuf)>,
}

impl AttrDir {
    /// A directory read by path.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, at: None }
    }

    /// The same directory held open (by path if it cannot be opened, e.g.
    /// because it is gone: reads then fail as they should).
    pub(crate) fn opened(self) -> Self {
        let at = match self.at {
            Some(at) => Some(at),
            None => DirFd::open(&self.path).ok().map(|fd| (fd, PathBuf::new())),
        };
        Self { at, ..self }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `rel` (a relative link target or a child name) below
    /// this one, read through this one's open ancestor when it has one. An
    /// absolute `rel` is read by its path.
    pub(crate) fn child(&self, rel: &Path) -> Self {
        let path = super::lexical_join(&self.path, rel).unwrap_or_else(|| self.path.join(rel));
        let at = match &self.at {
            Some((fd, prefix)) if rel.is_relative() => Some((fd.clone(), prefix.join(rel))),
            _ => None,
        };
        Self { path, at }
    }

    fn err(&self, name: &str, source: io::Error) -> SysfsError {
        SysfsError::Read {
            path: self.path.join(name),
            source,
        }
    }

    /// The attribute `name`, trimmed.
    pub(crate) fn read(&self, name: &str) -> Result<String> {
        match &self.at {
            Some((fd, prefix)) => fd.read(&prefix.join(name)).map_err(|e| self.err(name, e)),
            None => super::read_trimmed(&self.path.join(name)),
        }
    }

    /// The attribute `name`, parsed; bad content is an error naming it.
    pub(crate) fn read_parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T> {
        if self.at.is_none() {
            return super::read_parsed(&self.path.join(name), parse);
        }
        let s = self.read(name)?;
        parse(&s).ok_or_else(|| SysfsError::Parse {
            path: self.path.join(name),
            content: s,
        })
    }

    /// The target of the link `name`.
    pub(crate) fn read_link(&self, name: &str) -> Result<PathBuf> {
        match &self.at {
            Some((fd, prefix)) => fd.read_link(&prefix.join(name)),
            None => std::fs::read_link(self.path.join(name)),
        }
        .map_err(|e| self.err(name, e))
    }

    /// The last component of the link `name`'s target (`driver` -> `ice`).
    pub(crate) fn link_basename(&self, name: &str) -> Result<String> {
        if self.at.is_none() {
            return super::link_basename(&self.path.join(name));
        }
        let target = self.read_link(name)?;
        target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| SysfsError::Parse {
                path: self.path.join(name),
                content: target.display().to_string(),
            })
    }

    /// Names in the directory `name` below this one (`.` for this one),
    /// listed by path: std's `read_dir` costs fewer system calls than
    /// `fdopendir` on a directory opened relative to the ancestor.
    pub(crate) fn list(&self, name: &str) -> Result<Vec<String>> {
        super::read_dir_names(&self.path.join(name))
    }
}
