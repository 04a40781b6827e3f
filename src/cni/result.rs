//! CNI results: what IPAM returns (any supported version) and what
//! fastpath prints, shaped for the caller's cniVersion.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{CniError, CniResult, code};

/// An address with its prefix length (`10.1.0.5/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl std::str::FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no /prefix"))?;
        let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Self { ip, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// One IP config from IPAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `address` (CIDR).
    pub address: String,
    /// `gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// One route from IPAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `dst` (CIDR).
    pub dst: String,
    /// `gw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// What IPAM gave: addresses, routes, DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamResult {
    /// Addresses.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

impl IpamResult {
    /// Parses an IPAM plugin's stdout (any supported version).
    pub fn parse(out: &[u8], plugin: &str) -> CniResult<Self> {
        let r: IpamResult = serde_json::from_slice(out).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("decoding the result of IPAM plugin {plugin}"),
                e.to_string(),
            )
        })?;
        for ip in &r.ips {
            ip.address.parse::<IpNet>().map_err(|e| {
                CniError::new(
                    code::DECODE,
                    format!("IPAM plugin {plugin} returned a bad address"),
                    e,
                )
            })?;
        }
        for rt in &r.routes {
            rt.dst.parse::<IpNet>().map_err(|e| {
                CniError::new(
                    code::DECODE,
                    format!("IPAM plugin {plugin} returned a bad route"),
                    e,
                )
            })?;
        }
        Ok(r)
    }
}

/// The interface fastpath reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name in the pod.
    pub name: String,
    /// MAC (none for a DPDK VF).
    pub mac: Option<String>,
    /// MTU (none for a DPDK VF).
    pub mtu: Option<u32>,
    /// Netns path (none for a DPDK VF, which stays in the host).
    pub sandbox: Option<String>,
    /// The VF's PCI address.
    pub pci_id: String,
}

/// A full ADD result before version shaping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    /// The one interface.
    pub interface: Interface,
    /// From IPAM.
    pub ipam: IpamResult,
    /// DNS from the config (IPAM's wins when it has one).
    pub dns: Option<Value>,
}

fn is_v1(version: &str) -> bool {
    version.starts_with("1.")
}

/// Shapes a result for `version`: `ips[].version` before 1.0, `mtu` and
/// `pciID` on the interface from 1.1.
pub fn shape(r: &AddResult, version: &str) -> Value {
    let mut iface = serde_json::Map::new();
    iface.insert("name".into(), json!(r.interface.name));
    if let Some(m) = &r.interface.mac {
        iface.insert("mac".into(), json!(m));
    }
    if version == "1.1.0"
        && let Some(m) = r.interface.mtu
    {
        iface.insert("mtu".into(), json!(m));
    }
    if let Some(s) = &r.interface.sandbox {
        iface.insert("sandbox".into(), json!(s));
    }
    if version == "1.1.0" {
        iface.insert("pciID".into(), json!(r.interface.pci_id));
    }
    let ips: Vec<Value> = r
        .ipam
        .ips
        .iter()
        .map(|ip| {
            let mut o = serde_json::Map::new();
            if !is_v1(version) {
                let v4 = ip.address.parse::<IpNet>().is_ok_and(|n| n.ip.is_ipv4());
                o.insert("version".into(), json!(if v4 { "4" } else { "6" }));
            }
            o.insert("interface".into(), json!(0));
            o.insert("address".into(), json!(ip.address));
            if let Some(g) = &ip.gateway {
                o.insert("gateway".into(), json!(g));
            }
            Value::Object(o)
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("cniVersion".into(), json!(version));
    out.insert("interfaces".into(), json!([Value::Object(iface)]));
    if !ips.is_empty() {
        out.insert("ips".into(), json!(ips));
    }
    if !r.ipam.routes.is_empty() {
        out.insert("routes".into(), json!(r.ipam.routes));
    }
    let dns = r.ipam.dns.clone().or_else(|| r.dns.clone());
    out.insert("dns".into(), dns.unwrap_or_else(|| json!({})));
    Value::Object(out)
}

/// The interface in a prevResult named `ifname`, with its sandbox and MAC.
pub fn prev_interface(prev: &Value, ifname: &str) -> Option<(Option<String>, Option<String>)> {
    prev.get("interfaces")?
        .as_array()?
        .iter()
        .find(|i| i.get("name").and_then(Value::as_str) == Some(ifname))
        .map(|i| {
            let s = |k: &str| i.get(k).and_then(Value::as_str).map(str::to_string);
            (s("sandbox"), s("mac"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interface: Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                sandbox: Some("/run/netns/p".into()),
                pci_id: "0000:3b:02.1".into(),
            },
            ipam: IpamResult {
                ips: vec![IpConfig {
                    address: "10.1.0.5/24".into(),
                    gateway: Some("10.1.0.1".into()),
                }],
                routes: vec![Route {
                    dst: "0.0.0.0/0".into(),
                    gw: None,
                }],
                dns: None,
            },
            dns: Some(json!({"nameservers": ["10.1.0.53"]})),
        }
    }

    #[test]
    fn results_are_shaped_per_version() {
        let cases = [
            ("0.3.1", true, false),
            ("0.4.0", true, false),
            ("1.0.0", false, false),
            ("1.1.0", false, true),
        ];
        for (v, has_ip_version, has_11) in cases {
            let out = shape(&sample(), v);
            assert_eq!(out["cniVersion"], v);
            assert_eq!(
                out["ips"][0].get("version").is_some(),
                has_ip_version,
                "{v}"
            );
            assert_eq!(out["ips"][0]["interface"], 0);
            let iface = &out["interfaces"][0];
            assert_eq!(iface.get("pciID").is_some(), has_11, "{v}");
            assert_eq!(iface.get("mtu").is_some(), has_11, "{v}");
            assert_eq!(iface["sandbox"], "/run/netns/p");
            assert_eq!(out["dns"]["nameservers"][0], "10.1.0.53");
        }
    }

    #[test]
    fn ipam_output_with_bad_addresses_is_a_decode_error() {
        let e = IpamResult::parse(br#"{"ips":[{"address":"10.0.0.1"}]}"#, "x").unwrap_err();
        assert_eq!(e.code, 6);
        let ok = IpamResult::parse(
            br#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24","gateway":"10.0.0.1"}],"dns":{}}"#,
            "host-local",
        )
        .unwrap();
        assert_eq!(ok.ips[0].address, "10.0.0.2/24");
    }

    #[test]
    fn the_interface_is_found_in_a_prev_result() {
        let prev = shape(&sample(), "1.0.0");
        assert_eq!(
            prev_interface(&prev, "net1"),
            Some((
                Some("/run/netns/p".into()),
                Some("02:00:00:00:00:01".into())
            ))
        );
        assert_eq!(prev_interface(&prev, "net2"), None);
    }
}
