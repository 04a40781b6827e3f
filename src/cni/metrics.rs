//! The CNI's side of its metrics channel to the agent. The CNI process
//! cannot reach the agent (and must work without it), so each invocation
//! leaves one small JSON file in `<state_dir>/metrics/cni/`, which the
//! agent drains into `/metrics` (`agent::cni_metrics`). Format in
//! docs/OPERATIONS.md ("CNI metrics files"). Writing is best effort: a
//! failure is logged and never changes the command's result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Most files waiting for the agent: with no agent draining them a writer
/// stops adding files at this count, so the directory stays bounded (a few
/// hundred KiB).
pub const MAX_PENDING_FILES: usize = 4096;

/// The directory under the state dir.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("metrics/cni")
}

/// One CNI invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CniEvent {
    /// `ADD`, `DEL`, `CHECK`, `STATUS`, `GC`, `VERSION`.
    pub command: String,
    /// Whether it succeeded (exit code 0).
    pub ok: bool,
    /// Wall time in microseconds.
    pub duration_us: u64,
    /// The error code returned, when it failed (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

/// Leaves `event` for the agent under `state_dir`: a dot-prefixed temp
/// file renamed into place, so the agent never reads half a file. Skipped
/// when the state dir does not exist (nothing of fastpath's is on this
/// node) or [`MAX_PENDING_FILES`] are already waiting.
pub fn record(state_dir: &Path, event: &CniEvent) {
    if let Err(e) = try_record(state_dir, event) {
        tracing::debug!("CNI metrics not written: {e}");
    }
}

fn try_record(state_dir: &Path, event: &CniEvent) -> std::io::Result<()> {
    if !state_dir.is_dir() {
        return Ok(());
    }
    let d = dir(state_dir);
    match std::fs::read_dir(&d) {
        Ok(entries) => {
            if entries.take(MAX_PENDING_FILES).count() >= MAX_PENDING_FILES {
                return Ok(());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).create(&d)?;
        }
        Err(e) => return Err(e),
    }
    // Unique per process and call: nanoseconds, pid and a counter.
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let name = format!(
        "{nanos}-{}-{}.json",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = d.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(event)?)?;
    std::fs::rename(&tmp, d.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_parsable_file_per_event_and_stops_at_the_bound() {
        let state = tempfile::tempdir().unwrap();
        let ev = CniEvent {
            command: "ADD".into(),
            ok: false,
            duration_us: 1234,
            error_code: Some(7),
        };
        record(state.path(), &ev);
        let files: Vec<_> = std::fs::read_dir(dir(state.path()))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        let back: CniEvent =
            serde_json::from_slice(&std::fs::read(files[0].path()).unwrap()).unwrap();
        assert_eq!(back, ev);

        for i in 1..MAX_PENDING_FILES {
            std::fs::write(dir(state.path()).join(format!("x{i}.json")), "{}").unwrap();
        }
        record(state.path(), &ev);
        assert_eq!(
            std::fs::read_dir(dir(state.path())).unwrap().count(),
            MAX_PENDING_FILES
        );
    }

    #[test]
    fn no_state_dir_means_no_write() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("absent");
        record(
            &missing,
            &CniEvent {
                command: "DEL".into(),
                ok: true,
                duration_us: 1,
                error_code: None,
            },
        );
        assert!(!missing.exists());
    }
}
