//! What the soak drives and what it believes: each VF's slot (free,
//! attached to a pod, its pod's netns deleted and its DEL pending, or
//! claimed by a worker), and the operations on it, each run as a container
//! runtime runs them: the real `fastpath` binary with CNI_* variables.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use fastpath::cni::Env;
use serde_json::{Value, json};

use crate::agent::{self, AgentPaths, Layout};
use crate::cni_host::{Host, host_link, ip, ns_link};
use crate::runtime::{self, recreate_veth};

/// One pod attachment the soak made.
#[derive(Debug, Clone)]
pub struct Att {
    pub cid: String,
    pub netns: String,
    pub version: &'static str,
    pub result: Value,
}

/// What the soak knows about one VF.
#[derive(Debug, Clone)]
pub enum Slot {
    /// In the host, as created.
    Free,
    /// In its pod's netns as `net1`.
    Attached(Att),
    /// Its pod's netns was deleted; kubelet's DEL has not come yet.
    Dead(Att),
    /// A worker is operating on it; `Some(cid)` while that container is
    /// one the runtime still knows (ADD, CHECK in flight), `None` while
    /// it is being deleted.
    Busy(Option<String>),
}

/// The operations, by name in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Add,
    /// ADD of a VF another pod holds: refused, nothing changes.
    AddTaken,
    Del,
    /// DEL for a container that never got this VF (a sandbox whose ADD
    /// never ran): succeeds, nothing changes.
    DelUnknown,
    /// ADD of a VF whose pod's netns is gone before that pod's DEL came
    /// (the VF back in the host): fastpath restores the stale attachment
    /// and attaches; the old pod's late DEL must leave the new one alone.
    AddOverDead,
    DelDeadNetns,
    Check,
    Gc,
    KillNetns,
    Reload,
}

pub struct World<'h> {
    pub host: &'h Host,
    pub paths: AgentPaths,
    pub ownership_config: std::path::PathBuf,
    pub slots: Mutex<Vec<Slot>>,
    /// ADDs (with their Allocate) read it, a reload holds it to switch.
    pub layout: RwLock<Layout>,
    pub counts: Mutex<BTreeMap<Kind, usize>>,
    /// ADDs hold it shared, GC exclusively: a runtime never GCs with a
    /// list that misses an attachment it is adding at that moment.
    pub gc_gate: RwLock<()>,
    pub rt: &'h tokio::runtime::Runtime,
    pub kubelet: Mutex<fake_kubelet::FakeKubelet>,
}

/// The Debian host-local version speaks up to 1.0.0; fastpath adapts.
const VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

impl World<'_> {
    pub fn n(&self) -> usize {
        self.host.vfs.len()
    }

    pub fn netns_prefix(&self) -> String {
        format!("fpt-{}-s", self.host.tag)
    }

    fn count(&self, k: Kind) {
        *self.counts.lock().unwrap().entry(k).or_default() += 1;
    }

    /// Runs the `fastpath` binary as a CNI runtime does.
    pub fn cni(&self, cmd: &str, env: &Env, conf: &Value) -> Result<Value, String> {
        runtime::exec_cni(&self.ownership_config, cmd, env, conf)
    }

    /// Claims a slot matching `want` (picked with `pick`), marking it busy.
    pub(crate) fn claim(
        &self,
        want: impl Fn(&Slot) -> bool,
        busy: impl FnOnce(&Slot) -> Option<String>,
        pick: u64,
    ) -> Option<(usize, Slot)> {
        let mut slots = self.slots.lock().unwrap();
        let eligible: Vec<usize> = (0..slots.len()).filter(|&i| want(&slots[i])).collect();
        if eligible.is_empty() {
            return None;
        }
        let i = eligible[(pick % eligible.len() as u64) as usize];
        let was = slots[i].clone();
        slots[i] = Slot::Busy(busy(&was));
        Some((i, was))
    }

    /// Claims an attached VF (its container stays known to the runtime
    /// while a worker holds it).
    fn claim_attached(&self, pick: u64) -> Option<(usize, Att)> {
        let (i, was) = self.claim(
            |s| matches!(s, Slot::Attached(_)),
            |s| match s {
                Slot::Attached(a) => Some(a.cid.clone()),
                _ => None,
            },
            pick,
        )?;
        match was {
            Slot::Attached(a) => Some((i, a)),
            _ => unreachable!("claimed only attached slots"),
        }
    }

    pub(crate) fn set(&self, i: usize, s: Slot) {
        self.slots.lock().unwrap()[i] = s;
    }

    /// Runs operation `op` of kind `kind`, falling back to another kind
    /// when no VF is in the state `kind` needs. `r` is the op's random word.
    pub fn run_op(&self, op: usize, kind: Kind, r: u64) -> Result<(), String> {
        let order: &[Kind] = match kind {
            Kind::Add => &[Kind::Add, Kind::Del],
            Kind::Gc | Kind::Reload => &[kind],
            _ => &[kind, Kind::Add, Kind::Del],
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for &k in order {
                if let Some(done) = self.try_op(op, k, r)? {
                    self.count(done);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("op {op}: no VF free or attached for 30 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn try_op(&self, op: usize, kind: Kind, r: u64) -> Result<Option<Kind>, String> {
        match kind {
            Kind::Add => {
                let _gate = self.gc_gate.read().unwrap();
                let cid = format!("soak{op}");
                let c = cid.clone();
                let Some((i, _)) = self.claim(|s| matches!(s, Slot::Free), |_| Some(c), r) else {
                    return Ok(None);
                };
                let a = self.add(op, i, cid, r)?;
                self.set(i, Slot::Attached(a));
                Ok(Some(Kind::Add))
            }
            Kind::Del | Kind::DelDeadNetns => {
                let Some((i, was)) = self.claim(
                    |s| matches!(s, Slot::Attached(_) | Slot::Dead(_)),
                    |_| None,
                    r,
                ) else {
                    return Ok(None);
                };
                match was {
                    Slot::Attached(a) => self.del(i, a, r).map(|_| Some(Kind::Del)),
                    Slot::Dead(a) => self.del_dead(i, a, r).map(|_| Some(Kind::DelDeadNetns)),
                    _ => unreachable!(),
                }
            }
            Kind::Check => {
                let Some((i, a)) = self.claim_attached(r) else {
                    return Ok(None);
                };
                self.check(i, a).map(|_| Some(Kind::Check))
            }
            Kind::AddTaken => {
                let Some((i, a)) = self.claim_attached(r) else {
                    return Ok(None);
                };
                self.add_taken(op, i, a).map(|_| Some(Kind::AddTaken))
            }
            Kind::AddOverDead => {
                let _gate = self.gc_gate.read().unwrap();
                let cid = format!("soak{op}");
                let c = cid.clone();
                let Some((i, was)) = self.claim(|s| matches!(s, Slot::Dead(_)), |_| Some(c), r)
                else {
                    return Ok(None);
                };
                let Slot::Dead(old) = was else { unreachable!() };
                self.add_over_dead(op, i, cid, old, r)
                    .map(|_| Some(Kind::AddOverDead))
            }
            Kind::DelUnknown => {
                let Some((i, _)) = self.claim(|s| matches!(s, Slot::Free), |_| None, r) else {
                    return Ok(None);
                };
                self.del_unknown(op, i, r).map(|_| Some(Kind::DelUnknown))
            }
            Kind::KillNetns => {
                let Some((i, a)) = self.claim_attached(r) else {
                    return Ok(None);
                };
                // The pod's sandbox goes without a DEL: the veth stand-in
                // dies with it (a real VF would return to the host).
                ip(&["netns", "del", &a.netns]);
                self.set(i, Slot::Dead(a));
                Ok(Some(Kind::KillNetns))
            }
            Kind::Gc => self.gc().map(|_| Some(Kind::Gc)),
            Kind::Reload => self.reload(r).map(|_| Some(Kind::Reload)),
        }
    }

    pub(crate) fn conf(&self, version: &str, i: usize) -> Value {
        self.host.conf(version, i, json!({}))
    }

    pub(crate) fn add(&self, op: usize, i: usize, cid: String, r: u64) -> Result<Att, String> {
        let vf = &self.host.vfs[i];
        let netns = format!("{}{op}", self.netns_prefix());
        let version = VERSIONS[(r >> 8) as usize % VERSIONS.len()];
        {
            // kubelet allocates the device before the runtime's ADD.
            let layout = self.layout.read().unwrap();
            let pool = layout.pool_of(i, self.n());
            self.rt
                .block_on(agent::allocate(&self.paths.device_plugins, &pool, &vf.pci))?;
        }
        ip(&["netns", "add", &netns]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let env = self.host.env(&cid, "net1", Some(&netns));
        let result = match self.cni("ADD", &env, &self.conf(version, i)) {
            Ok(v) => v,
            Err(e) => {
                // Leave the VF as the soak found it; the phase fails.
                self.set(i, Slot::Free);
                return Err(e);
            }
        };
        let l = ns_link(&netns, "net1").ok_or_else(|| format!("ADD {cid}: no net1 in {netns}"))?;
        if l.mac != vf.mac || !l.up {
            return Err(format!(
                "ADD {cid}: net1 in {netns} is {l:?}, want MAC {} up",
                vf.mac
            ));
        }
        if host_link(&vf.ifname).is_some() {
            return Err(format!("ADD {cid}: {} still in the host", vf.ifname));
        }
        Ok(Att {
            cid,
            netns,
            version,
            result,
        })
    }

    fn check(&self, i: usize, a: Att) -> Result<(), String> {
        let env = self.host.env(&a.cid, "net1", Some(&a.netns));
        let mut conf = self.conf(a.version, i);
        conf["prevResult"] = a.result.clone();
        self.cni("CHECK", &env, &conf)?;
        self.set(i, Slot::Attached(a));
        Ok(())
    }

    /// DEL as kubelet sends it; one in four without deviceID (a runtime
    /// that lost Multus' cache), so fastpath finds the record by container.
    pub(crate) fn del_env_conf(
        &self,
        i: usize,
        a: &Att,
        netns: Option<&str>,
        r: u64,
    ) -> (Env, Value) {
        let env = self.host.env(&a.cid, "net1", netns);
        let mut conf = self.conf(a.version, i);
        if (r >> 16).is_multiple_of(4) {
            conf.as_object_mut().unwrap().remove("deviceID");
        }
        (env, conf)
    }

    /// One DEL, or (one in eight) two at once, as when a runtime retries a
    /// DEL that timed out: both must succeed.
    pub(crate) fn send_del(&self, env: &Env, conf: &Value, r: u64) -> Result<(), String> {
        if !(r >> 40).is_multiple_of(8) {
            return self.cni("DEL", env, conf).map(|_| ());
        }
        std::thread::scope(|s| {
            let twin = s.spawn(|| self.cni("DEL", env, conf));
            let first = self.cni("DEL", env, conf);
            let second = twin.join().expect("DEL thread");
            first.and(second).map(|_| ())
        })
    }

    fn del(&self, i: usize, a: Att, r: u64) -> Result<(), String> {
        let (env, conf) = self.del_env_conf(i, &a, Some(&a.netns), r);
        self.send_del(&env, &conf, r)?;
        self.expect_home(i, &a.cid)?;
        if ns_link(&a.netns, "net1").is_some() {
            return Err(format!("DEL {}: net1 still in {}", a.cid, a.netns));
        }
        // The runtime removes the sandbox after DEL.
        ip(&["netns", "del", &a.netns]);
        self.set(i, Slot::Free);
        Ok(())
    }

    /// kubelet's DEL after the netns is gone: with the old path or with
    /// none (both happen). Then the stand-in comes back (see module docs).
    fn del_dead(&self, i: usize, a: Att, r: u64) -> Result<(), String> {
        let netns = if (r >> 24).is_multiple_of(2) {
            Some(a.netns.as_str())
        } else {
            None
        };
        let (env, conf) = self.del_env_conf(i, &a, netns, r);
        self.send_del(&env, &conf, r)?;
        if fastpath::cni::records::load(self.host.state.path(), self.pci(i))
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err(format!("DEL {} (netns gone): record left", a.cid));
        }
        recreate_veth(self.host, i)?;
        self.expect_home(i, &a.cid)?;
        self.set(i, Slot::Free);
        Ok(())
    }

    /// Sends the DEL still owed to every VF whose netns was deleted (after
    /// an agent restart: its reconcile may have restored them already).
    pub fn finish_pending_dels(&self, r: u64) -> Result<(), String> {
        let dead: Vec<usize> = (0..self.n())
            .filter(|&i| matches!(self.slots.lock().unwrap()[i], Slot::Dead(_)))
            .collect();
        for (k, i) in dead.into_iter().enumerate() {
            let was = std::mem::replace(&mut self.slots.lock().unwrap()[i], Slot::Busy(None));
            let Slot::Dead(a) = was else { unreachable!() };
            self.del_dead(i, a, r.rotate_left(k as u32))?;
            self.count(Kind::DelDeadNetns);
        }
        Ok(())
    }

    /// DELs every attachment left (the pods go away at the end).
    pub fn drain(&self, r: u64) -> Result<(), String> {
        for i in 0..self.n() {
            let was = std::mem::replace(&mut self.slots.lock().unwrap()[i], Slot::Busy(None));
            match was {
                Slot::Attached(a) => {
                    self.del(i, a, r.rotate_left(i as u32))?;
                    self.count(Kind::Del);
                }
                other => self.set(i, other),
            }
        }
        Ok(())
    }

    pub fn pci(&self, i: usize) -> fastpath::pci::PciAddress {
        self.host.vfs[i].pci.parse().unwrap()
    }

    /// VF `i` in the host with its original name, MAC, MTU, admin-down, and
    /// no record.
    pub fn expect_home(&self, i: usize, what: &str) -> Result<(), String> {
        let vf = &self.host.vfs[i];
        let l = host_link(&vf.ifname)
            .ok_or_else(|| format!("{what}: VF {i} ({}) not in the host", vf.ifname))?;
        if l.mac != vf.mac || l.mtu != 1500 || l.up {
            return Err(format!(
                "{what}: VF {i} home as {l:?}, want MAC {} MTU 1500 down",
                vf.mac
            ));
        }
        let rec = fastpath::cni::records::load(self.host.state.path(), self.pci(i))
            .map_err(|e| format!("{what}: {e}"))?;
        if let Some(rec) = rec {
            return Err(format!(
                "{what}: VF {i} home but a record for {} is left",
                rec.container_id
            ));
        }
        Ok(())
    }

    /// GC with every attachment the runtime still knows (attached, netns
    /// gone but not yet deleted, CHECK in flight; ADDs wait); those being
    /// deleted are left out, so GC races their DEL. Every attachment that
    /// was valid must keep its record.
    fn gc(&self) -> Result<(), String> {
        let _gate = self.gc_gate.write().unwrap();
        let valid: Vec<String> = self
            .slots
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Slot::Attached(a) | Slot::Dead(a) => Some(a.cid.clone()),
                Slot::Busy(c) => c.clone(),
                Slot::Free => None,
            })
            .collect();
        let mut conf = self.host.conf("1.1.0", 0, json!({"deviceID": null}));
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|c| json!({"containerID": c, "ifname": "net1"}))
            .collect();
        self.cni("GC", &self.host.env("", "", None), &conf)?;
        let slots = self.slots.lock().unwrap();
        for (i, s) in slots.iter().enumerate() {
            if let Slot::Attached(a) | Slot::Dead(a) = s {
                let rec = fastpath::cni::records::load(self.host.state.path(), self.pci(i))
                    .map_err(|e| e.to_string())?;
                if rec.as_ref().map(|r| r.container_id.as_str()) != Some(a.cid.as_str()) {
                    return Err(format!(
                        "GC: valid attachment {} of VF {i} lost its record",
                        a.cid
                    ));
                }
            }
        }
        Ok(())
    }

    /// Rewrites the pool config to another layout and waits until the agent
    /// serves it: new pools registered, every VF listed, old sockets gone.
    fn reload(&self, r: u64) -> Result<(), String> {
        let mut layout = self.layout.write().unwrap();
        let others: Vec<Layout> = agent::LAYOUTS
            .into_iter()
            .filter(|l| l != &*layout)
            .collect();
        let next = others[(r >> 32) as usize % others.len()];
        let old: std::collections::BTreeSet<String> =
            layout.pools(self.n()).into_iter().map(|p| p.0).collect();
        let new: std::collections::BTreeSet<String> = next
            .pools(self.n())
            .into_iter()
            .map(|p| p.0)
            .filter(|p| !old.contains(p))
            .collect();
        let mut kubelet = self.kubelet.lock().unwrap();
        self.rt.block_on(async {
            agent::drain_registrations(&mut kubelet).await;
            self.paths
                .write_config(&next.config(&format!("{}pf", self.host.tag), self.n()));
            agent::await_registrations(&mut kubelet, &new).await?;
            agent::check_serving(&self.paths.device_plugins, next, &self.pcis()).await
        })?;
        *layout = next;
        Ok(())
    }

    pub fn pcis(&self) -> Vec<String> {
        self.host.vfs.iter().map(|v| v.pci.clone()).collect()
    }
}
