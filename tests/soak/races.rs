//! The operations that race a pod's life cycle against another's: ADD of
//! a VF another pod holds, DEL for a container that never had the VF, and
//! ADD of a VF whose pod's netns went before that pod's DEL (then the
//! late DEL).

use crate::cni_host::{ip, ns_link};
use crate::runtime::recreate_veth;
use crate::world::{Att, Slot, World};

impl World<'_> {
    /// The VF of `old` (netns gone, no DEL yet) comes back to the host
    /// (the stand-in is re-created) and a new pod's ADD takes it; then
    /// `old`'s late DEL comes and must succeed without touching the new
    /// attachment.
    pub(crate) fn add_over_dead(
        &self,
        op: usize,
        i: usize,
        cid: String,
        old: Att,
        r: u64,
    ) -> Result<(), String> {
        recreate_veth(self.host, i)?;
        let new = self.add(op, i, cid, r)?;
        let (env, conf) = self.del_env_conf(i, &old, Some(&old.netns), r);
        self.send_del(&env, &conf, r)?;
        let rec = fastpath::cni::records::load(self.host.state.path(), self.pci(i))
            .map_err(|e| e.to_string())?;
        if rec.map(|r| r.container_id) != Some(new.cid.clone()) {
            return Err(format!("late DEL {} took {}'s record", old.cid, new.cid));
        }
        match ns_link(&new.netns, "net1") {
            Some(l) if l.mac == self.host.vfs[i].mac && l.up => {}
            other => {
                return Err(format!(
                    "late DEL {}: {}'s net1 is {other:?}",
                    old.cid, new.cid
                ));
            }
        }
        self.set(i, Slot::Attached(new));
        Ok(())
    }

    /// A second pod's ADD naming VF `i`, which `a` holds: it must fail,
    /// and `a` keep its VF, record and interface.
    pub(crate) fn add_taken(&self, op: usize, i: usize, a: Att) -> Result<(), String> {
        let cid = format!("soak{op}taken");
        let netns = format!("{}{op}", self.netns_prefix());
        ip(&["netns", "add", &netns]);
        let env = self.host.env(&cid, "net1", Some(&netns));
        let refused = self.cni("ADD", &env, &self.conf(a.version, i)).is_err();
        let stolen = ns_link(&netns, "net1").is_some();
        ip(&["netns", "del", &netns]);
        if !refused || stolen {
            return Err(format!(
                "ADD {cid} of VF {i}, held by {}, was not refused",
                a.cid
            ));
        }
        let rec = fastpath::cni::records::load(self.host.state.path(), self.pci(i))
            .map_err(|e| e.to_string())?;
        if rec.map(|r| r.container_id) != Some(a.cid.clone()) {
            return Err(format!("refused ADD {cid} changed the record of {}", a.cid));
        }
        match ns_link(&a.netns, "net1") {
            Some(l) if l.mac == self.host.vfs[i].mac && l.up => {}
            other => return Err(format!("refused ADD {cid}: {}'s net1 is {other:?}", a.cid)),
        }
        self.set(i, Slot::Attached(a));
        Ok(())
    }

    /// DEL for a container that never had free VF `i` (with a fresh netns,
    /// or none): succeeds and the VF stays home.
    pub(crate) fn del_unknown(&self, op: usize, i: usize, r: u64) -> Result<(), String> {
        let cid = format!("soak{op}never");
        let netns = format!("{}{op}", self.netns_prefix());
        let with_netns = (r >> 48).is_multiple_of(2);
        if with_netns {
            ip(&["netns", "add", &netns]);
        }
        let env = self
            .host
            .env(&cid, "net1", with_netns.then_some(netns.as_str()));
        let res = self.cni("DEL", &env, &self.conf("1.1.0", i));
        if with_netns {
            ip(&["netns", "del", &netns]);
        }
        res?;
        self.expect_home(i, &format!("DEL {cid} (never added)"))?;
        self.set(i, Slot::Free);
        Ok(())
    }
}
