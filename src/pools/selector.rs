//! Parsing one selector object of a `resourceList` entry (netDevice or
//! accelerator keys), with the same path-naming errors as the rest of the
//! config.

use serde_json::Value;

use super::config::{ConfigError, DeviceType, Selector, as_bool, check_keys, invalid, join, list};
use crate::pci::{PciAddress, PciId};
use crate::vfrange::PfVfSelector;

const NET_SELECTOR_KEYS: &[&str] = &[
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "acpiIndexes",
    "pfNames",
    "rootDevices",
    "linkTypes",
    "isRdma",
    "needVhostNet",
];
const ACCEL_SELECTOR_KEYS: &[&str] = &["vendors", "devices", "drivers", "pciAddresses"];
/// Reference selectors fastpath does not implement: ignoring them would
/// silently widen the pool, so they are errors.
const UNSUPPORTED_SELECTOR_KEYS: &[&str] = &["ddpProfiles", "pKeys", "vdpaType", "auxTypes"];

pub(super) fn parse_selector(
    v: &Value,
    path: &str,
    device_type: DeviceType,
    notes: &mut Vec<String>,
) -> Result<Selector, ConfigError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, format!("must be an object, got {v}")))?;
    for k in obj.keys() {
        if UNSUPPORTED_SELECTOR_KEYS
            .iter()
            .any(|u| u.eq_ignore_ascii_case(k))
        {
            return Err(invalid(
                &join(path, k),
                "selector is not supported by fastpath (ignoring it would widen the pool)",
            ));
        }
    }
    let keys = match device_type {
        DeviceType::NetDevice => NET_SELECTOR_KEYS,
        DeviceType::Accelerator => ACCEL_SELECTOR_KEYS,
    };
    check_keys(obj, path, keys)?;
    let mut s = Selector::default();
    let id = |v: &str, _: &str| {
        PciId::parse(v)
            .ok_or_else(|| format!("{v:?} is not a 1-4 digit hex PCI id (e.g. \"8086\")"))
    };
    let addr = |v: &str, _: &str| v.parse::<PciAddress>().map_err(|e| e.to_string());
    let nonempty = |v: &str, _: &str| {
        if v.trim().is_empty() || v.contains('/') {
            Err(format!("{v:?} must be a non-empty name without '/'"))
        } else {
            Ok(v.to_string())
        }
    };
    for (k, val) in obj {
        let p = join(path, k);
        match k.to_ascii_lowercase().as_str() {
            "vendors" => s.vendors = list(val, &p, id)?,
            "devices" => s.devices = list(val, &p, id)?,
            "drivers" => s.drivers = list(val, &p, nonempty)?,
            "pciaddresses" => s.pci_addresses = list(val, &p, addr)?,
            "rootdevices" => s.root_devices = list(val, &p, addr)?,
            "acpiindexes" => {
                s.acpi_indexes = list(val, &p, |v, _| {
                    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                        Ok(v.to_string())
                    } else {
                        Err(format!("{v:?} is not a decimal ACPI index"))
                    }
                })?
            }
            "linktypes" => {
                s.link_types = list(val, &p, |v, _| {
                    let l = v.to_ascii_lowercase();
                    if l == "ether" || l == "infiniband" {
                        Ok(l)
                    } else {
                        Err(format!(
                            "{v:?} is not a supported link type (ether, infiniband)"
                        ))
                    }
                })?
            }
            "pfnames" => {
                s.pf_names = list(val, &p, |v, _| {
                    v.parse::<PfVfSelector>().map_err(|e| e.to_string())
                })?;
                s.pf_names = merge_pf_names(std::mem::take(&mut s.pf_names), &p, notes);
            }
            "isrdma" => s.is_rdma = as_bool(val, &p)?,
            "needvhostnet" => s.need_vhost_net = as_bool(val, &p)?,
            // check_keys rejected every other key.
            _ => {}
        }
    }
    Ok(s)
}

/// Merges entries naming the same PF into one: the reference only honours
/// the first entry per PF, which silently drops the VFs users listed later.
fn merge_pf_names(
    entries: Vec<PfVfSelector>,
    path: &str,
    notes: &mut Vec<String>,
) -> Vec<PfVfSelector> {
    let mut out: Vec<PfVfSelector> = Vec::new();
    for e in entries {
        match out.iter_mut().find(|o| o.pf.eq_ignore_ascii_case(&e.pf)) {
            None => out.push(e),
            Some(o) => {
                let merged = match (&o.vfs, &e.vfs) {
                    (Some(a), Some(b)) => {
                        let mut r = a.ranges().to_vec();
                        r.extend_from_slice(b.ranges());
                        Some(crate::vfrange::VfIndexSet::from_ranges(r))
                    }
                    _ => None,
                };
                let note = format!(
                    "{path}: entries {} and {e} name the same PF; fastpath uses their union, the reference only the first",
                    o
                );
                tracing::warn!("{note}");
                notes.push(note);
                o.vfs = merged;
            }
        }
    }
    out
}
