//! Network configuration: a drop-in for sriov-cni's NetConf, parsed from
//! stdin and validated into [`Config`] before anything on the node changes.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::field_types::check_types;
use crate::netlink::link::parse_mac;
use crate::netlink::vf::{LinkState, VfSetting, VlanProto};
use crate::ownership::OwnershipNetConf;
use crate::pci::PciAddress;

/// The CNI versions fastpath speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// `runtimeConfig`, the capabilities fastpath declares.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// `mac` capability.
    #[serde(default)]
    pub mac: Option<String>,
    /// `deviceID` (Multus, when the NAD declares the capability).
    #[serde(default, rename = "deviceID")]
    pub device_id: Option<String>,
    /// Where Multus wants the device-info file.
    #[serde(default, rename = "CNIDeviceInfoFile")]
    pub device_info_file: Option<String>,
}

/// The configuration exactly as it arrives (numbers kept wide so that an
/// out-of-range value is reported as such, not as a decode error).
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    ipam: Option<Value>,
    #[serde(default)]
    dns: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<RuntimeConfig>,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Value>,
    #[serde(rename = "deviceID", default)]
    device_id: Option<String>,
    #[serde(rename = "pciBusID", default)]
    pci_bus_id: Option<String>,
    #[serde(default)]
    vlan: Option<i64>,
    #[serde(rename = "vlanQoS", default)]
    vlan_qos: Option<i64>,
    #[serde(rename = "vlanProto", default)]
    vlan_proto: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    spoofchk: Option<String>,
    #[serde(default)]
    trust: Option<String>,
    #[serde(default)]
    link_state: Option<String>,
    #[serde(default)]
    min_tx_rate: Option<i64>,
    #[serde(default)]
    max_tx_rate: Option<i64>,
    #[serde(default)]
    mtu: Option<i64>,
    #[serde(rename = "logLevel", default)]
    log_level: Option<String>,
    /// `ownership` and `resourceName`: the pod ownership check's fields.
    #[serde(flatten)]
    ownership: OwnershipNetConf,
    #[serde(rename = "logFile", default)]
    log_file: Option<String>,
    #[serde(rename = "CNIDeviceInfoFile", default)]
    device_info_file: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// cniVersion (one of [`SUPPORTED_VERSIONS`]).
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// The VF (`deviceID`, `pciBusID` or `runtimeConfig.deviceID`).
    pub device: Option<PciAddress>,
    /// PF-side settings to apply, in order.
    pub vf_settings: Vec<VfSetting>,
    /// MAC for the interface in the pod (and the PF's admin MAC).
    pub mac: Option<[u8; 6]>,
    /// MTU for the interface in the pod.
    pub mtu: Option<u32>,
    /// IPAM section (with `type`), if any.
    pub ipam: Option<Value>,
    /// The `type` of the IPAM plugin.
    pub ipam_type: Option<String>,
    /// DNS from the config, echoed in results.
    pub dns: Option<Value>,
    /// prevResult (DEL, CHECK).
    pub prev_result: Option<Value>,
    /// Device-info file to write on ADD.
    pub device_info_file: Option<PathBuf>,
    /// `logLevel`.
    pub log_level: tracing::Level,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// The whole config as received, for delegating to IPAM.
    /// The pod ownership check's fields (stricter mode, resourceName).
    pub ownership: OwnershipNetConf,
    pub raw: Value,
}

/// Only the version, for answering errors in the caller's version even
/// when the rest of the config is bad.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

fn on_off(field: &str, v: &str) -> CniResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(CniError::invalid_field(
            field,
            format!("{v:?}"),
            "must be \"on\" or \"off\"",
        )),
    }
}

fn range(field: &str, v: i64, lo: i64, hi: i64) -> CniResult<u32> {
    if v < lo || v > hi {
        return Err(CniError::invalid_field(
            field,
            v,
            &format!("must be {lo}-{hi}"),
        ));
    }
    Ok(v as u32)
}

fn pci(field: &str, s: &str) -> CniResult<PciAddress> {
    s.parse()
        .map_err(|e| CniError::invalid_field(field, format!("{s:?}"), &format!("{e}")))
}

fn mac(field: &str, s: &str) -> CniResult<[u8; 6]> {
    let m = parse_mac(s).ok_or_else(|| {
        CniError::invalid_field(
            field,
            format!("{s:?}"),
            "must be a MAC like 02:00:00:00:00:01",
        )
    })?;
    if m[0] & 1 == 1 || m == [0; 6] {
        return Err(CniError::invalid_field(
            field,
            format!("{s:?}"),
            "must be a non-zero unicast MAC",
        ));
    }
    Ok(m)
}

impl Config {
    /// Parses and validates stdin with the CNI_ARGS of `env` (for `MAC=`).
    pub fn parse(stdin: &[u8], env: &CniEnv) -> CniResult<Self> {
        let raw_value: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(code::DECODE, "decoding network config", e.to_string()))?;
        check_types(&raw_value)?;
        let raw: RawConfig = serde_json::from_value(raw_value.clone())
            .map_err(|e| CniError::new(code::DECODE, "decoding network config", e.to_string()))?;
        Self::validate(raw, raw_value, env)
    }

    fn validate(raw: RawConfig, raw_value: Value, env: &CniEnv) -> CniResult<Self> {
        if !SUPPORTED_VERSIONS.contains(&raw.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("incompatible cniVersion {:?}", raw.cni_version),
                format!("supported: {}", SUPPORTED_VERSIONS.join(", ")),
            ));
        }
        if raw.name.is_empty() {
            return Err(CniError::invalid_field("name", "\"\"", "must not be empty"));
        }
        let rc = raw.runtime_config.clone().unwrap_or_default();
        // Multus injects deviceID and pciBusID; runtimeConfig.deviceID
        // comes from the capability. They must agree when several are set.
        let mut device = None;
        for (field, v) in [
            ("deviceID", &raw.device_id),
            ("pciBusID", &raw.pci_bus_id),
            ("runtimeConfig.deviceID", &rc.device_id),
        ] {
            let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let a = pci(field, s)?;
            match device {
                Some(d) if d != a => {
                    return Err(CniError::invalid_field(
                        field,
                        a,
                        &format!("disagrees with deviceID {d}"),
                    ));
                }
                _ => device = Some(a),
            }
        }
        let mut vf_settings = Vec::new();
        let vlan = raw.vlan.map(|v| range("vlan", v, 0, 4094)).transpose()?;
        let qos = raw
            .vlan_qos
            .map(|v| range("vlanQoS", v, 0, 7))
            .transpose()?;
        let proto = match raw.vlan_proto.as_deref() {
            None => None,
            Some(p) => Some(match p.to_ascii_lowercase().as_str() {
                "802.1q" => VlanProto::Dot1Q,
                "802.1ad" => VlanProto::Dot1Ad,
                _ => {
                    return Err(CniError::invalid_field(
                        "vlanProto",
                        format!("{p:?}"),
                        "must be \"802.1q\" or \"802.1ad\"",
                    ));
                }
            }),
        };
        match vlan {
            None if qos.is_some() => {
                return Err(CniError::invalid_field(
                    "vlanQoS",
                    qos.unwrap_or(0),
                    "needs vlan",
                ));
            }
            None if proto.is_some() => {
                return Err(CniError::invalid_field(
                    "vlanProto",
                    raw.vlan_proto.as_deref().unwrap_or(""),
                    "needs vlan",
                ));
            }
            None => {}
            Some(v) => {
                let qos = qos.unwrap_or(0);
                let proto = proto.unwrap_or_default();
                if v == 0 && qos != 0 {
                    return Err(CniError::invalid_field(
                        "vlanQoS",
                        qos,
                        "needs a non-zero vlan",
                    ));
                }
                if v == 0 && proto == VlanProto::Dot1Ad {
                    return Err(CniError::invalid_field(
                        "vlanProto",
                        "802.1ad",
                        "needs a non-zero vlan",
                    ));
                }
                vf_settings.push(VfSetting::Vlan {
                    vlan: v,
                    qos,
                    proto,
                });
            }
        }
        let mac = [
            ("mac", raw.mac.as_deref()),
            ("CNI_ARGS MAC", env.arg("MAC")),
            ("runtimeConfig.mac", rc.mac.as_deref()),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.filter(|s| !s.is_empty()).map(|s| (f, s)))
        .map(|(f, s)| mac(f, s))
        .collect::<CniResult<Vec<_>>>()?
        .pop();
        if let Some(m) = mac {
            vf_settings.push(VfSetting::Mac(m));
        }
        if let Some(s) = raw.spoofchk.as_deref() {
            vf_settings.push(VfSetting::SpoofChk(on_off("spoofchk", s)?));
        }
        if let Some(s) = raw.trust.as_deref() {
            vf_settings.push(VfSetting::Trust(on_off("trust", s)?));
        }
        let min = raw
            .min_tx_rate
            .map(|v| range("min_tx_rate", v, 0, u32::MAX as i64))
            .transpose()?;
        let max = raw
            .max_tx_rate
            .map(|v| range("max_tx_rate", v, 0, u32::MAX as i64))
            .transpose()?;
        if let (Some(lo), Some(hi)) = (min, max)
            && hi != 0
            && lo > hi
        {
            return Err(CniError::invalid_field(
                "min_tx_rate",
                lo,
                &format!("must not exceed max_tx_rate {hi}"),
            ));
        }
        if min.is_some() || max.is_some() {
            vf_settings.push(VfSetting::Rate {
                min: min.unwrap_or(0),
                max: max.unwrap_or(0),
            });
        }
        if let Some(s) = raw.link_state.as_deref() {
            let st = match s.to_ascii_lowercase().as_str() {
                "auto" => LinkState::Auto,
                "enable" => LinkState::Enable,
                "disable" => LinkState::Disable,
                _ => {
                    return Err(CniError::invalid_field(
                        "link_state",
                        format!("{s:?}"),
                        "must be \"auto\", \"enable\" or \"disable\"",
                    ));
                }
            };
            vf_settings.push(VfSetting::LinkState(st));
        }
        let mtu = raw.mtu.map(|v| range("mtu", v, 68, 65535)).transpose()?;
        let ipam_type = match &raw.ipam {
            None => None,
            Some(Value::Object(o)) if o.is_empty() => None,
            Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
                Some(t) if crate::sysfs::valid_ifname(t) || valid_plugin_name(t) => {
                    Some(t.to_string())
                }
                Some(t) => {
                    return Err(CniError::invalid_field(
                        "ipam.type",
                        format!("{t:?}"),
                        "must be a plugin file name",
                    ));
                }
                None => {
                    return Err(CniError::invalid_field(
                        "ipam.type",
                        "(missing)",
                        "is required",
                    ));
                }
            },
            Some(other) => {
                return Err(CniError::invalid_field("ipam", other, "must be an object"));
            }
        };
        let log_level = match raw
            .log_level
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("info") => tracing::Level::INFO,
            Some("panic") | Some("error") => tracing::Level::ERROR,
            Some("warning") | Some("warn") => tracing::Level::WARN,
            Some("debug") => tracing::Level::DEBUG,
            Some(other) => {
                return Err(CniError::invalid_field(
                    "logLevel",
                    format!("{other:?}"),
                    "must be panic, error, warning, info or debug",
                ));
            }
        };
        let device_info_file = rc
            .device_info_file
            .or(raw.device_info_file)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        if let Some(p) = &device_info_file
            && !p.is_absolute()
        {
            return Err(CniError::invalid_field(
                "CNIDeviceInfoFile",
                p.display(),
                "must be an absolute path",
            ));
        }
        let _ = raw.kind;
        Ok(Self {
            cni_version: raw.cni_version,
            name: raw.name,
            device,
            vf_settings,
            mac,
            mtu,
            ipam: raw.ipam,
            ipam_type,
            dns: raw.dns,
            prev_result: raw.prev_result,
            device_info_file,
            log_level,
            log_file: raw.log_file.filter(|s| !s.is_empty()).map(PathBuf::from),
            ownership: raw.ownership,
            raw: raw_value,
        })
    }

    /// True when the config has a PF-side setting to apply.
    pub fn has_vf_settings(&self) -> bool {
        !self.vf_settings.is_empty()
    }
}

/// A plugin name is one path component without surprises.
fn valid_plugin_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_mac(mac: Option<&str>) -> CniEnv {
        let mut e = CniEnv::default();
        if let Some(m) = mac {
            e.args.push(("MAC".into(), m.into()));
        }
        e
    }

    fn parse(v: Value, env: &CniEnv) -> CniResult<Config> {
        Config::parse(v.to_string().as_bytes(), env)
    }

    #[test]
    fn a_full_sriov_cni_config_parses() {
        let c = parse(
            serde_json::json!({
                "cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov",
                "deviceID": "0000:3b:02.1", "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1AD",
                "spoofchk": "off", "trust": "on", "link_state": "enable",
                "min_tx_rate": 100, "max_tx_rate": 1000, "mtu": 9000,
                "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}, "logLevel": "debug"
            }),
            &CniEnv::default(),
        )
        .unwrap();
        assert_eq!(c.device.unwrap().to_string(), "0000:3b:02.1");
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(
            c.vf_settings,
            vec![
                VfSetting::Vlan {
                    vlan: 100,
                    qos: 3,
                    proto: VlanProto::Dot1Ad
                },
                VfSetting::SpoofChk(false),
                VfSetting::Trust(true),
                VfSetting::Rate {
                    min: 100,
                    max: 1000
                },
                VfSetting::LinkState(LinkState::Enable),
            ]
        );
    }

    #[test]
    fn runtime_config_mac_beats_cni_args_which_beats_the_config() {
        let base = serde_json::json!({"cniVersion":"1.1.0","name":"n","type":"fastpath","mac":"02:00:00:00:00:01"});
        let c = parse(base.clone(), &env_with_mac(None)).unwrap();
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 1]));
        let c = parse(base.clone(), &env_with_mac(Some("02:00:00:00:00:02"))).unwrap();
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 2]));
        let mut with_rc = base;
        with_rc["runtimeConfig"] = serde_json::json!({"mac": "02:00:00:00:00:03"});
        let c = parse(with_rc, &env_with_mac(Some("02:00:00:00:00:02"))).unwrap();
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 3]));
    }

    #[test]
    fn device_id_sources_must_agree() {
        let v = serde_json::json!({"cniVersion":"0.4.0","name":"n","type":"sriov",
            "pciBusID":"0000:3b:02.1","runtimeConfig":{"deviceID":"0000:3b:02.1"}});
        assert_eq!(
            parse(v, &CniEnv::default())
                .unwrap()
                .device
                .unwrap()
                .to_string(),
            "0000:3b:02.1"
        );
        let v = serde_json::json!({"cniVersion":"0.4.0","name":"n","type":"sriov",
            "deviceID":"0000:3b:02.1","pciBusID":"0000:3b:02.2"});
        let e = parse(v, &CniEnv::default()).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("pciBusID"), "{e}");
    }
}
