//! The apply journal: `<state-dir>/provision/journal.json` holds a round's
//! steps (each with its undo) and the step reached; the next apply reads it
//! first and finishes or rolls back that step. Mode 0600 in a 0700 dir.
//!
//! Durability is paid once per round: the round's record is written with
//! temp file, fsync, rename and directory fsync before its first write.
//! Advancing to the next step is a rename without fsync: what the journal
//! protects is kernel state (VF counts, bindings, `driver_override`), which
//! a power loss resets anyway, while a killed process leaves the page
//! cache, and so the step reached, intact. An fsync costs ~12 ms on the
//! test machine's disk; one per step would cost more than the work itself.

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
    /// The round's steps.
    pub steps: Vec<Step>,
    /// Index of the step reached.
    pub reached: usize,
}

impl Record {
    /// A record of a round about to start its first step.
    pub fn new(steps: Vec<Step>) -> Self {
        Self {
            version: VERSION,
            steps,
            reached: 0,
        }
    }

    /// The step reached, if the index is in range.
    pub fn step(&self) -> Option<&Step> {
        self.steps.get(self.reached)
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

    /// Durably records a round before its first write.
    pub fn begin(&self, rec: &Record) -> Result<(), JournalError> {
        self.write(rec, true)
    }

    /// Records the step reached (a rename, no fsync: see the module doc).
    pub fn advance(&self, rec: &Record) -> Result<(), JournalError> {
        self.write(rec, false)
    }

    fn write(&self, rec: &Record, durable: bool) -> Result<(), JournalError> {
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
        if durable {
            f.sync_all().map_err(io_err("syncing", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
        if durable {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Removes the journal once the round has finished. Not synced: a
    /// journal that reappears after a power loss names a step that is
    /// finished again harmlessly (every action checks whether it is done).
    pub fn clear(&self) -> Result<(), JournalError> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
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
        let mut rec = Record::new(vec![step.clone(), step]);
        j.begin(&rec).unwrap();
        rec.reached = 1;
        j.advance(&rec).unwrap();
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
