//! The node policy file: which PFs get how many VFs, bound to which driver,
//! with which MTUs and admin MACs. YAML or JSON (JSON is YAML, so one
//! parser reads both); unknown fields are rejected. Format and examples:
//! `deploy/policy/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pci::{PciAddress, PciId};
use crate::vfrange::PfVfSelector;

/// Smallest MTU the policy accepts (IPv4's minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU the policy accepts.
pub const MAX_MTU: u32 = 65535;

/// Reading or checking a policy file failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading {path}: {error}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file is not a valid policy document (syntax, unknown or
    /// missing fields, bad values); the message names the field.
    #[error("{path}: {message}")]
    Parse {
        /// The policy file (or `<inline>`).
        path: PathBuf,
        /// The parser's message, which carries the field path.
        message: String,
    },
    /// A field is well-formed but its value is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// `policies[N].field`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// The whole node policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    /// Allow binding VFs to vfio-pci without an IOMMU (vfio no-IOMMU mode:
    /// no DMA isolation, for labs only).
    #[serde(default)]
    pub allow_no_iommu: bool,
    /// One entry per PF selector.
    #[serde(default)]
    pub policies: Vec<PolicyEntry>,
}

/// The driver class a VF is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum DeviceType {
    /// The VF's kernel network driver (iavf, igbvf, mlx5_core, ...).
    #[default]
    #[serde(rename = "netdevice")]
    Netdevice,
    /// vfio-pci, for DPDK and VMs.
    #[serde(rename = "vfio-pci")]
    VfioPci,
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Netdevice => "netdevice",
            Self::VfioPci => "vfio-pci",
        })
    }
}

/// One policy entry: a PF selector and what its VFs should look like.
/// Selectors given together are ANDed; `pfNames` entries may carry VF
/// ranges (`ens1f0#0-3`) so that several entries split one PF's VFs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyEntry {
    /// Free-form name used in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// PF netdev names, optionally with VF ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pf_names: Vec<PfVfSelector>,
    /// PF PCI addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_devices: Vec<PciAddress>,
    /// PF vendor id (`8086`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<HexId>,
    /// PF device id (`1592`); needs `vendor`.
    #[serde(default, rename = "deviceID", skip_serializing_if = "Option::is_none")]
    pub device_id: Option<HexId>,
    /// VFs the selected PFs must have.
    pub num_vfs: u32,
    /// Driver class of the selected VFs.
    #[serde(default)]
    pub device_type: DeviceType,
    /// MTU of the PF netdev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// MTU of each selected kernel VF's netdev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf_mtu: Option<u32>,
    /// Admin MACs pinned through the PF, by VF index (entry must select
    /// exactly one PF).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "macs_by_index"
    )]
    pub macs: BTreeMap<u32, MacAddr>,
    /// Reconfigure the PF even when it carries the default route or the
    /// node's primary address.
    #[serde(default)]
    pub force: bool,
}

/// `macs` keys are VF indexes: YAML integers, or strings in JSON.
fn macs_by_index<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, MacAddr>, D::Error> {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Index(u32);
    impl<'de> Deserialize<'de> for Index {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Index;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a VF index")
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Index, E> {
                    u32::try_from(v)
                        .map(Index)
                        .map_err(|_| E::custom(format!("VF index {v} is too large")))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Index, E> {
                    u64::try_from(v)
                        .map_err(|_| E::custom(format!("VF index {v} is negative")))
                        .and_then(|v| self.visit_u64(v))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Index, E> {
                    v.parse()
                        .map(Index)
                        .map_err(|_| E::custom(format!("VF index {v:?} is not a number")))
                }
            }
            d.deserialize_any(V)
        }
    }
    let raw = BTreeMap::<Index, MacAddr>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// A PCI id written as the reference does (`"8086"`, no `0x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexId(pub PciId);

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u16::from_str_radix(&s, 16).ok())
            .flatten()
            .map(|v| HexId(PciId(v)))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid PCI id {s:?}: expected 4 hex digits such as \"8086\""
                ))
            })
    }
}

impl Serialize for HexId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:04x}", self.0.0))
    }
}

/// A unicast Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid MAC {s:?}: expected six hex pairs like 02:00:00:00:00:01");
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        for (o, p) in out.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if out[0] & 1 == 1 {
            return Err(format!("invalid MAC {s:?}: multicast, a VF needs unicast"));
        }
        if out == [0; 6] {
            return Err(format!("invalid MAC {s:?}: all zero"));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PolicyEntry {
    /// True when the entry has at least one PF selector.
    pub fn has_selector(&self) -> bool {
        !self.pf_names.is_empty() || !self.root_devices.is_empty() || self.vendor.is_some()
    }
}

impl Policy {
    /// True when some entry pins VF admin MACs.
    pub fn pins_macs(&self) -> bool {
        self.policies.iter().any(|e| !e.macs.is_empty())
    }

    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, PolicyError> {
        let policy: Policy = serde_norway::from_str(text).map_err(|e| PolicyError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        policy.check()?;
        Ok(policy)
    }

    /// Checks what serde cannot: selectors present, ids paired, MTUs and
    /// MAC indexes in range. Node-dependent checks happen in the plan.
    pub fn check(&self) -> Result<(), PolicyError> {
        for (i, e) in self.policies.iter().enumerate() {
            let invalid = |field: &str, reason: String| PolicyError::Invalid {
                field: format!("policies[{i}]{field}"),
                reason,
            };
            if !e.has_selector() {
                return Err(invalid(
                    "",
                    "no PF selector: set pfNames, rootDevices or vendor (+ deviceID)".into(),
                ));
            }
            if e.device_id.is_some() && e.vendor.is_none() {
                return Err(invalid(".deviceID", "needs vendor as well".into()));
            }
            for (field, mtu) in [(".mtu", e.mtu), (".vfMtu", e.vf_mtu)] {
                if let Some(m) = mtu.filter(|m| !(MIN_MTU..=MAX_MTU).contains(m)) {
                    return Err(invalid(
                        field,
                        format!("{m} is outside {MIN_MTU}-{MAX_MTU}"),
                    ));
                }
            }
            if e.vf_mtu.is_some() && e.device_type == DeviceType::VfioPci {
                return Err(invalid(
                    ".vfMtu",
                    "applies to netdevice VFs only; vfio-pci VFs have no host netdev".into(),
                ));
            }
            if let Some(&idx) = e.macs.keys().find(|&&idx| idx >= e.num_vfs) {
                return Err(invalid(
                    &format!(".macs.{idx}"),
                    format!("VF index {idx} is beyond numVfs {}", e.num_vfs),
                ));
            }
            let mut seen = BTreeMap::new();
            for (idx, mac) in &e.macs {
                if let Some(other) = seen.insert(*mac, *idx) {
                    return Err(invalid(
                        &format!(".macs.{idx}"),
                        format!("{mac} is also given to VF {other}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("policy.yaml"))
    }

    #[test]
    fn parses_yaml_with_every_field() {
        let p = parse(
            "allowNoIommu: true
policies:
  - name: dpdk
    pfNames: [\"ens1f0#0-3\"]
    numVfs: 8
    deviceType: vfio-pci
    macs: {0: \"02:00:00:00:00:10\", 3: \"02:00:00:00:00:13\"}
  - pfNames: [\"ens1f0#4-7\"]
    numVfs: 8
    mtu: 9000
    vfMtu: 9000
  - rootDevices: [\"0000:af:00.0\"]
    vendor: \"15b3\"
    deviceID: \"101d\"
    numVfs: 4
    force: true
",
        )
        .unwrap();
        assert!(p.allow_no_iommu);
        assert_eq!(p.policies.len(), 3);
        let e = &p.policies[0];
        assert_eq!(e.device_type, DeviceType::VfioPci);
        assert_eq!(e.pf_names[0].to_string(), "ens1f0#0-3");
        assert_eq!(e.macs[&3].to_string(), "02:00:00:00:00:13");
        assert_eq!(p.policies[1].device_type, DeviceType::Netdevice);
        assert_eq!(p.policies[1].vf_mtu, Some(9000));
        assert_eq!(p.policies[2].device_id.unwrap().0, PciId(0x101d));
        assert!(p.policies[2].force);
    }

    #[test]
    fn json_is_accepted_and_macs_keys_may_be_strings() {
        let p = parse(
            r#"{"policies":[{"pfNames":["enp5s0"],"numVfs":2,"macs":{"1":"02:00:00:00:00:01"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.policies[0].macs.len(), 1);
    }

    #[test]
    fn bad_input_names_the_field() {
        for (text, want) in [
            ("policies:\n  - pfNames: [a]\n    numvfs: 2\n", "numvfs"),
            ("policies:\n  - pfNames: [a]\n", "numVfs"),
            ("bogus: 1\npolicies: []\n", "bogus"),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 1\n    deviceType: dpdk\n",
                "dpdk",
            ),
            (
                "policies:\n  - pfNames: [\"a#3-1\"]\n    numVfs: 4\n",
                "reversed",
            ),
            (
                "policies:\n  - rootDevices: [\"3b:00.0\"]\n    numVfs: 4\n",
                "3b:00.0",
            ),
            (
                "policies:\n  - vendor: \"0x8086\"\n    numVfs: 4\n",
                "0x8086",
            ),
            ("policies:\n  - numVfs: 4\n", "policies[0]: no PF selector"),
            (
                "policies:\n  - deviceID: \"1592\"\n    pfNames: [a]\n    numVfs: 4\n",
                "policies[0].deviceID: needs vendor",
            ),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 4\n    mtu: 20\n",
                "policies[0].mtu: 20",
            ),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 4\n    deviceType: vfio-pci\n    vfMtu: 9000\n",
                "policies[0].vfMtu",
            ),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 2\n    macs: {2: \"02:00:00:00:00:01\"}\n",
                "policies[0].macs.2: VF index 2 is beyond numVfs 2",
            ),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 2\n    macs: {0: \"03:00:00:00:00:01\"}\n",
                "multicast",
            ),
            (
                "policies:\n  - pfNames: [a]\n    numVfs: 2\n    macs: {0: \"02:00:00:00:00:01\", 1: \"02:00:00:00:00:01\"}\n",
                "policies[0].macs.1: 02:00:00:00:00:01 is also given to VF 0",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_field_errors_carry_the_entry_path() {
        let e = parse("policies:\n  - pfNames: [a]\n    numVfs: 1\n  - pfNames: [b]\n    numVfs: 1\n    numvfs: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policies[1]"), "{e}");
        assert!(e.contains("unknown field `numvfs`"), "{e}");
    }
}
