//! The reference device-plugin config (`{"resourceList":[...]}`), parsed
//! the way the reference parses it (JSON keys matched case-insensitively,
//! `selectors` as one object or a list) and validated up front: every
//! error names the field path and the value.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::pci::{PciAddress, PciId};
use crate::vfrange::PfVfSelector;

use super::selector::parse_selector;

/// What is wrong with a config file; `path` is like
/// `resourceList[2].selectors[0].pfNames[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON at all.
    #[error("config is not valid JSON: {0}")]
    NotJson(String),
    /// A field has a value it cannot have.
    #[error("{path}: {reason}")]
    InvalidField {
        /// Field path.
        path: String,
        /// What is wrong, with the value.
        reason: String,
    },
}

pub(super) fn invalid(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidField {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Which kind of device a pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeviceType {
    /// Network functions (PCI class 02).
    NetDevice,
    /// Accelerators (PCI class 12), e.g. QAT VFs.
    Accelerator,
}

/// How GetPreferredAllocation orders devices across PFs (fastpath
/// extension key `allocationPolicy`; the reference ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    /// Spread a request over as many PFs as possible (redundancy).
    #[default]
    Spread,
    /// Take as many devices as possible from one PF.
    Pack,
}

/// One selector object; every present field must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Vendor ids.
    pub vendors: Vec<PciId>,
    /// Device ids.
    pub devices: Vec<PciId>,
    /// Driver names.
    pub drivers: Vec<String>,
    /// Device addresses.
    pub pci_addresses: Vec<PciAddress>,
    /// ACPI indexes (`acpi_index`).
    pub acpi_indexes: Vec<String>,
    /// PF names with optional VF ranges; entries naming the same PF are
    /// merged (the reference keeps only the first).
    pub pf_names: Vec<PfVfSelector>,
    /// PF addresses.
    pub root_devices: Vec<PciAddress>,
    /// Link types (`ether`, `infiniband`), lower-case.
    pub link_types: Vec<String>,
    /// Only devices with an RDMA device; RDMA char devices on Allocate.
    pub is_rdma: bool,
    /// Add `/dev/vhost-net` and `/dev/net/tun` on Allocate.
    pub need_vhost_net: bool,
}

/// One `resourceList` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceConfig {
    /// `resourceName`.
    pub resource_name: String,
    /// `resourcePrefix`, else the default prefix.
    pub resource_prefix: String,
    /// `deviceType`.
    pub device_type: DeviceType,
    /// No TopologyInfo in ListAndWatch.
    pub exclude_topology: bool,
    /// Selector objects, tried in order.
    pub selectors: Vec<Selector>,
    /// `additionalInfo`: `"*"` and per-PCI-address maps, inner keys kept as written.
    pub additional_info: BTreeMap<String, BTreeMap<String, String>>,
    /// fastpath extension: preferred-allocation policy.
    pub allocation_policy: AllocationPolicy,
}

impl ResourceConfig {
    /// `<prefix>/<name>` as kubelet sees it.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.resource_prefix, self.resource_name)
    }
}

/// A whole config file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// The pools in file order (first match wins).
    pub resource_list: Vec<ResourceConfig>,
    /// `draPools`: devices published to DRA instead of served as device
    /// plugins; same entry fields and selectors, `resourceName` names the
    /// entry (a device in both lists is an error, see
    /// [`super::modes::assign_modes`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dra_pools: Vec<ResourceConfig>,
    /// Where fastpath deliberately differs from the reference for this
    /// file (logged at load, shown by `fastpath pools`).
    pub notes: Vec<String>,
}

/// Looks up `key` case-insensitively, as Go's encoding/json does; an exact
/// match wins over a case-folded one.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<(&'a str, &'a Value)> {
    obj.get_key_value(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        .map(|(k, v)| (k.as_str(), v))
}

/// Rejects keys not in `known` (compared case-insensitively).
pub(super) fn check_keys(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<(), ConfigError> {
    for k in obj.keys() {
        if !known.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            return Err(invalid(
                &join(path, k),
                format!("unknown field {k:?} (known: {})", known.join(", ")),
            ));
        }
    }
    Ok(())
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn as_bool(v: &Value, path: &str) -> Result<bool, ConfigError> {
    v.as_bool()
        .ok_or_else(|| invalid(path, format!("must be true or false, got {v}")))
}

fn as_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    v.as_str()
        .ok_or_else(|| invalid(path, format!("must be a string, got {v}")))
}

/// Parses a list of strings with `parse` turning each into a value.
pub(super) fn list<T>(
    v: &Value,
    path: &str,
    mut parse: impl FnMut(&str, &str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(path, format!("must be a list of strings, got {v}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let s = as_str(item, &p)?;
            parse(s, &p).map_err(|r| invalid(&p, r))
        })
        .collect()
}

/// The reference validates resource names against `^[a-zA-Z0-9_-]+$`.
fn valid_resource_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A resource prefix must be a DNS subdomain for kubelet to accept it.
fn valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const ENTRY_KEYS: &[&str] = &[
    "resourceName",
    "resourcePrefix",
    "deviceType",
    "excludeTopology",
    "selectors",
    "additionalInfo",
    "allocationPolicy",
];

/// Parses and validates a config file's text; `default_prefix` is the
/// `--resource-prefix` flag.
pub fn parse(text: &str, default_prefix: &str) -> Result<Config, ConfigError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| ConfigError::NotJson(e.to_string()))?;
    let obj = root
        .as_object()
        .ok_or_else(|| invalid("(top level)", format!("must be an object, got {root}")))?;
    check_keys(obj, "", &["resourceList", "draPools"])?;
    let dra = field(obj, "draPools");
    let mut notes = Vec::new();
    // A DRA-only node needs no resourceList.
    let resource_list = match (field(obj, "resourceList"), dra) {
        (None, None) => return Err(invalid("resourceList", "missing")),
        (None, Some(_)) => Vec::new(),
        (Some((key, v)), _) => parse_entries(key, v, default_prefix, &mut notes)?,
    };
    let dra_pools = match dra {
        None => Vec::new(),
        Some((key, v)) => parse_entries(key, v, default_prefix, &mut notes)?,
    };
    Ok(Config {
        resource_list,
        dra_pools,
        notes,
    })
}

/// One list of entries (`resourceList` or `draPools`); names are unique
/// within the list.
fn parse_entries(
    key: &str,
    list_v: &Value,
    default_prefix: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<ResourceConfig>, ConfigError> {
    let entries = list_v
        .as_array()
        .ok_or_else(|| invalid(key, format!("must be a list, got {list_v}")))?;
    let mut out: Vec<ResourceConfig> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let rc = parse_entry(e, &path, default_prefix, notes)?;
        if let Some(j) = out.iter().position(|o| o.full_name() == rc.full_name()) {
            return Err(invalid(
                &format!("{path}.resourceName"),
                format!("{:?} is already defined by {key}[{j}]", rc.full_name()),
            ));
        }
        out.push(rc);
    }
    Ok(out)
}

fn parse_entry(
    v: &Value,
    path: &str,
    default_prefix: &str,
    notes: &mut Vec<String>,
) -> Result<ResourceConfig, ConfigError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, format!("must be an object, got {v}")))?;
    check_keys(obj, path, ENTRY_KEYS)?;
    let name_path = join(path, "resourceName");
    let resource_name = match field(obj, "resourceName") {
        None => return Err(invalid(&name_path, "missing")),
        Some((_, v)) => as_str(v, &name_path)?.to_string(),
    };
    if !valid_resource_name(&resource_name) {
        return Err(invalid(
            &name_path,
            format!("{resource_name:?} must match ^[a-zA-Z0-9_-]+$"),
        ));
    }
    let prefix_path = join(path, "resourcePrefix");
    let resource_prefix = match field(obj, "resourcePrefix") {
        None => default_prefix.to_string(),
        Some((_, v)) => as_str(v, &prefix_path)?.to_string(),
    };
    if !valid_prefix(&resource_prefix) {
        return Err(invalid(
            &prefix_path,
            format!(
                "{resource_prefix:?} is not a DNS subdomain (lower-case letters, digits, '-', '.')"
            ),
        ));
    }
    let device_type = match field(obj, "deviceType") {
        None => DeviceType::NetDevice,
        Some((_, v)) => match as_str(v, &join(path, "deviceType"))? {
            "netDevice" => DeviceType::NetDevice,
            "accelerator" => DeviceType::Accelerator,
            other => {
                return Err(invalid(
                    &join(path, "deviceType"),
                    format!("{other:?} is not supported (netDevice or accelerator)"),
                ));
            }
        },
    };
    let exclude_topology = match field(obj, "excludeTopology") {
        None => false,
        Some((_, v)) => as_bool(v, &join(path, "excludeTopology"))?,
    };
    let allocation_policy = match field(obj, "allocationPolicy") {
        None => AllocationPolicy::Spread,
        Some((_, v)) => match as_str(v, &join(path, "allocationPolicy"))? {
            "spread" => AllocationPolicy::Spread,
            "pack" => AllocationPolicy::Pack,
            other => {
                return Err(invalid(
                    &join(path, "allocationPolicy"),
                    format!("{other:?} is not spread or pack"),
                ));
            }
        },
    };
    let sel_path = join(path, "selectors");
    let selectors = match field(obj, "selectors") {
        None => return Err(invalid(&sel_path, "missing")),
        Some((_, Value::Array(items))) => {
            if items.is_empty() {
                return Err(invalid(&sel_path, "empty list selects nothing"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, s)| parse_selector(s, &format!("{sel_path}[{i}]"), device_type, notes))
                .collect::<Result<_, _>>()?
        }
        Some((_, s @ Value::Object(_))) => {
            vec![parse_selector(s, &sel_path, device_type, notes)?]
        }
        Some((_, other)) => {
            return Err(invalid(
                &sel_path,
                format!("must be an object or a list of objects, got {other}"),
            ));
        }
    };
    let additional_info = match field(obj, "additionalInfo") {
        None => BTreeMap::new(),
        Some((_, v)) => parse_additional_info(v, &join(path, "additionalInfo"))?,
    };
    Ok(ResourceConfig {
        resource_name,
        resource_prefix,
        device_type,
        exclude_topology,
        selectors,
        additional_info,
        allocation_policy,
    })
}

/// `{"*": {k: v}, "<pci>": {k: v}}`; inner keys are user data, kept as written.
fn parse_additional_info(
    v: &Value,
    path: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ConfigError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(path, format!("must be an object, got {v}")))?;
    let mut out = BTreeMap::new();
    for (dev, inner) in obj {
        // Map keys are data (addresses contain ':' and '.'), so quote them.
        let p = format!("{path}[{dev:?}]");
        if dev != "*" {
            dev.parse::<PciAddress>()
                .map_err(|e| invalid(&p, format!("key must be \"*\" or a PCI address: {e}")))?;
        }
        let inner = inner
            .as_object()
            .ok_or_else(|| invalid(&p, format!("must be an object of strings, got {inner}")))?;
        let mut m = BTreeMap::new();
        for (k, val) in inner {
            m.insert(k.clone(), as_str(val, &format!("{p}[{k:?}]"))?.to_string());
        }
        out.insert(dev.clone(), m);
    }
    Ok(out)
}
