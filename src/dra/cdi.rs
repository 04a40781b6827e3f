//! What a prepared claim hands the container, as data: one CDI spec per
//! claim (kind `<driver>/vf`), the CDI device IDs kubelet gets back for
//! each device, and the device-info files Multus reads. The env and
//! device nodes are the device plugin's Allocate's own
//! ([`crate::agent::allocate`]), so a DPDK application reads
//! `PCIDEVICE_<PREFIX>_<NAME>` the same way under either mode.
//!
//! CDI devices: one per VF, named by its PCI address
//! (`<driver>/vf=0000:3b:02.1`), carrying the env of its request's
//! devices (every device of a request carries the same values, so a
//! container given the request sees each variable once) and its device
//! nodes (vfio). Released Multus (v4.2.2-v4.3.0) takes the text after `=` of
//! each CDI device ID kubelet reports as the `deviceID` it hands the CNI,
//! so the name must be the address. The CDI name rules allow it: letters,
//! digits, `_`, `-`, `.` and `:`, starting and ending with a letter or
//! digit (a leading digit needs spec 0.5.0 or later). A VF is in one
//! claim at a time, so the name is unique among this driver's specs once
//! a gone claim's spec is removed ([`super::stale_cdi`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::prepare::DevicePlan;
use crate::agent::allocate::{self, AllocateOptions};
use crate::pci::PciAddress;
use crate::pools::Pool;

/// The CDI spec version written (the device plugin writes the same).
pub const CDI_VERSION: &str = "0.6.0";

/// The CDI kind of this driver's devices.
pub fn kind(driver: &str) -> String {
    format!("{driver}/vf")
}

/// The CDI device name of a VF: its PCI address.
pub fn device_name(pci: PciAddress) -> String {
    pci.to_string()
}

/// The fully-qualified CDI device ID kubelet gets for a VF.
pub fn device_id(driver: &str, pci: PciAddress) -> String {
    format!("{}={}", kind(driver), device_name(pci))
}

/// Longest file name Linux takes; a device-info file under a longer
/// claim name is not written (Multus could not open it either).
const NAME_MAX: usize = 255;

/// The claim's spec file in `cdi_dir`. The UID was checked by
/// [`super::record::valid_uid`] and the driver is a DNS subdomain.
pub fn spec_path(cdi_dir: &Path, driver: &str, uid: &str) -> PathBuf {
    cdi_dir.join(format!("{driver}-{uid}.json"))
}

/// A prepared claim's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimOutput {
    /// The CDI spec.
    pub spec: Value,
    /// CDI device IDs per device, in the plans' order.
    pub ids: Vec<Vec<String>>,
    /// Device-info files: (file name, JSON).
    pub devinfo: Vec<(String, String)>,
}

/// The outputs of claim `claim_name` whose devices are `plans`, each
/// bound to `drivers[i]` once prepared. Device-info files are written
/// under the `draPools` entry's name (what Multus master looks up) and
/// under the claim's name (what released Multus looks up: it keys a DRA
/// device by its claim).
pub fn claim_output(
    driver: &str,
    claim_name: &str,
    plans: &[DevicePlan],
    drivers: &[Option<String>],
    opts: AllocateOptions,
) -> ClaimOutput {
    let opts = AllocateOptions { cdi: false, ..opts };
    // Each device as it will be once prepared (its driver decides the
    // vfio nodes); the scheduler already chose it, so health is moot.
    let pools: Vec<Pool> = plans
        .iter()
        .zip(drivers)
        .map(|(p, d)| {
            let mut pool = p.dra_pool.clone();
            pool.devices[0].view.driver = d.clone();
            pool.devices[0].unhealthy = None;
            pool
        })
        .collect();
    let mut ids = vec![Vec::new(); plans.len()];
    let mut devinfo = Vec::new();
    // Requests in first-seen order; within each, devices by DRA pool.
    let mut requests: Vec<&str> = Vec::new();
    for p in plans {
        if !requests.contains(&p.request.as_str()) {
            requests.push(&p.request);
        }
    }
    let mut env_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for req in requests {
        let mut by_pool: BTreeMap<String, Pool> = BTreeMap::new();
        for (_, p) in plans.iter().zip(&pools).filter(|(p, _)| p.request == req) {
            by_pool
                .entry(p.resource())
                .and_modify(|acc| acc.devices.extend(p.devices.iter().cloned()))
                .or_insert_with(|| p.clone());
        }
        let mut env = Vec::new();
        for pool in by_pool.values() {
            let pci_ids: Vec<String> = pool
                .devices
                .iter()
                .map(|d| d.view.pci.to_string())
                .collect();
            // Every device is in the pool and healthy, so this cannot fail.
            if let Ok(a) = allocate::allocate(pool, &pci_ids, opts) {
                env.extend(a.envs.into_iter().map(|(k, v)| format!("{k}={v}")));
                for (id, (file, json)) in pci_ids.iter().zip(a.devinfo) {
                    let by_claim = allocate::devinfo_file_name(claim_name, id);
                    if by_claim != file && by_claim.len() <= NAME_MAX {
                        devinfo.push((by_claim, json.clone()));
                    }
                    devinfo.push((file, json));
                }
            }
        }
        env_of.insert(req, env);
    }
    let mut cdi_devices = Vec::new();
    let mut named: Vec<PciAddress> = Vec::new();
    for (i, (p, pool)) in plans.iter().zip(&pools).enumerate() {
        let pci = p.dev().view.pci;
        ids[i].push(device_id(driver, pci));
        // One CDI device per VF even if a claim named it twice: a spec
        // with a name twice is refused.
        if named.contains(&pci) {
            continue;
        }
        named.push(pci);
        let nodes: Vec<Value> = allocate::device_nodes(&pool.devices[0], opts)
            .into_iter()
            .map(|n| json!({ "path": n.path, "permissions": n.permissions }))
            .collect();
        let mut edits =
            json!({ "env": env_of.get(p.request.as_str()).cloned().unwrap_or_default() });
        if !nodes.is_empty() {
            edits["deviceNodes"] = Value::Array(nodes);
        }
        cdi_devices.push(json!({ "name": device_name(pci), "containerEdits": edits }));
    }
    ClaimOutput {
        spec: json!({ "cdiVersion": CDI_VERSION, "kind": kind(driver), "devices": cdi_devices }),
        ids,
        devinfo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CDI's rules for a fully-qualified device name (cncf-tags/
    /// container-device-interface, pkg/parser): `vendor/class=name`;
    /// vendor and class start with a letter, name with a letter or digit;
    /// all end with a letter or digit; inside, letters, digits, `_`, `-`,
    /// `.`, and in the name also `:`.
    fn cdi_qualified(id: &str) -> bool {
        let part = |s: &str, first: fn(u8) -> bool, extra: &[u8]| {
            let b = s.as_bytes();
            !b.is_empty()
                && first(b[0])
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        let Some((qualifier, name)) = id.split_once('=') else {
            return false;
        };
        let Some((vendor, class)) = qualifier.split_once('/') else {
            return false;
        };
        part(vendor, |c| c.is_ascii_alphabetic(), b"_-.")
            && part(class, |c| c.is_ascii_alphabetic(), b"_-.")
            && part(name, |c| c.is_ascii_alphanumeric(), b"_-.:")
    }

    #[test]
    fn cdi_names_are_the_vfs_address_and_valid_cdi_names() {
        let cases = [
            (
                "sriov.fastpath.dev",
                "0000:3b:02.1",
                "sriov.fastpath.dev/vf=0000:3b:02.1",
            ),
            (
                "sriov.fastpath.dev",
                "0000:03:10.2",
                "sriov.fastpath.dev/vf=0000:03:10.2",
            ),
            (
                "net.example.com",
                "ffff:ff:1f.7",
                "net.example.com/vf=ffff:ff:1f.7",
            ),
            ("a", "0001:00:00.0", "a/vf=0001:00:00.0"),
        ];
        for (driver, pci, want) in cases {
            let pci: PciAddress = pci.parse().unwrap();
            let id = device_id(driver, pci);
            assert_eq!(id, want);
            assert!(cdi_qualified(&id), "{id}");
            // Released Multus splits on '=' and wants exactly two parts.
            let parts: Vec<&str> = id.split('=').collect();
            assert_eq!(parts, [kind(driver).as_str(), pci.to_string().as_str()]);
            assert_eq!(device_name(pci).parse::<PciAddress>().unwrap(), pci);
        }
        // The checker is not a yes-machine.
        for bad in [
            "sriov.fastpath.dev/vf",
            "sriov.fastpath.dev/vf=:3b",
            "sriov.fastpath.dev/vf=0000:3b:02.1:",
            "9x/vf=a",
            "a/vf=b c",
        ] {
            assert!(!cdi_qualified(bad), "{bad}");
        }
    }
}
