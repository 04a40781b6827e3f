//! The invariants checked when a phase has quiesced. Each violation is a
//! line in the returned list (a "leak" in the summary), so one check
//! reports everything wrong at once.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::cni_host::{host_link, ip_out, ns_link};
use crate::world::{Slot, World};

/// Checks every VF and everything the CNI leaves on the node. With
/// `pending_dels`, VFs whose netns was deleted may still await their DEL:
/// their record may be there or already restored by the agent's start-up
/// reconcile, and their stand-in is gone; without it none may remain.
pub fn check(w: &World, pending_dels: bool) -> Vec<String> {
    let slots = w.slots.lock().unwrap().clone();
    let state = w.host.state.path();
    let mut bad = Vec::new();
    let mut live_cids = BTreeSet::new();
    let mut live_netns = BTreeSet::new();
    let mut record_files = BTreeSet::new();
    for (i, slot) in slots.iter().enumerate() {
        let vf = &w.host.vfs[i];
        let rec = match fastpath::cni::records::load(state, w.pci(i)) {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("VF {i}: record unreadable: {e}"));
                continue;
            }
        };
        match slot {
            Slot::Free => {
                if let Err(e) = w.expect_home(i, "free") {
                    bad.push(e);
                }
            }
            Slot::Attached(a) => {
                live_cids.insert(a.cid.clone());
                live_netns.insert(a.netns.clone());
                record_files.insert(format!("{}.rec", vf.pci));
                let want_ns = Path::new("/run/netns").join(&a.netns);
                match rec {
                    Some(r)
                        if r.container_id == a.cid
                            && r.ifname == "net1"
                            && r.netns.as_deref() == Some(want_ns.as_path()) => {}
                    other => bad.push(format!(
                        "VF {i}: attached to {} in {} but record is {:?}",
                        a.cid,
                        a.netns,
                        other.map(|r| (r.container_id, r.ifname, r.netns))
                    )),
                }
                if !want_ns.exists() {
                    bad.push(format!("VF {i}: netns {} of {} is gone", a.netns, a.cid));
                }
                match ns_link(&a.netns, "net1") {
                    Some(l) if l.mac == vf.mac && l.up => {}
                    other => bad.push(format!("VF {i}: net1 in {} is {other:?}", a.netns)),
                }
                if host_link(&vf.ifname).is_some() {
                    bad.push(format!("VF {i}: attached but {} is in the host", vf.ifname));
                }
            }
            Slot::Dead(a) if pending_dels => {
                live_cids.insert(a.cid.clone());
                if let Some(r) = rec {
                    record_files.insert(format!("{}.rec", vf.pci));
                    if r.container_id != a.cid {
                        bad.push(format!(
                            "VF {i}: DEL pending for {} but record is {}",
                            a.cid, r.container_id
                        ));
                    }
                }
            }
            Slot::Dead(a) => bad.push(format!("VF {i}: DEL for {} never sent", a.cid)),
            Slot::Busy(_) => bad.push(format!("VF {i}: still claimed after quiesce")),
        }
    }
    // Every VF's slot file stays once made, emptied when its record goes.
    let slot_files: BTreeSet<String> = (0..slots.len())
        .map(|i| format!("{}.rec", w.host.vfs[i].pci))
        .collect();
    bad.extend(stray_files(&state.join("cni"), &record_files, &slot_files));
    bad.extend(held_locks(&state.join("cni/locks")));
    bad.extend(stray_leases(w, &live_cids));
    bad.extend(stray_links(w, &slots));
    bad.extend(stray_netns(w, &live_netns));
    bad
}

/// `<state>/cni` holds the VFs' slot files (live records among them) and
/// the lock dir only (no temp files, no quarantined records).
fn stray_files(
    dir: &Path,
    records: &BTreeSet<String>,
    slot_files: &BTreeSet<String>,
) -> Vec<String> {
    let names = names(dir);
    let mut bad: Vec<String> = names
        .iter()
        .filter(|n| n.as_str() != "locks" && !slot_files.contains(*n))
        .map(|n| format!("stray file in the records dir: {n}"))
        .collect();
    for r in records {
        if !names.contains(r) {
            bad.push(format!("record {r} missing"));
        }
    }
    bad
}

/// No lock is held once every operation has returned (the agent's
/// start-up reconcile takes them only while it runs).
fn held_locks(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter_map(|n| {
            let f = File::open(dir.join(&n)).ok()?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(_) => None,
                Err(_) => Some(format!("lock {n} still held")),
            }
        })
        .collect()
}

/// host-local holds a lease for each live attachment and nothing else.
fn stray_leases(w: &World, live: &BTreeSet<String>) -> Vec<String> {
    let dir = w.host.ipam_dir.path().join(format!("net-{}", w.host.tag));
    let mut bad = Vec::new();
    let mut owners = BTreeSet::new();
    for ip in w.host.leases() {
        let text = std::fs::read_to_string(dir.join(&ip)).unwrap_or_default();
        let owner = text.lines().next().unwrap_or("").trim().to_string();
        if !live.contains(&owner) {
            bad.push(format!(
                "IPAM lease {ip} held by {owner:?}, not a live attachment"
            ));
        }
        if !owners.insert(owner.clone()) {
            bad.push(format!("{owner} holds two leases"));
        }
    }
    for c in live {
        if !owners.contains(c) {
            bad.push(format!("{c} has no IPAM lease"));
        }
    }
    bad
}

/// In the host: exactly the free VFs' stand-ins among this soak's names,
/// and no `net1` (a pod-side name left behind); in the far netns: all 32
/// peers.
fn stray_links(w: &World, slots: &[Slot]) -> Vec<String> {
    let tag = &w.host.tag;
    let host: BTreeSet<String> = link_names(&ip_out(&["-j", "link", "show"]))
        .into_iter()
        .filter(|n| ours(tag, n) || n == "net1")
        .collect();
    let want: BTreeSet<String> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Slot::Free))
        .map(|(i, _)| w.host.vfs[i].ifname.clone())
        .collect();
    let mut bad: Vec<String> = host
        .difference(&want)
        .map(|n| format!("stray interface in the host: {n}"))
        .collect();
    let far = link_names(&ip_out(&["-n", &w.host.far, "-j", "link", "show"]));
    let peers = far.iter().filter(|n| ours(tag, n)).count();
    let dead_pending = slots.iter().filter(|s| matches!(s, Slot::Dead(_))).count();
    if peers + dead_pending < w.n() || peers > w.n() {
        bad.push(format!(
            "{peers} veth peers in {}, want {}",
            w.host.far,
            w.n()
        ));
    }
    bad
}

/// The soak's pod namespaces that exist are exactly the live ones.
fn stray_netns(w: &World, live: &BTreeSet<String>) -> Vec<String> {
    let prefix = w.netns_prefix();
    let have: BTreeSet<String> = names(Path::new("/run/netns"))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut bad: Vec<String> = have
        .difference(live)
        .map(|n| format!("leaked netns {n}"))
        .collect();
    bad.extend(
        live.difference(&have)
            .map(|n| format!("netns {n} vanished")),
    );
    bad
}

/// `<tag>v<i>` (a VF stand-in) or `<tag>p<i>` (its peer).
fn ours(tag: &str, name: &str) -> bool {
    name.strip_prefix(tag)
        .and_then(|r| r.strip_prefix('v').or_else(|| r.strip_prefix('p')))
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

fn link_names(json: &str) -> Vec<String> {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
