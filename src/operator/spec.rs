//! `SriovNetworkNodePolicy` as plain data, read from the object's JSON the
//! way the API server hands it over. Fields the CRD does not know are
//! ignored (the server would have pruned them); every known field is
//! checked against the CRD's schema and the operator's admission webhook,
//! so an object the operator would have refused is refused here too, with
//! the field and value named.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::OperatorError;
use crate::pci::{PciAddress, PciId};
use crate::provision::DeviceType;
use crate::provision::policy::{MAX_MTU, MIN_MTU};

/// The operator's default priority (the lowest).
pub const DEFAULT_PRIORITY: u32 = 99;

/// One policy object, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// `metadata.name`.
    pub name: String,
    /// `spec.resourceName`.
    pub resource_name: String,
    /// `spec.nodeSelector`: every label must be present with this value.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.priority`, 0 (wins) to 99 (default).
    pub priority: u32,
    /// `spec.mtu`.
    pub mtu: Option<u32>,
    /// `spec.numVfs`.
    pub num_vfs: u32,
    /// `spec.nicSelector`.
    pub nic: NicSelector,
    /// `spec.deviceType`.
    pub device_type: DeviceType,
    /// `spec.isRdma`.
    pub is_rdma: bool,
    /// `spec.needVhostNet`.
    pub need_vhost_net: bool,
    /// `spec.linkType`, when set.
    pub link_type: Option<LinkType>,
    /// `spec.excludeTopology`.
    pub exclude_topology: bool,
    /// `spec.externallyManaged`: VFs are created by someone else.
    pub externally_managed: bool,
}

/// `spec.nicSelector`; present fields are ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicSelector {
    /// PF vendor id.
    pub vendor: Option<PciId>,
    /// PF device id.
    pub device_id: Option<PciId>,
    /// PF PCI addresses.
    pub root_devices: Vec<PciAddress>,
    /// PF names, each with an optional `#first-last` VF range.
    pub pf_names: Vec<PfName>,
}

/// One `pfNames` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfName {
    /// The PF's interface name.
    pub name: String,
    /// Inclusive VF index range; `None`: `0..numVfs-1`.
    pub range: Option<(u32, u32)>,
}

/// `spec.linkType`, compared case-insensitively as the operator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// `eth`.
    Eth,
    /// `ib`.
    Ib,
}

impl LinkType {
    /// The device plugin's `linkTypes` value.
    pub fn selector_value(self) -> &'static str {
        match self {
            Self::Eth => "ether",
            Self::Ib => "infiniband",
        }
    }
}

/// Field reader that names `spec.<path>` in every error.
struct Fields<'a> {
    policy: &'a str,
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl Fields<'_> {
    fn err(&self, key: &str, reason: String) -> OperatorError {
        OperatorError::Invalid {
            policy: self.policy.to_string(),
            field: format!("{}.{key}", self.path),
            reason,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Result<Option<&str>, OperatorError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, format!("must be a string, got {v}"))),
        }
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<u32>, OperatorError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(u32::try_from(n).ok()),
                Some(n) => Err(self.err(key, format!("{n} is outside {min}-{max}"))),
                None => Err(self.err(key, format!("must be an integer, got {v}"))),
            },
        }
    }

    fn bool(&self, key: &str) -> Result<bool, OperatorError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(key, format!("must be true or false, got {v}"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>, OperatorError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().ok_or_else(|| {
                        self.err(&format!("{key}[{i}]"), format!("must be a string, got {v}"))
                    })
                })
                .collect(),
            Some(v) => Err(self.err(key, format!("must be a list of strings, got {v}"))),
        }
    }
}

/// Reads `metadata.name`, for messages about an object that fails to parse.
pub fn object_name(obj: &Value) -> String {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string()
}

/// Parses and checks one object (`{"metadata":{...},"spec":{...}}`).
pub fn parse(obj: &Value) -> Result<NodePolicy, OperatorError> {
    let name = object_name(obj);
    let empty = Map::new();
    let spec_v = obj.get("spec");
    let spec = match spec_v {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(v) => {
            return Err(OperatorError::Invalid {
                policy: name,
                field: "spec".into(),
                reason: format!("must be an object, got {v}"),
            });
        }
    };
    let f = Fields {
        policy: &name,
        obj: spec,
        path: "spec",
    };
    let resource_name = f.str("resourceName")?.unwrap_or_default().to_string();
    check_resource_name(&resource_name).map_err(|r| f.err("resourceName", r))?;
    let node_selector = match f.get("nodeSelector") {
        None => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                v => Err(f.err(
                    &format!("nodeSelector[{k:?}]"),
                    format!("must be a string, got {v}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(f.err("nodeSelector", format!("must be a map, got {v}"))),
    };
    let priority = f.int("priority", 0, 99)?.unwrap_or(DEFAULT_PRIORITY);
    let mtu = f.int("mtu", MIN_MTU.into(), MAX_MTU.into())?;
    let num_vfs = f.int("numVfs", 0, i64::from(crate::vfrange::MAX_VF_INDEX) + 1)?;
    let num_vfs = num_vfs.ok_or_else(|| f.err("numVfs", "missing".into()))?;
    let device_type = match f.str("deviceType")? {
        None | Some("netdevice") => DeviceType::Netdevice,
        Some("vfio-pci") => DeviceType::VfioPci,
        Some(other) => {
            return Err(f.err(
                "deviceType",
                format!("{other:?} is not netdevice or vfio-pci"),
            ));
        }
    };
    let link_type = match f.str("linkType")? {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("eth") => Some(LinkType::Eth),
        Some(s) if s.eq_ignore_ascii_case("ib") => Some(LinkType::Ib),
        Some(other) => return Err(f.err("linkType", format!("{other:?} is not eth or ib"))),
    };
    let is_rdma = f.bool("isRdma")?;
    if is_rdma && device_type == DeviceType::VfioPci {
        return Err(f.err(
            "isRdma",
            "true conflicts with deviceType vfio-pci (RDMA needs netdevice VFs)".into(),
        ));
    }
    let nic = parse_nic(&f, num_vfs)?;
    let policy = NodePolicy {
        name: name.clone(),
        resource_name,
        node_selector,
        priority,
        mtu,
        num_vfs,
        nic,
        device_type,
        is_rdma,
        need_vhost_net: f.bool("needVhostNet")?,
        link_type,
        exclude_topology: f.bool("excludeTopology")?,
        externally_managed: f.bool("externallyManaged")?,
    };
    refuse_unsupported(&f, &name)?;
    Ok(policy)
}

/// The operator's webhook: a DNS-label-like name (underscores allowed for
/// old objects), at most 63 characters.
fn check_resource_name(s: &str) -> Result<(), String> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = s.as_bytes();
    if s.is_empty() {
        return Err("missing".into());
    }
    if s.len() > 63 {
        return Err(format!("{s:?} is longer than 63 characters"));
    }
    if !bytes.iter().all(|&b| ok_char(b))
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return Err(format!(
            "{s:?} must be letters, digits, '-' or '_', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn parse_nic(f: &Fields<'_>, num_vfs: u32) -> Result<NicSelector, OperatorError> {
    let obj = match f.get("nicSelector") {
        None => return Err(f.err("nicSelector", "missing".into())),
        Some(Value::Object(m)) => m,
        Some(v) => return Err(f.err("nicSelector", format!("must be an object, got {v}"))),
    };
    let n = Fields {
        policy: f.policy,
        obj,
        path: "spec.nicSelector",
    };
    let hex = |key: &str| -> Result<Option<PciId>, OperatorError> {
        n.str(key)?
            .map(|s| {
                let ok = s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
                ok.then(|| u16::from_str_radix(s, 16).ok())
                    .flatten()
                    .map(PciId)
                    .ok_or_else(|| {
                        n.err(key, format!("{s:?} is not 4 hex digits such as \"8086\""))
                    })
            })
            .transpose()
    };
    let root_devices = n
        .strings("rootDevices")?
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<PciAddress>()
                .map_err(|e| n.err(&format!("rootDevices[{i}]"), e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let pf_names = n
        .strings("pfNames")?
        .into_iter()
        .enumerate()
        .map(|(i, s)| parse_pf_name(s, num_vfs).map_err(|r| n.err(&format!("pfNames[{i}]"), r)))
        .collect::<Result<_, _>>()?;
    if n.str("netFilter")?.is_some() {
        return Err(OperatorError::Unsupported {
            policy: f.policy.to_string(),
            field: "spec.nicSelector.netFilter".into(),
            value: n.str("netFilter")?.unwrap_or_default().to_string(),
            reason:
                "it matches cloud (OpenStack, AWS) network metadata, which fastpath does not read"
                    .into(),
        });
    }
    let nic = NicSelector {
        vendor: hex("vendor")?,
        device_id: hex("deviceID")?,
        root_devices,
        pf_names,
    };
    if nic == NicSelector::default() {
        return Err(f.err(
            "nicSelector",
            "selects nothing: set vendor, deviceID, pfNames or rootDevices".into(),
        ));
    }
    Ok(nic)
}

/// `name` or `name#first-last`, as the operator's webhook accepts them:
/// one range, first <= last < numVfs.
fn parse_pf_name(s: &str, num_vfs: u32) -> Result<PfName, String> {
    let (name, range) = match s.split_once('#') {
        None => (s, None),
        Some((name, r)) => {
            let Some((a, b)) = r.split_once('-') else {
                return Err(format!("{s:?}: the VF range must be first-last, like #0-3"));
            };
            let idx = |x: &str| {
                x.parse::<u32>()
                    .map_err(|_| format!("{s:?}: {x:?} is not a VF index"))
            };
            let (a, b) = (idx(a)?, idx(b)?);
            if b < a {
                return Err(format!("{s:?}: the range ends before it starts"));
            }
            if b >= num_vfs {
                return Err(format!("{s:?}: VF {b} is beyond numVfs {num_vfs}"));
            }
            (name, Some((a, b)))
        }
    };
    if !crate::sysfs::valid_ifname(name) {
        return Err(format!("{s:?}: {name:?} is not an interface name"));
    }
    Ok(PfName {
        name: name.to_string(),
        range,
    })
}

/// Fields the operator honours by changing firmware, eSwitch modes or OVS,
/// which fastpath does not do live: the policy is refused, not half-applied.
fn refuse_unsupported(f: &Fields<'_>, policy: &str) -> Result<(), OperatorError> {
    let refuse = |field: &str, value: String, reason: &str| OperatorError::Unsupported {
        policy: policy.to_string(),
        field: format!("spec.{field}"),
        value,
        reason: reason.into(),
    };
    match f.str("eSwitchMode")? {
        None | Some("legacy") => {}
        Some("switchdev") => {
            return Err(refuse(
                "eSwitchMode",
                "switchdev".into(),
                "switchdev needs the eSwitch mode changed with the VFs destroyed and \
                 representors managed; fastpath keeps legacy mode",
            ));
        }
        Some(other) => {
            return Err(f.err(
                "eSwitchMode",
                format!("{other:?} is not legacy or switchdev"),
            ));
        }
    }
    if let Some(v) = f.str("vdpaType")? {
        return Err(refuse(
            "vdpaType",
            v.to_string(),
            "vDPA devices need switchdev mode",
        ));
    }
    if let Some(b) = f
        .get("bridge")
        .filter(|b| b.as_object().is_some_and(|m| !m.is_empty()))
    {
        return Err(refuse(
            "bridge",
            b.to_string(),
            "OVS bridge management needs switchdev mode",
        ));
    }
    Ok(())
}
