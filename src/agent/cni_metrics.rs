//! The channel from CNI invocations to the agent's `/metrics`: the CNI
//! process cannot reach the agent (and must work without it), so each
//! invocation leaves one small JSON file in `<state_dir>/metrics/cni/` and
//! the agent drains the directory on every loop round. Format in
//! docs/OPERATIONS.md ("CNI metrics files").

use std::path::Path;
use std::time::Duration;

use super::telemetry::Telemetry;

pub use crate::cni::metrics::{CniEvent, MAX_PENDING_FILES, dir};

const COMMANDS: [&str; 6] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"];

/// Parses one file; `None` when it is not a valid event.
pub fn parse(text: &str) -> Option<CniEvent> {
    let e: CniEvent = serde_json::from_str(text).ok()?;
    COMMANDS.contains(&e.command.as_str()).then_some(e)
}

/// A writer's temp file older than this was left by a plugin killed
/// between its write and its link; the agent removes it.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// Reads, counts and removes every finished file (`*.json`), and removes
/// the writers' dot-prefixed temp files once they are [`STALE_TEMP`] old
/// (younger ones may be mid-write). Returns how many were read.
pub fn drain(state_dir: &Path, telemetry: &Telemetry) -> usize {
    let d = dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&d) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        if name.starts_with('.') {
            if name.ends_with(".tmp") && is_older_than(&e, STALE_TEMP) {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        // Unreadable or not UTF-8 counts as malformed and goes too, so no
        // file holds its slot for good.
        let text = std::fs::read(&path)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match text.as_deref().and_then(parse) {
            Some(ev) => telemetry.cni(&ev.command, ev.ok, Duration::from_micros(ev.duration_us)),
            None => {
                tracing::warn!(file = %path.display(), "malformed CNI metrics file; dropped");
                telemetry.cni_malformed();
            }
        }
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), "removing CNI metrics file: {err}");
        }
        n += 1;
    }
    n
}

/// Narrows `<state>/metrics` and `<state>/metrics/cni` to 0700 when they
/// grant anything to group or others: writers create them 0700, but a
/// directory made by an older release, or by hand, keeps its mode. A
/// symlink in either place is left alone, and so is everything under it
/// (its target is not ours to change). Run once at agent start.
pub fn tighten_dirs(state_dir: &Path) {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    let d = dir(state_dir);
    let Some(parent) = d.parent() else {
        return;
    };
    // Both opened without following a final symlink (ELOOP), `cni`
    // relative to the opened parent, and changed through their descriptors
    // (fchmod): a link swapped in between cannot redirect the change.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(parent_fd) = open(parent, flags, Mode::empty()) else {
        return;
    };
    let parent_dir = std::fs::File::from(parent_fd);
    narrow(&parent_dir, parent);
    if let Ok(fd) = openat(&parent_dir, "cni", flags, Mode::empty()) {
        narrow(&std::fs::File::from(fd), &d);
    }
}

/// Sets an opened directory to 0700 when group or others have any access.
fn narrow(dir: &std::fs::File, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = dir.metadata() else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match dir.set_permissions(std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => tracing::info!(dir = %path.display(), "CNI metrics dir was {mode:04o}; now 0700"),
        Err(e) => {
            tracing::warn!(dir = %path.display(), "narrowing CNI metrics dir from {mode:04o}: {e}")
        }
    }
}

fn is_older_than(e: &std::fs::DirEntry, age: Duration) -> bool {
    e.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d > age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_counted_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = super::dir(dir.path());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("1-1.json"),
            r#"{"command":"ADD","ok":true,"durationUs":3000}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("2-1.json"),
            r#"{"command":"DEL","ok":false,"durationUs":20,"errorCode":11}"#,
        )
        .unwrap();
        std::fs::write(d.join("3-1.json"), r#"{"command":"ADD","ok":true}"#).unwrap();
        std::fs::write(d.join(".4-1.json.tmp"), "half").unwrap();
        let t = Telemetry::default();
        assert_eq!(drain(dir.path(), &t), 3);
        assert_eq!(drain(dir.path(), &t), 0);
        let s = t.snapshot();
        assert_eq!(s.cni_malformed, 1);
        let add = &s.cni[&("ADD".to_string(), "ok".to_string())];
        assert_eq!((add.count, add.sum), (1, 0.003));
        assert_eq!(s.cni[&("DEL".to_string(), "error".to_string())].count, 1);
        assert!(d.join(".4-1.json.tmp").exists());
    }

    #[test]
    fn unreadable_files_and_stale_temp_files_do_not_stay() {
        let dir = tempfile::tempdir().unwrap();
        let d = super::dir(dir.path());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("7.json"), [0xff, 0xfe, b'{']).unwrap();
        std::fs::write(d.join(".old.tmp"), "killed mid-write").unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.join(".old.tmp"))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - 2 * STALE_TEMP)
            .unwrap();
        std::fs::write(d.join(".new.tmp"), "being written").unwrap();
        let t = Telemetry::default();
        assert_eq!(drain(dir.path(), &t), 1);
        assert_eq!(t.snapshot().cni_malformed, 1);
        assert!(!d.join("7.json").exists(), "its slot is free again");
        assert!(!d.join(".old.tmp").exists());
        assert!(d.join(".new.tmp").exists());
    }

    #[test]
    fn wide_dirs_are_narrowed_to_0700_and_others_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let state = tempfile::tempdir().unwrap();
        tighten_dirs(state.path()); // nothing there yet: nothing to do
        let d = super::dir(state.path());
        std::fs::create_dir_all(&d).unwrap();
        let parent = d.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        tighten_dirs(state.path());
        assert_eq!((mode(parent), mode(&d)), (0o700, 0o700));

        // A symlinked metrics/cni: its target keeps its mode.
        let other = tempfile::tempdir().unwrap();
        let target = other.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_dir(&d).unwrap();
        std::os::unix::fs::symlink(&target, &d).unwrap();
        tighten_dirs(state.path());
        assert_eq!(mode(&target), 0o755);

        // A symlinked metrics/: neither it nor the cni/ under its target
        // is touched.
        let elsewhere_cni = other.path().join("m/cni");
        std::fs::create_dir_all(&elsewhere_cni).unwrap();
        for p in [other.path().join("m"), elsewhere_cni.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::remove_file(&d).unwrap();
        std::fs::remove_dir(parent).unwrap();
        std::os::unix::fs::symlink(other.path().join("m"), parent).unwrap();
        tighten_dirs(state.path());
        assert_eq!(
            (mode(&other.path().join("m")), mode(&elsewhere_cni)),
            (0o755, 0o755)
        );
    }

    #[test]
    fn unknown_commands_and_fields_are_malformed() {
        assert_eq!(
            parse(r#"{"command":"NOPE","ok":true,"durationUs":1}"#),
            None
        );
        assert_eq!(
            parse(r#"{"command":"ADD","ok":true,"durationUs":1,"x":1}"#),
            None
        );
    }
}
