//! The apply journal: `<state-dir>/provision/journal.json` names the step
//! an apply has reached and how to undo it, written durably (temp file,
//! fsync, rename, directory fsync; mode 0600 in a 0700 directory) before
//! the step's first write. The next apply reads it first and finishes or
//! rolls back that step.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Step;

const FILE: &str = "journal.json";
const TMP: &str = "journal.json.tmp";
const VERSION: u32 = 1;

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// The journal holds something this version cannot read.
    #[error("{path}: unreadable journal: {reason}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the journal records: the step in progress and its undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version.
    pub version: u32,
    /// The step reached.
    pub step: Step,
    /// Its position in the plan round.
    pub index: usize,
    /// Steps in that round.
    pub of: usize,
}

impl Record {
    /// A record for step `index` of `of`.
    pub fn new(step: Step, index: usize, of: usize) -> Self {
        Self {
            version: VERSION,
            step,
            index,
            of,
        }
    }
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |error| JournalError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

impl Journal {
    /// The journal under `<state_dir>/provision` (created, 0700, on the
    /// first record; reading never creates anything).
    pub fn open(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("provision"),
        }
    }

    /// The journal file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The interrupted step, if an apply stopped before finishing.
    pub fn read(&self) -> Result<Option<Record>, JournalError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let rec: Record = serde_json::from_str(&text).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if rec.version != VERSION {
            return Err(JournalError::Corrupt {
                path,
                reason: format!("version {} (expected {VERSION})", rec.version),
            });
        }
        Ok(Some(rec))
    }

    /// Durably records `rec` as the step reached.
    pub fn record(&self, rec: &Record) -> Result<(), JournalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err("creating", &self.dir))?;
        let tmp = self.dir.join(TMP);
        let path = self.path();
        let body = serde_json::to_vec_pretty(rec).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(&body).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
        self.sync_dir()
    }

    /// Removes the journal once the apply has finished.
    pub fn clear(&self) -> Result<(), JournalError> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::provision::plan::Action;

    #[test]
    fn records_survive_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        assert_eq!(j.read().unwrap(), None);
        let step = Step {
            summary: "PF 0000:05:00.0 numVfs 0 -> 4".into(),
            actions: vec![Action::SetNumVfs {
                pf: "0000:05:00.0".parse().unwrap(),
                count: 4,
            }],
            undo: vec![],
        };
        let rec = Record::new(step, 0, 1);
        j.record(&rec).unwrap();
        assert_eq!(Journal::open(dir.path()).read().unwrap(), Some(rec));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&j.path()), 0o600);
        assert_eq!(mode(&dir.path().join("provision")), 0o700);
        assert!(!dir.path().join("provision").join(TMP).exists());
        j.clear().unwrap();
        assert_eq!(j.read().unwrap(), None);
        j.clear().unwrap();
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path());
        fs::create_dir_all(dir.path().join("provision")).unwrap();
        fs::write(j.path(), "{not json").unwrap();
        assert!(matches!(j.read(), Err(JournalError::Corrupt { .. })));
    }
}
