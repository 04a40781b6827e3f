//! Durable attachment records, one per VF under `<state>/cni/<pci>.rec`:
//! who holds the VF, its original state, and how far ADD got. The file
//! has two slots written in place with sequence numbers and checksums
//! (`super::slots`); ADD's first write is `fdatasync`ed before the first
//! change, so a crash at any point leaves enough to undo it. The file
//! itself is made once per VF (temp file + fsync + rename + fsync of the
//! directory) and stays: removing a record writes an empty slot.
//!
//! Records of earlier versions (`<pci>.json`, one JSON document, replaced
//! by rename) are still read, restored and removed: a node keeps its
//! attachments across an upgrade.
//!
//! [`list`] is the public read API for the agent and provisioning.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{CniError, CniResult};
use super::plan::Step;
use super::slots::{self, SlotFile};
use crate::netlink::vf::VfState;
use crate::pci::PciAddress;

/// Format version of the record file.
pub const RECORD_VERSION: u32 = 1;

/// The VF's state before fastpath touched it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Host netdev name (kernel VFs).
    pub ifname: Option<String>,
    /// Host netdev MAC.
    pub mac: Option<String>,
    /// Host netdev MTU.
    pub mtu: Option<u32>,
    /// The PF's view of the VF, when PF-side settings were requested.
    pub pf_side: Option<VfState>,
}

/// Where ADD got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// ADD is running (or died): any prefix of the plan may have run.
    Adding,
    /// ADD finished.
    Attached,
}

/// One VF attachment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// File format version.
    pub version: u32,
    /// The VF.
    pub pci: PciAddress,
    /// Its PF.
    pub pf_pci: PciAddress,
    /// PF netdev name, if it has one.
    pub pf_name: Option<String>,
    /// PF driver.
    pub pf_driver: String,
    /// VF index on the PF.
    pub vf_index: u32,
    /// No netdev (vfio-pci / uio): nothing moves.
    pub dpdk: bool,
    /// Network name from the config.
    pub network: String,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_NETNS.
    pub netns: Option<PathBuf>,
    /// K8S_POD_NAMESPACE.
    pub pod_namespace: Option<String>,
    /// K8S_POD_NAME.
    pub pod_name: Option<String>,
    /// K8S_POD_UID.
    pub pod_uid: Option<String>,
    /// Seconds since the epoch when ADD started.
    pub since: u64,
    /// The VF's original state.
    pub original: Original,
    /// The planned steps.
    pub plan: Vec<Step>,
    /// Steps known complete: 0 while [`Phase::Adding`], `plan.len()` once
    /// attached. Undo always walks the whole plan and tolerates steps that
    /// never ran, so the record is written twice per ADD rather than once
    /// per step (each write before a change would cost an fsync).
    pub reached: usize,
    /// Phase.
    pub phase: Phase,
    /// The result returned by ADD (for CHECK).
    pub result: Option<serde_json::Value>,
    /// What releasing IPAM needs when no runtime calls DEL (the agent's
    /// start-up reconcile); absent without IPAM and in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamContext>,
}

/// The network config and runtime environment an IPAM DEL needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamContext {
    /// The network config as ADD received it.
    pub netconf: serde_json::Value,
    /// CNI_PATH, split.
    pub cni_path: Vec<PathBuf>,
    /// CNI_ARGS in their wire form.
    pub cni_args: String,
}

/// Who holds a VF: the public summary the agent and provisioning read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The VF's PCI address.
    pub pci: PciAddress,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// Netns path.
    pub netns: Option<PathBuf>,
    /// Pod namespace.
    pub pod_namespace: Option<String>,
    /// Pod name.
    pub pod_name: Option<String>,
    /// Pod UID.
    pub pod_uid: Option<String>,
    /// Seconds since the epoch when the attachment started.
    pub since: u64,
    /// DPDK VF (no netdev moved).
    pub dpdk: bool,
    /// True once ADD completed.
    pub attached: bool,
}

impl From<&Record> for Attachment {
    fn from(r: &Record) -> Self {
        Self {
            pci: r.pci,
            container_id: r.container_id.clone(),
            ifname: r.ifname.clone(),
            netns: r.netns.clone(),
            pod_namespace: r.pod_namespace.clone(),
            pod_name: r.pod_name.clone(),
            pod_uid: r.pod_uid.clone(),
            since: r.since,
            dpdk: r.dpdk,
            attached: r.phase == Phase::Attached,
        }
    }
}

/// `<state>/cni`.
pub fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cni")
}

/// `<state>/cni/<pci>.rec`: the record's slot file.
fn slot_path(state_dir: &Path, pci: PciAddress) -> PathBuf {
    records_dir(state_dir).join(format!("{pci}.rec"))
}

/// `<state>/cni/<pci>.json`: a record as earlier versions wrote it.
fn legacy_path(state_dir: &Path, pci: PciAddress) -> PathBuf {
    records_dir(state_dir).join(format!("{pci}.json"))
}

/// Creates a directory (and parents) with mode 0700.
pub fn ensure_dir(dir: &Path) -> CniResult<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CniError::io(format!("creating {}", dir.display()), e))
}

/// How hard a write insists on reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage when the call returns: a record slot's
    /// `fdatasync`; for a whole file, fsync of the temp file before the
    /// rename and of the directory after it.
    Full,
    /// No sync: a process crash leaves the new content or the old one.
    /// After a power loss a record slot reads as the new record or the
    /// previous one (a torn slot fails its checksum); a whole file
    /// replaced by rename has no such promise. For writes that only refine
    /// a record already on disk.
    Atomic,
}

/// Writes `bytes` to `path` atomically: temp file (0600), optional fsync,
/// rename, optional fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> CniResult<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id()
    ));
    let io = |what: &str, e: std::io::Error| CniError::io(format!("{what} {}", tmp.display()), e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("creating", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    if durability != Durability::Atomic {
        f.sync_all().map_err(|e| io("syncing", e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        CniError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })?;
    if durability == Durability::Full {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` durably (temp file, fsync, rename, fsync dir).
pub fn write_durably(path: &Path, bytes: &[u8]) -> CniResult<()> {
    write_atomic(path, bytes, Durability::Full)
}

/// fsyncs a directory, making renames and removals in it durable.
fn sync_dir(dir: &Path) -> CniResult<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CniError::io(format!("syncing {}", dir.display()), e))
}

/// Saves a record (creating `<state>/cni` 0700 if needed). With
/// [`Durability::Full`] it is on stable storage when this returns.
///
/// Into the VF's slot file when it exists and the record fits: one
/// `pwrite` (and `fdatasync`), nothing else changes on disk. Otherwise
/// (the VF's first record on this node, or one larger than its slots) a
/// new slot file replaces it as a whole, temp file + rename.
pub fn save(state_dir: &Path, r: &Record, durability: Durability) -> CniResult<()> {
    let path = slot_path(state_dir, r.pci);
    let bytes = serde_json::to_vec(r).map_err(|e| CniError::io("encoding record", e))?;
    let io = |what: &str, e: std::io::Error| CniError::io(format!("{what} {}", path.display()), e);
    match SlotFile::open(&path) {
        Ok(Some(mut f)) if f.fits(bytes.len()) => {
            return f
                .write(&bytes, durability == Durability::Full)
                .map_err(|e| io("writing", e));
        }
        Ok(_) => {}
        // Missing records dir: made below.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("opening", e)),
    }
    let dir = records_dir(state_dir);
    // Only a full save asks whether the dir is new.
    let new_dir = durability == Durability::Full && !dir.is_dir();
    ensure_dir(&dir)?;
    if new_dir {
        // Made just now (the node's first ADD): its own entry in the state
        // dir must reach the disk too, or the record could vanish with it.
        sync_dir(state_dir)?;
    }
    write_atomic(&path, &slots::new_file_image(1, &bytes), durability)
}

fn decode(bytes: &[u8], path: &Path) -> CniResult<Record> {
    serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            super::error::code::DECODE,
            format!("corrupt record {}", path.display()),
            e.to_string(),
        )
    })
}

/// The newest live payload of a VF's slot file, if any. An emptied file
/// (most of them: every VF once attached keeps one) costs two header
/// reads, so listing all records stays cheap.
fn live_slot(path: &Path) -> CniResult<Option<Vec<u8>>> {
    let newest = match fs::File::open(path) {
        Ok(f) => slots::newest_of(&f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => Err(e),
    };
    newest
        .map(|n| n.map(|n| n.payload).filter(|p| !p.is_empty()))
        .map_err(|e| CniError::io(format!("reading {}", path.display()), e))
}

/// The record of a VF, if any. A corrupt record is an error naming it.
/// A live slot record wins; without one, a record an earlier version
/// left is read.
pub fn load(state_dir: &Path, pci: PciAddress) -> CniResult<Option<Record>> {
    let path = slot_path(state_dir, pci);
    if let Some(p) = live_slot(&path)? {
        return decode(&p, &path).map(Some);
    }
    let path = legacy_path(state_dir, pci);
    match fs::read(&path) {
        Ok(b) => decode(&b, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CniError::io(format!("reading {}", path.display()), e)),
    }
}

/// Removes a VF's record (after restoration completed): an empty slot
/// in its slot file, and the earlier versions' file if there is one.
pub fn remove(state_dir: &Path, pci: PciAddress) -> CniResult<()> {
    let path = slot_path(state_dir, pci);
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CniError::io(format!("{what} {}", p.display()), e)
    };
    if let Some(mut f) = SlotFile::open(&path).map_err(|e| io("opening", &path, e))?
        && f.newest().is_some_and(|n| !n.payload.is_empty())
    {
        // Not synced: a record that reappears after a power loss names an
        // attachment already restored, and restoring it again is harmless
        // (every undo step tolerates a VF already home). The next durable
        // write to the file flushes it anyway.
        f.write(&[], false).map_err(|e| io("writing", &path, e))?;
    }
    let legacy = legacy_path(state_dir, pci);
    match fs::remove_file(&legacy) {
        // Not synced either, for the same reason.
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", &legacy, e)),
    }
}

/// Moves an unreadable record aside to `<pci>.rec.corrupt` (or
/// `<pci>.json.corrupt` for an earlier version's), which [`load_all`]
/// ignores, keeping it for inspection.
pub fn quarantine(state_dir: &Path, pci: PciAddress) -> CniResult<()> {
    let slot = slot_path(state_dir, pci);
    let path = match live_slot(&slot)? {
        Some(p) if decode(&p, &slot).is_err() => slot,
        _ => legacy_path(state_dir, pci),
    };
    let mut aside = path.clone().into_os_string();
    aside.push(".corrupt");
    fs::rename(&path, &aside).map_err(|e| {
        CniError::io(
            format!(
                "moving {} to {}",
                path.display(),
                Path::new(&aside).display()
            ),
            e,
        )
    })
}

/// Every record, sorted by PCI address; unreadable ones are skipped with
/// a warning so one bad file does not hide the others.
pub fn load_all(state_dir: &Path) -> CniResult<Vec<Record>> {
    let dir = records_dir(state_dir);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io(format!("listing {}", dir.display()), e)),
    };
    // A VF may have both files (an earlier version's record restored and
    // its slot file made since); load reads each VF once.
    let pcis: std::collections::BTreeSet<PciAddress> = rd
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.strip_suffix(".rec")
                .or_else(|| name.strip_suffix(".json"))?
                .parse::<PciAddress>()
                .ok()
        })
        .collect();
    let mut out = Vec::new();
    for pci in pcis {
        match load(state_dir, pci) {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => tracing::warn!("skipping record: {e}"),
        }
    }
    out.sort_by_key(|r| r.pci);
    Ok(out)
}

/// Who holds which VF: every attachment recorded under `state_dir`.
pub fn list(state_dir: &Path) -> CniResult<Vec<Attachment>> {
    Ok(load_all(state_dir)?.iter().map(Attachment::from).collect())
}

/// The record of the attachment `(container_id, ifname)`, if any.
pub fn find_attachment(
    state_dir: &Path,
    container_id: &str,
    ifname: &str,
) -> CniResult<Option<Record>> {
    Ok(load_all(state_dir)?
        .into_iter()
        .find(|r| r.container_id == container_id && r.ifname == ifname))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(pci: &str, container: &str) -> Record {
        Record {
            version: RECORD_VERSION,
            pci: pci.parse().unwrap(),
            pf_pci: "0000:3b:00.0".parse().unwrap(),
            pf_name: Some("ens1f0".into()),
            pf_driver: "ice".into(),
            vf_index: 0,
            dpdk: false,
            network: "n".into(),
            container_id: container.into(),
            ifname: "net1".into(),
            netns: Some("/run/netns/p".into()),
            pod_namespace: Some("ns".into()),
            pod_name: Some("p".into()),
            pod_uid: Some("u".into()),
            since: 1,
            original: Original {
                ifname: Some("ens1f0v0".into()),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                pf_side: None,
            },
            plan: vec![Step::MoveToPod, Step::Up],
            reached: 0,
            phase: Phase::Adding,
            result: None,
            ipam: None,
        }
    }

    #[test]
    fn records_round_trip_with_tight_permissions_and_list_who_holds_what() {
        let state = tempfile::tempdir().unwrap();
        let a = record("0000:3b:01.1", "ca");
        let b = record("0000:3b:01.0", "cb");
        for (r, d) in [(&a, Durability::Full), (&b, Durability::Atomic)] {
            save(state.path(), r, d).unwrap();
        }
        assert_eq!(load(state.path(), a.pci).unwrap(), Some(a.clone()));
        let dir = records_dir(state.path());
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.join("0000:3b:01.1.rec");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let held = list(state.path()).unwrap();
        assert_eq!(
            held.iter()
                .map(|h| h.container_id.as_str())
                .collect::<Vec<_>>(),
            ["cb", "ca"],
            "sorted by PCI address"
        );
        assert_eq!(held[0].pod_uid.as_deref(), Some("u"));
        assert!(!held[0].attached);
        assert_eq!(
            find_attachment(state.path(), "ca", "net1")
                .unwrap()
                .map(|r| r.pci),
            Some(a.pci)
        );
        // A second save goes into the file in place, the first one too.
        let mut a2 = a.clone();
        a2.phase = Phase::Attached;
        save(state.path(), &a2, Durability::Atomic).unwrap();
        assert_eq!(load(state.path(), a.pci).unwrap(), Some(a2));
        remove(state.path(), a.pci).unwrap();
        remove(state.path(), a.pci).unwrap();
        assert_eq!(load(state.path(), a.pci).unwrap(), None);
        assert_eq!(list(state.path()).unwrap().len(), 1);
        // No temp files are left behind; the emptied slot file stays for
        // the VF's next record.
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["0000:3b:01.0.rec", "0000:3b:01.1.rec"]);
        save(state.path(), &a, Durability::Full).unwrap();
        assert_eq!(load(state.path(), a.pci).unwrap(), Some(a.clone()));
    }

    /// A record as the previous version wrote it: `<pci>.json`, pretty
    /// JSON, replaced by rename.
    fn write_legacy(state: &Path, r: &Record) -> PathBuf {
        let path = legacy_path(state, r.pci);
        ensure_dir(path.parent().unwrap()).unwrap();
        write_durably(&path, &serde_json::to_vec_pretty(r).unwrap()).unwrap();
        path
    }

    #[test]
    fn an_earlier_versions_record_is_read_listed_and_removed() {
        let state = tempfile::tempdir().unwrap();
        let old = record("0000:3b:01.2", "old");
        let path = write_legacy(state.path(), &old);
        assert_eq!(load(state.path(), old.pci).unwrap(), Some(old.clone()));
        assert_eq!(
            find_attachment(state.path(), "old", "net1").unwrap(),
            Some(old.clone())
        );
        assert_eq!(list(state.path()).unwrap().len(), 1);
        remove(state.path(), old.pci).unwrap();
        assert!(!path.exists());
        assert_eq!(load(state.path(), old.pci).unwrap(), None);
        // Restored, then attached again: the new record is a slot file;
        // listed once even while an earlier version's file is also there.
        let new = record("0000:3b:01.2", "new");
        save(state.path(), &new, Durability::Full).unwrap();
        write_legacy(state.path(), &old);
        assert_eq!(load(state.path(), new.pci).unwrap(), Some(new.clone()));
        assert_eq!(list(state.path()).unwrap().len(), 1);
        remove(state.path(), new.pci).unwrap();
        assert_eq!(load(state.path(), new.pci).unwrap(), None);
    }

    #[test]
    fn a_record_too_big_for_its_slots_gets_a_bigger_file() {
        let state = tempfile::tempdir().unwrap();
        let mut r = record("0000:3b:01.3", "c");
        save(state.path(), &r, Durability::Full).unwrap();
        r.result = Some(serde_json::Value::String("x".repeat(slots::MIN_SLOT)));
        save(state.path(), &r, Durability::Full).unwrap();
        assert_eq!(load(state.path(), r.pci).unwrap(), Some(r.clone()));
        let len = fs::metadata(slot_path(state.path(), r.pci)).unwrap().len();
        assert_eq!(len, 4 * slots::MIN_SLOT as u64);
    }

    #[test]
    fn a_corrupt_record_is_named_and_skipped_by_list() {
        let state = tempfile::tempdir().unwrap();
        save(
            state.path(),
            &record("0000:3b:01.0", "ok"),
            Durability::Atomic,
        )
        .unwrap();
        let bad = records_dir(state.path()).join("0000:3b:01.1.json");
        fs::write(&bad, b"{truncated").unwrap();
        let e = load(state.path(), "0000:3b:01.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.contains("0000:3b:01.1.json"), "{e}");
        assert_eq!(list(state.path()).unwrap().len(), 1);
        assert!(list(Path::new("/nonexistent/state")).unwrap().is_empty());
        quarantine(state.path(), "0000:3b:01.1".parse().unwrap()).unwrap();
        assert!(bad.with_extension("json.corrupt").exists());
        // A slot whose checksum holds but whose JSON does not parse (a
        // bug, not a torn write) is named and quarantined the same way.
        let pci: PciAddress = "0000:3b:01.2".parse().unwrap();
        let path = slot_path(state.path(), pci);
        fs::write(&path, slots::new_file_image(1, b"{truncated")).unwrap();
        let e = load(state.path(), pci).unwrap_err();
        assert!(e.msg.contains("0000:3b:01.2.rec"), "{e}");
        quarantine(state.path(), pci).unwrap();
        assert!(path.with_extension("rec.corrupt").exists());
        assert_eq!(load(state.path(), pci).unwrap(), None);
    }
}
