//! A claim's opaque configuration for this driver: what a user asks of
//! the VFs a claim gets (driver, VLAN, MTU, MAC, trust, spoof check).
//! Parsed strictly and merged per request; pure, so a bad config is found
//! before anything on the node changes.
//!
//! ```yaml
//! config:
//! - opaque:
//!     driver: sriov.fastpath.dev
//!     parameters:
//!       apiVersion: sriov.fastpath.dev/v1alpha1
//!       kind: VfConfig
//!       driver: vfio-pci      # or netdevice
//!       vlan: 100             # 0-4094, 0 = untagged
//!       mtu: 9000             # 68-65535, netdevice only
//!       mac: 02:00:00:00:00:01
//!       trust: true
//!       spoofChk: false
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConfigSource, OpaqueConfig};
use crate::provision::policy::MacAddr;

/// `apiVersion` of the parameters this driver reads.
pub const API_VERSION: &str = "sriov.fastpath.dev/v1alpha1";
/// `kind` of the parameters this driver reads.
pub const KIND: &str = "VfConfig";

const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "driver",
    "vlan",
    "mtu",
    "mac",
    "trust",
    "spoofChk",
];

/// Which driver a claimed VF is handed out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VfDriver {
    /// `vfio-pci`: for DPDK and VMs; device nodes under /dev/vfio.
    VfioPci,
    /// `netdevice`: the VF's kernel driver, a netdev the CNI moves.
    Netdevice,
}

impl VfDriver {
    /// How the config spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::VfioPci => "vfio-pci",
            Self::Netdevice => "netdevice",
        }
    }
}

/// The merged configuration of one request; `None`: leave as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfConfig {
    /// Rebind to this driver kind when the VF has the other.
    pub driver: Option<VfDriver>,
    /// PF-side VLAN (0 removes the tag).
    pub vlan: Option<u16>,
    /// VF netdev MTU.
    pub mtu: Option<u32>,
    /// PF-side admin MAC.
    pub mac: Option<MacAddr>,
    /// PF-side trust.
    pub trust: Option<bool>,
    /// PF-side spoof checking.
    pub spoof_chk: Option<bool>,
}

/// A config entry this driver cannot apply; names the entry, the field
/// and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry}.{field}: {reason}")]
pub struct ClaimConfigError {
    /// `class config[0]` or `claim config[1]`, by the entry's place.
    pub entry: String,
    /// The parameter (`vlan`, `kind`, ...).
    pub field: String,
    /// What is wrong, with the value.
    pub reason: String,
}

fn entry_name(i: usize, c: &OpaqueConfig) -> String {
    let from = match c.source {
        ConfigSource::Class => "class",
        ConfigSource::Claim => "claim",
    };
    format!("{from} config[{i}] parameters")
}

/// Parses one entry's parameters; fields it does not set stay `None`.
pub fn parse(entry: &str, params: &Value) -> Result<VfConfig, ClaimConfigError> {
    let err = |field: &str, reason: String| ClaimConfigError {
        entry: entry.into(),
        field: field.into(),
        reason,
    };
    let obj = params
        .as_object()
        .ok_or_else(|| err("(parameters)", format!("must be an object, got {params}")))?;
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(err(
                k,
                format!("unknown field (known: {})", FIELDS.join(", ")),
            ));
        }
    }
    let want = |field: &str, expected: &str| match obj.get(field) {
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(v) => Err(err(field, format!("{v} is not {expected:?}"))),
        None => Err(err(field, format!("missing (must be {expected:?})"))),
    };
    want("apiVersion", API_VERSION)?;
    want("kind", KIND)?;
    let mut c = VfConfig::default();
    for (k, v) in obj {
        match k.as_str() {
            "driver" => {
                c.driver = Some(match v.as_str() {
                    Some("vfio-pci") => VfDriver::VfioPci,
                    Some("netdevice") => VfDriver::Netdevice,
                    _ => return Err(err(k, format!("{v} is not \"vfio-pci\" or \"netdevice\""))),
                })
            }
            "vlan" => {
                c.vlan = Some(
                    v.as_u64()
                        .filter(|n| *n <= 4094)
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| err(k, format!("{v} is not a VLAN id 0-4094")))?,
                )
            }
            "mtu" => {
                c.mtu = Some(
                    v.as_u64()
                        .filter(|n| (68..=65535).contains(n))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| err(k, format!("{v} is not an MTU 68-65535")))?,
                )
            }
            "mac" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| err(k, format!("{v} is not a MAC string")))?;
                c.mac = Some(s.parse().map_err(|e: String| err(k, e))?);
            }
            "trust" => c.trust = Some(bool_field(v).ok_or_else(|| err(k, not_bool(v)))?),
            "spoofChk" => c.spoof_chk = Some(bool_field(v).ok_or_else(|| err(k, not_bool(v)))?),
            _ => {}
        }
    }
    Ok(c)
}

fn bool_field(v: &Value) -> Option<bool> {
    v.as_bool()
}

fn not_bool(v: &Value) -> String {
    format!("{v} is not true or false")
}

/// Whether an entry naming `requests` applies to `request`: an empty list
/// means every request, and a main request's name covers its
/// subrequests (`req` covers `req/sub`).
fn applies(requests: &[String], request: &str) -> bool {
    let main = request.split('/').next().unwrap_or(request);
    requests.is_empty() || requests.iter().any(|r| r == request || r == main)
}

/// The config of `request`: every entry that applies, class entries
/// before claim entries, later fields over earlier ones. Every entry is
/// parsed, including those for other requests, so one bad entry fails
/// the claim as a whole before anything changes.
pub fn resolve(entries: &[OpaqueConfig], request: &str) -> Result<VfConfig, ClaimConfigError> {
    let mut ordered: Vec<(usize, &OpaqueConfig)> = entries.iter().enumerate().collect();
    ordered.sort_by_key(|(_, c)| c.source == ConfigSource::Claim);
    let mut out = VfConfig::default();
    // The entry that last set the driver or the MTU, to name in a conflict.
    let mut last = String::new();
    for (i, e) in ordered {
        let name = entry_name(i, e);
        let c = parse(&name, &e.parameters)?;
        if !applies(&e.requests, request) {
            continue;
        }
        if c.driver.is_some() || c.mtu.is_some() {
            last = name;
        }
        out = VfConfig {
            driver: c.driver.or(out.driver),
            vlan: c.vlan.or(out.vlan),
            mtu: c.mtu.or(out.mtu),
            mac: c.mac.or(out.mac),
            trust: c.trust.or(out.trust),
            spoof_chk: c.spoof_chk.or(out.spoof_chk),
        };
    }
    if let (Some(VfDriver::VfioPci), Some(m)) = (out.driver, out.mtu) {
        return Err(ClaimConfigError {
            entry: last,
            field: "mtu".into(),
            reason: format!(
                "{m} with driver vfio-pci: a vfio-pci VF has no netdev to set an MTU on"
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "claim_config_tests.rs"]
mod tests;
