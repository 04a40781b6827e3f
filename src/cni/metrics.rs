//! The CNI's side of its metrics channel to the agent. The CNI process
//! cannot reach the agent (and must work without it), so each invocation
//! leaves one small JSON file in `<state_dir>/metrics/cni/`, which the
//! agent drains into `/metrics` (`agent::cni_metrics`). Format in
//! docs/OPERATIONS.md ("CNI metrics files"). Writing is best effort: a
//! failure is logged and never changes the command's result.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Most files waiting for the agent. A file's name is one of this many
/// slots (`<slot>.json`), so with no agent draining them the directory
/// holds at most this many (a few hundred KiB), and a writer never has to
/// list it to find out.
pub const MAX_PENDING_FILES: usize = 4096;

/// Slots a writer tries, from a start spread by time and pid, before it
/// drops its event: a handful of failed links, not a directory listing,
/// is the price of a full directory.
const PROBES: usize = 8;

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

/// Leaves `event` for the agent under `state_dir`: written to a
/// dot-prefixed temp file, then hard-linked to a free slot name, so the
/// agent never reads half a file and a taken slot is never overwritten.
/// Skipped when the state dir does not exist (nothing of fastpath's is on
/// this node), and dropped when [`PROBES`] slots in a row are taken.
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
    // Unique per process and call: nanoseconds, pid and a counter.
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let pid = std::process::id();
    let tmp = d.join(format!(
        ".{nanos}-{pid}-{}.tmp",
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let body = serde_json::to_vec(event)?;
    let written = match std::fs::write(&tmp, &body) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .and_then(|()| std::fs::write(&tmp, &body)),
        other => other,
    };
    // Callers an instant apart start far apart, so they rarely collide.
    let start = (nanos as usize / 1000) ^ (pid as usize).wrapping_mul(2_654_435_761);
    let placed = written.and_then(|()| place(&d, &tmp, start));
    // Also after a failed write (ENOSPC): no temp file is left behind.
    let removed = match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    placed.and(removed)
}

/// Links `tmp` to the first free slot of [`PROBES`] from `start`; an
/// error when all were taken (the event is dropped, and `record` logs it).
fn place(d: &Path, tmp: &Path, start: usize) -> std::io::Result<()> {
    for i in 0..PROBES {
        let slot = start.wrapping_add(i) % MAX_PENDING_FILES;
        match std::fs::hard_link(tmp, d.join(format!("{slot}.json"))) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            done => return done,
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "{PROBES} slots from {} taken; event dropped",
            start % MAX_PENDING_FILES
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CniEvent {
        CniEvent {
            command: "ADD".into(),
            ok: false,
            duration_us: 1234,
            error_code: Some(7),
        }
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_one_parsable_slot_file_per_event_and_no_temp_file() {
        let state = tempfile::tempdir().unwrap();
        record(state.path(), &event());
        record(state.path(), &event());
        let d = dir(state.path());
        let files = names(&d);
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            let slot: usize = f.strip_suffix(".json").unwrap().parse().unwrap();
            assert!(slot < MAX_PENDING_FILES);
            let back: CniEvent =
                serde_json::from_slice(&std::fs::read(d.join(f)).unwrap()).unwrap();
            assert_eq!(back, event());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_taken_slot_is_skipped_and_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".t.tmp");
        std::fs::write(&tmp, "new").unwrap();
        // Slots wrap: a start at the last slot probes 4095, 0, 1, ...
        for taken in [MAX_PENDING_FILES - 1, 0, 1] {
            std::fs::write(d.path().join(format!("{taken}.json")), "old").unwrap();
        }
        place(d.path(), &tmp, MAX_PENDING_FILES - 1).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("2.json")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("0.json")).unwrap(),
            "old"
        );
        // All eight from there taken (2 now is): dropped, and said so.
        for taken in 3..PROBES - 1 {
            std::fs::write(d.path().join(format!("{taken}.json")), "old").unwrap();
        }
        let e = place(d.path(), &tmp, MAX_PENDING_FILES - 1).unwrap_err();
        assert!(e.to_string().contains("event dropped"), "{e}");
        assert!(!d.path().join(format!("{}.json", PROBES - 1)).exists());
    }

    #[test]
    fn a_full_window_drops_the_event_and_the_directory_stays_bounded() {
        let state = tempfile::tempdir().unwrap();
        let d = dir(state.path());
        std::fs::create_dir_all(&d).unwrap();
        for slot in 0..MAX_PENDING_FILES {
            std::fs::write(d.join(format!("{slot}.json")), "{}").unwrap();
        }
        record(state.path(), &event());
        let files = names(&d);
        assert_eq!(files.len(), MAX_PENDING_FILES, "no temp file left either");
        assert!(
            files
                .iter()
                .all(|f| std::fs::read_to_string(d.join(f)).unwrap() == "{}")
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
