//! ADD: resolve and check everything, record the undo, run the steps, and
//! undo completed steps in reverse if any step fails.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::config::Config;
use super::del::move_home;
use super::device::{self, VfDevice};
use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::ipam;
use super::lock::lock_vf;
use super::plan::{Step, StepHook, plan_add};
use super::records::{self, Durability, Original, Phase, Record, write_atomic};
use super::result::{AddResult, Interface, IpNet, IpamResult, shape};
use super::undo::{UndoCtx, undo};
use crate::netlink::Netlink;
use crate::netlink::link::{Link, format_mac};
use crate::netns::NetNs;
use crate::sysfs::Sysfs;

/// Runs ADD and returns the result shaped for the config's version.
pub fn add(env: &CniEnv, conf: &Config, hook: &dyn StepHook) -> CniResult<Value> {
    let sysfs = Sysfs::new(&env.sysfs_root);
    // Before anything changes: kubelet must have given this pod the VF (or
    // names it, when the config has no deviceID).
    let pci = super::owner::approved_device(env, conf)?;
    let mut dev = device::resolve(&sysfs, pci)?;
    if conf.has_vf_settings() {
        dev.pf()?;
    }
    if let Some(plugin) = &conf.ipam_type {
        ipam::find(env, plugin)?;
    }
    let netns_path = env.netns.as_deref().unwrap_or(std::path::Path::new(""));
    let pod = NetNs::open(netns_path).map_err(|e| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            "opening the pod netns",
            e.to_string(),
        )
    })?;
    let _lock = lock_vf(&env.state_dir, pci)?;
    if let Some(name) = take_over_stale(env, conf, &sysfs, &dev)?
        && !dev.dpdk
    {
        // Restoring gave the VF back its original name; the name read
        // from sysfs before that is stale.
        dev.netdev = Some(name);
    }

    let mut host = Netlink::open().map_err(|e| CniError::kernel("opening netlink", e))?;
    let (original, host_link) = original_state(&mut host, conf, &dev)?;
    // One socket in the pod netns serves every pod-side request.
    let mut pod_nl = None;
    if !dev.dpdk {
        let nl = pod_nl.insert(
            Netlink::open_in(&pod).map_err(|e| CniError::kernel("netlink in the pod netns", e))?,
        );
        // Checked before any change. The move cannot be trusted with it:
        // the kernel moves the link under its host name first and renames
        // it after, so a taken name fails the rename with the VF already
        // in the pod.
        if nl
            .link_by_name_unlocked(&env.ifname)
            .map_err(|e| CniError::kernel("looking up CNI_IFNAME in the pod", e))?
            .is_some()
        {
            return Err(ifname_taken(env));
        }
    }

    let steps = plan_add(conf, &dev);
    let mut record = Record {
        version: records::RECORD_VERSION,
        pci,
        pf_pci: dev.pf_pci,
        pf_name: dev.pf_name.clone(),
        pf_driver: dev.pf_driver.clone(),
        vf_index: dev.index,
        dpdk: dev.dpdk,
        network: conf.name.clone(),
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        pod_namespace: env.arg("K8S_POD_NAMESPACE").map(str::to_string),
        pod_name: env.arg("K8S_POD_NAME").map(str::to_string),
        pod_uid: env.arg("K8S_POD_UID").map(str::to_string),
        since: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        original,
        plan: steps.clone(),
        reached: 0,
        phase: Phase::Adding,
        result: None,
        ipam: conf.ipam_type.is_some().then(|| records::IpamContext {
            netconf: conf.raw.clone(),
            cni_path: env.path.clone(),
            cni_args: env.args_string(),
        }),
    };
    // On stable storage before the first change: the slot's fdatasync (the
    // VF's first record: the new file's fsync, rename and directory
    // fsync). The directory's fsync used to run on a helper thread during the
    // move; that thread's exit set off an RCU grace period the move then
    // had to wait out (docs/PERFORMANCE-CNI-HISTORY.md, "The record's
    // directory is fsynced before the move").
    if let Err(e) = records::save(&env.state_dir, &record, Durability::Full) {
        // Nothing has changed yet: a record left behind (a failed fsync
        // comes after the write) would only make a retry of this ADD find
        // the VF busy.
        let _ = records::remove(&env.state_dir, pci);
        return Err(e);
    }
    crate::fault::crash_point("cni.add.after.record");

    let mut exec = Exec {
        env,
        conf,
        dev: &dev,
        pod: &pod,
        pod_nl,
        host,
        host_link,
        record: &record,
        ipam: None,
        addresses: Vec::new(),
    };
    let outcome = exec.run(&steps, hook);
    match outcome {
        Ok(()) => {
            let result = exec.result();
            let shaped = shape(&result, &conf.cni_version);
            record.reached = steps.len();
            record.phase = Phase::Attached;
            record.result = Some(shaped.clone());
            // Unsynced is enough: a power loss leaves this record or the
            // Adding one in the other slot, which leads a later DEL or GC
            // to the same undo.
            records::save(&env.state_dir, &record, Durability::Atomic)?;
            if let Some(path) = &conf.device_info_file {
                write_device_info(path, &dev)?;
            }
            tracing::info!(pci = %pci, ifname = %env.ifname, container = %env.container_id, "attached");
            Ok(shaped)
        }
        Err((done, err)) => {
            let addresses = std::mem::take(&mut exec.addresses);
            let ctx = UndoCtx {
                env,
                conf: Some(conf),
                sysfs: &sysfs,
                record: &record,
                addresses: &addresses,
            };
            let errors = undo(&steps[..done], &ctx);
            if errors.is_empty() {
                records::remove(&env.state_dir, pci)?;
                Err(err)
            } else {
                // Keep the record: DEL or GC finishes what undo could not.
                tracing::error!(pci = %pci, "undo after failed ADD: {}", errors.join("; "));
                Err(CniError::new(
                    err.code,
                    err.msg,
                    format!("{}; undo incomplete: {}", err.details, errors.join("; ")),
                ))
            }
        }
    }
}

/// CNI_IFNAME is taken in the pod netns.
fn ifname_taken(env: &CniEnv) -> CniError {
    let netns = env.netns.as_deref().unwrap_or(std::path::Path::new(""));
    CniError::new(
        code::KERNEL,
        format!(
            "interface {} already exists in netns {}",
            env.ifname,
            netns.display()
        ),
        "the CNI spec forbids ADD over an existing CNI_IFNAME",
    )
}

/// A record for this VF from an attachment whose netns is gone (a pod
/// that died without DEL) is restored first; a live one refuses ADD.
/// Returns the host name the VF has after a restoration.
fn take_over_stale(
    env: &CniEnv,
    conf: &Config,
    sysfs: &Sysfs,
    dev: &VfDevice,
) -> CniResult<Option<String>> {
    let Some(old) = records::load(&env.state_dir, dev.pci)? else {
        return Ok(None);
    };
    let live = old.netns.as_deref().is_some_and(|p| NetNs::open(p).is_ok());
    if live {
        return Err(CniError::new(
            code::VF_BUSY,
            format!(
                "VF {} is attached to container {} as {}",
                dev.pci, old.container_id, old.ifname
            ),
            format!(
                "pod {}/{} holds it; DEL that attachment first",
                old.pod_namespace.as_deref().unwrap_or("?"),
                old.pod_name.as_deref().unwrap_or("?")
            ),
        ));
    }
    tracing::warn!(pci = %dev.pci, container = %old.container_id, "restoring a stale attachment whose netns is gone");
    let old_env = CniEnv {
        container_id: old.container_id.clone(),
        ifname: old.ifname.clone(),
        netns: None,
        ..env.clone()
    };
    // Its IPAM lease is released with this config when it is the same
    // network; otherwise the runtime's GC of that network releases it.
    let ctx = UndoCtx {
        env: &old_env,
        conf: (old.network == conf.name).then_some(conf),
        sysfs,
        record: &old,
        addresses: &[],
    };
    let errors = undo(&old.plan, &ctx);
    if !errors.is_empty() {
        return Err(CniError::kernel(
            format!("restoring VF {} from a stale attachment", dev.pci),
            errors.join("; "),
        ));
    }
    records::remove(&env.state_dir, dev.pci)?;
    Ok(old.original.ifname)
}

/// The VF's original state, and its host link (kernel VFs).
fn original_state(
    host: &mut Netlink,
    conf: &Config,
    dev: &VfDevice,
) -> CniResult<(Original, Option<Link>)> {
    let mut original = Original::default();
    let mut host_link = None;
    if let Some(name) = &dev.netdev {
        let link = host
            .link_by_name_unlocked(name)
            .map_err(|e| CniError::kernel(format!("reading VF netdev {name}"), e))?
            .ok_or_else(|| {
                CniError::new(
                    code::KERNEL,
                    format!("VF {} netdev {name} is not in the host netns", dev.pci),
                    "sysfs names it but netlink does not know it",
                )
            })?;
        original.ifname = Some(link.name.clone());
        original.mac = link.mac.clone();
        original.mtu = link.mtu;
        host_link = Some(link);
    }
    if conf.has_vf_settings() {
        let pf = dev.pf()?;
        let state = host.vf_state(&pf, dev.index).map_err(|e| {
            CniError::kernel(format!("reading VF {} state from its PF", dev.pci), e)
        })?;
        original.pf_side = Some(state);
    }
    Ok((original, host_link))
}

/// The device-info file Multus asked for (atomic, 0600; Multus reads it
/// right after ADD and deletes it itself, so it needs no fsync).
fn write_device_info(path: &std::path::Path, dev: &VfDevice) -> CniResult<()> {
    let info = json!({
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": dev.pci.to_string(), "pf-pci-address": dev.pf_pci.to_string()},
    });
    if let Some(dir) = path.parent() {
        records::ensure_dir(dir)?;
    }
    write_atomic(path, info.to_string().as_bytes(), Durability::Atomic)
}

/// Runs the steps of one ADD.
struct Exec<'a> {
    env: &'a CniEnv,
    conf: &'a Config,
    dev: &'a VfDevice,
    pod: &'a NetNs,
    /// A netlink socket in the pod netns (kernel VFs only).
    pod_nl: Option<Netlink>,
    host: Netlink,
    /// The VF's host link as read for the record, until a PF-side change
    /// (a VF reset may replace the netdev) makes it stale.
    host_link: Option<Link>,
    record: &'a Record,
    ipam: Option<IpamResult>,
    addresses: Vec<IpNet>,
}

fn injected(step: &Step, msg: String) -> CniError {
    CniError::new(code::KERNEL, format!("step {} failed", step.name()), msg)
}

impl Exec<'_> {
    /// Runs `steps`; on failure returns how many took effect and the error.
    fn run(&mut self, steps: &[Step], hook: &dyn StepHook) -> Result<(), (usize, CniError)> {
        let mut i = 0;
        while i < steps.len() {
            if steps[i].in_pod() {
                let end = steps[i..]
                    .iter()
                    .position(|s| !s.in_pod())
                    .map_or(steps.len(), |n| i + n);
                let (done, r) = self.run_in_pod(&steps[i..end], hook);
                if let Err(e) = r {
                    return Err((i + done, e));
                }
                i = end;
                continue;
            }
            self.host_step(&steps[i]).map_err(|e| (i, e))?;
            hook.after(&steps[i])
                .map_err(|m| (i + 1, injected(&steps[i], m)))?;
            i += 1;
        }
        Ok(())
    }

    fn host_step(&mut self, step: &Step) -> CniResult<()> {
        match step {
            Step::PfSide(setting) => {
                self.host_link = None;
                let pf = self.dev.pf()?;
                self.host
                    .set_vf(&pf, self.dev.index, setting)
                    .map_err(|e| CniError::kernel(format!("configuring VF {}", self.dev.pci), e))
            }
            Step::MoveToPod => {
                let link = match self.host_link.take() {
                    Some(l) => l,
                    None => {
                        let name = self.record.original.ifname.as_deref().unwrap_or_default();
                        self.host.require_link(name).map_err(|e| {
                            CniError::kernel(format!("VF {} netdev", self.dev.pci), e)
                        })?
                    }
                };
                match self
                    .host
                    .move_to_netns(&link, self.pod.raw_fd(), &self.env.ifname)
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                        // CNI_IFNAME was taken after the check: the kernel
                        // moved the VF, then failed to rename it.
                        self.bring_back_unrenamed(&link.name);
                        Err(ifname_taken(self.env))
                    }
                    Err(e) => Err(CniError::kernel(
                        format!("moving VF {} into the pod", self.dev.pci),
                        e,
                    )),
                }
            }
            Step::Ipam => {
                self.ipam = ipam::add(self.conf, self.env)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// After a move whose rename failed, the VF is in the pod under its
    /// host name `name`: move it home under the same name. Best effort
    /// (logged): the step counts as not done, so undo leaves the pod's own
    /// CNI_IFNAME alone.
    fn bring_back_unrenamed(&mut self, name: &str) {
        let back = NetNs::current()
            .map_err(|e| e.to_string())
            .and_then(|host| move_home(self.pod, name, &host, name).map_err(|e| e.to_string()));
        if let Err(e) = back {
            tracing::error!(pci = %self.dev.pci, "VF left in the pod as {name}: {e}");
        }
    }

    /// Runs consecutive pod-side steps through the pod's netlink socket.
    fn run_in_pod(&mut self, steps: &[Step], hook: &dyn StepHook) -> (usize, CniResult<()>) {
        let mut added = Vec::new();
        let r = match self.pod_nl.as_mut() {
            Some(nl) => pod_steps(
                nl,
                &self.env.ifname,
                steps,
                self.ipam.as_ref(),
                &mut added,
                hook,
            ),
            None => (0, Err(CniError::kernel("netlink in the pod", "not open"))),
        };
        self.addresses = added;
        r
    }

    fn result(&self) -> AddResult {
        let orig = &self.record.original;
        AddResult {
            interface: Interface {
                name: self.env.ifname.clone(),
                mac: if self.dev.dpdk {
                    None
                } else {
                    self.conf.mac.map(|m| format_mac(&m)).or(orig.mac.clone())
                },
                mtu: if self.dev.dpdk {
                    None
                } else {
                    self.conf.mtu.or(orig.mtu)
                },
                sandbox: (!self.dev.dpdk)
                    .then(|| self.env.netns.as_ref().map(|p| p.display().to_string()))
                    .flatten(),
                pci_id: self.dev.pci.to_string(),
            },
            ipam: self.ipam.clone().unwrap_or_default(),
            dns: self.conf.dns.clone(),
        }
    }
}

/// The pod-side steps in order; how many took effect, and the first error.
fn pod_steps(
    nl: &mut Netlink,
    ifname: &str,
    steps: &[Step],
    ipam: Option<&IpamResult>,
    added: &mut Vec<IpNet>,
    hook: &dyn StepHook,
) -> (usize, CniResult<()>) {
    // Addresses and routes need the ifindex; MAC, MTU and up address the
    // interface by name, which saves a lookup under the kernel's RTNL lock
    // (contended when many pods start at once).
    let link = if steps.contains(&Step::Addresses) {
        match nl.require_link(ifname) {
            Ok(l) => l,
            Err(e) => return (0, Err(CniError::kernel("finding the VF in the pod", e))),
        }
    } else {
        Link::named(ifname)
    };
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = pod_step(nl, &link, step, ipam, added) {
            return (i, Err(e));
        }
        if let Err(m) = hook.after(step) {
            return (i + 1, Err(injected(step, m)));
        }
    }
    (steps.len(), Ok(()))
}

fn pod_step(
    nl: &mut Netlink,
    link: &Link,
    step: &Step,
    ipam: Option<&IpamResult>,
    added: &mut Vec<IpNet>,
) -> CniResult<()> {
    let k = |e| CniError::kernel(format!("{} on {}", step.name(), link.name), e);
    match step {
        Step::SetMac(m) => nl.set_mac(link, *m).map_err(k),
        Step::SetMtu(m) => nl.set_mtu(link, *m).map_err(k),
        Step::Up => nl.set_up(link, true).map_err(k),
        Step::Addresses => {
            let Some(r) = ipam else { return Ok(()) };
            let mut gw4: Option<IpAddr> = None;
            let mut gw6: Option<IpAddr> = None;
            for ip in &r.ips {
                // Validated when IPAM's answer was parsed.
                let Ok(net) = ip.address.parse::<IpNet>() else {
                    continue;
                };
                nl.add_address(link, net.ip, net.prefix).map_err(k)?;
                added.push(net);
                let gw = ip.gateway.as_deref().and_then(|g| g.parse::<IpAddr>().ok());
                match gw {
                    Some(g @ IpAddr::V4(_)) if gw4.is_none() => gw4 = Some(g),
                    Some(g @ IpAddr::V6(_)) if gw6.is_none() => gw6 = Some(g),
                    _ => {}
                }
            }
            for route in &r.routes {
                let Ok(dst) = route.dst.parse::<IpNet>() else {
                    continue;
                };
                // Like libcni's ConfigureIface: a route without a gateway
                // goes through the IP config's gateway of its family.
                let gw = route
                    .gw
                    .as_deref()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .or(if dst.ip.is_ipv4() { gw4 } else { gw6 });
                nl.add_route(link, dst.ip, dst.prefix, gw).map_err(k)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "add_tests.rs"]
mod tests;
