//! PF-side VF attributes (IFLA_VFINFO_LIST on the PF): admin MAC, VLAN
//! with QoS and protocol, spoof check, trust, TX rates and link state, and
//! reading them back with the VF extension mask.
//!
//! Each attribute is set in its own request so that a refusal names the
//! attribute and the PF driver that refused it (igb, for one, refuses
//! 802.1ad, link_state and min_tx_rate).

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan, VfLinkState, VfVlan, VfVlanInfo,
    VlanProtocol,
};
use serde::{Deserialize, Serialize};

use super::link::{Link, format_mac};
use super::{Netlink, NetlinkError, Result};

/// The PF a VF hangs off, as netlink and error messages need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pf {
    /// PF netdev name.
    pub name: String,
    /// PF driver, for error messages ("PF ens1f0 (driver igb) refused ...").
    pub driver: String,
}

/// VLAN tag protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VlanProto {
    /// 802.1Q (C-tag).
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    /// 802.1ad (S-tag, QinQ).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

/// VF link state as the PF enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Follows the PF's link.
    Auto,
    /// Always up.
    Enable,
    /// Always down.
    Disable,
}

/// The PF's view of one VF: what is saved before changing it and restored
/// after. Fields the PF does not report are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfState {
    /// Admin MAC.
    pub mac: Option<String>,
    /// VLAN id (0 = none).
    pub vlan: Option<u32>,
    /// VLAN priority.
    pub qos: Option<u32>,
    /// VLAN protocol.
    pub proto: Option<VlanProto>,
    /// Spoof checking.
    pub spoofchk: Option<bool>,
    /// Trusted VF.
    pub trust: Option<bool>,
    /// Minimum TX rate, Mbps.
    pub min_tx_rate: Option<u32>,
    /// Maximum TX rate, Mbps.
    pub max_tx_rate: Option<u32>,
    /// Link state.
    pub link_state: Option<LinkState>,
}

/// One PF-side change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VfSetting {
    /// Admin MAC.
    Mac([u8; 6]),
    /// VLAN, QoS and protocol together (the kernel takes them together).
    Vlan {
        /// VLAN id.
        vlan: u32,
        /// Priority.
        qos: u32,
        /// Protocol.
        proto: VlanProto,
    },
    /// Spoof checking.
    SpoofChk(bool),
    /// Trust.
    Trust(bool),
    /// Min and max TX rate, Mbps (set together, as the kernel wants).
    Rate {
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// Link state.
    LinkState(LinkState),
}

impl VfSetting {
    /// How the setting reads in an error ("vlan 100 qos 2 proto 802.1ad").
    pub fn describe(&self) -> String {
        match self {
            VfSetting::Mac(m) => format!("mac {}", format_mac(m)),
            VfSetting::Vlan { vlan, qos, proto } => {
                let p = match proto {
                    VlanProto::Dot1Q => "802.1q",
                    VlanProto::Dot1Ad => "802.1ad",
                };
                format!("vlan {vlan} qos {qos} proto {p}")
            }
            VfSetting::SpoofChk(b) => format!("spoofchk {}", on_off(*b)),
            VfSetting::Trust(b) => format!("trust {}", on_off(*b)),
            VfSetting::Rate { min, max } => format!("min_tx_rate {min} max_tx_rate {max}"),
            VfSetting::LinkState(s) => format!("link_state {s:?}").to_lowercase(),
        }
    }

    fn to_info(&self, vf: u32) -> VfInfo {
        match *self {
            VfSetting::Mac(m) => VfInfo::Mac(VfInfoMac::new(vf, &m)),
            VfSetting::Vlan {
                vlan,
                qos,
                proto: VlanProto::Dot1Q,
            } => VfInfo::Vlan(VfInfoVlan::new(vf, vlan, qos)),
            VfSetting::Vlan { vlan, qos, proto } => {
                let p = match proto {
                    VlanProto::Dot1Q => VlanProtocol::Ieee8021Q,
                    VlanProto::Dot1Ad => VlanProtocol::Ieee8021Ad,
                };
                VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(vf, vlan, qos, p))])
            }
            VfSetting::SpoofChk(b) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, b)),
            VfSetting::Trust(b) => VfInfo::Trust(VfInfoTrust::new(vf, b)),
            VfSetting::Rate { min, max } => VfInfo::Rate(VfInfoRate::new(vf, min, max)),
            VfSetting::LinkState(s) => VfInfo::LinkState(VfInfoLinkState::new(
                vf,
                match s {
                    LinkState::Auto => VfLinkState::Auto,
                    LinkState::Enable => VfLinkState::Enable,
                    LinkState::Disable => VfLinkState::Disable,
                },
            )),
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// A PF-side VF request failed.
#[derive(Debug, thiserror::Error)]
pub enum VfError {
    /// The PF netdev is not in this namespace.
    #[error("PF {pf} (driver {driver}) not found: {source}")]
    PfMissing {
        /// PF name.
        pf: String,
        /// PF driver.
        driver: String,
        /// The lookup's error.
        source: NetlinkError,
    },
    /// The PF driver refused a setting.
    #[error("PF {pf} (driver {driver}) refused {setting} on VF {vf}: {source}")]
    Refused {
        /// PF name.
        pf: String,
        /// PF driver.
        driver: String,
        /// VF index.
        vf: u32,
        /// The setting, as text.
        setting: String,
        /// The kernel's answer.
        source: NetlinkError,
    },
    /// The PF did not report the VF (wrong index, or no VFs).
    #[error("PF {pf} (driver {driver}) reports no VF {vf}")]
    NoSuchVf {
        /// PF name.
        pf: String,
        /// PF driver.
        driver: String,
        /// VF index.
        vf: u32,
    },
    /// Reading the VF list failed.
    #[error("reading VF {vf} of PF {pf}: {source}")]
    Read {
        /// PF name.
        pf: String,
        /// VF index.
        vf: u32,
        /// The error.
        source: NetlinkError,
    },
}

fn state_from(info: &LinkVfInfo) -> (Option<u32>, VfState) {
    let mut id = None;
    let mut st = VfState::default();
    for a in &info.0 {
        match a {
            VfInfo::Mac(m) => {
                id = Some(m.vf_id);
                st.mac = Some(format_mac(&m.mac[..6]));
            }
            VfInfo::Vlan(v) => {
                st.vlan = Some(v.vlan_id);
                st.qos = Some(v.qos);
            }
            VfInfo::VlanList(list) => {
                for v in list.iter().filter_map(|v| match v {
                    VfVlan::Info(i) => Some(i),
                    _ => None,
                }) {
                    st.vlan = Some(v.vlan_id);
                    st.qos = Some(v.qos);
                    st.proto = Some(match v.protocol {
                        VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                        _ => VlanProto::Dot1Q,
                    });
                }
            }
            VfInfo::SpoofCheck(s) => st.spoofchk = Some(s.enabled),
            VfInfo::Trust(t) => st.trust = Some(t.enabled),
            VfInfo::Rate(r) => {
                st.min_tx_rate = Some(r.min_tx_rate);
                st.max_tx_rate = Some(r.max_tx_rate);
            }
            VfInfo::LinkState(l) => {
                st.link_state = match l.state {
                    VfLinkState::Auto => Some(LinkState::Auto),
                    VfLinkState::Enable => Some(LinkState::Enable),
                    VfLinkState::Disable => Some(LinkState::Disable),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    (id, st)
}

/// The settings that bring `current` back to `saved`, for the fields the
/// PF reported in `saved` and that `changed` touched.
pub fn restore_settings(saved: &VfState, changed: &[VfSetting]) -> Vec<VfSetting> {
    let mut out = Vec::new();
    for c in changed {
        let back = match c {
            VfSetting::Mac(_) => saved
                .mac
                .as_deref()
                .and_then(super::link::parse_mac)
                .map(VfSetting::Mac),
            VfSetting::Vlan { .. } => Some(VfSetting::Vlan {
                vlan: saved.vlan.unwrap_or(0),
                qos: saved.qos.unwrap_or(0),
                proto: saved.proto.unwrap_or_default(),
            }),
            VfSetting::SpoofChk(_) => saved.spoofchk.map(VfSetting::SpoofChk),
            VfSetting::Trust(_) => saved.trust.map(VfSetting::Trust),
            VfSetting::Rate { .. } => Some(VfSetting::Rate {
                min: saved.min_tx_rate.unwrap_or(0),
                max: saved.max_tx_rate.unwrap_or(0),
            }),
            VfSetting::LinkState(_) => saved.link_state.map(VfSetting::LinkState),
        };
        out.extend(back);
    }
    out
}

impl Netlink {
    fn pf_link(&mut self, pf: &Pf) -> Result<Link, VfError> {
        self.require_link(&pf.name)
            .map_err(|source| VfError::PfMissing {
                pf: pf.name.clone(),
                driver: pf.driver.clone(),
                source,
            })
    }

    /// The PF's view of VF `vf`.
    pub fn vf_state(&mut self, pf: &Pf, vf: u32) -> Result<VfState, VfError> {
        let link = self.pf_link(pf)?;
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
        let answers = self
            .get(RouteNetlinkMessage::GetLink(msg), false, &|| {
                format!("reading VFs of {}", pf.name)
            })
            .map_err(|source| VfError::Read {
                pf: pf.name.clone(),
                vf,
                source,
            })?;
        for m in answers {
            let RouteNetlinkMessage::NewLink(l) = m else {
                continue;
            };
            for a in l.attributes {
                if let LinkAttribute::VfInfoList(list) = a {
                    for info in &list {
                        if let (Some(id), st) = state_from(info)
                            && id == vf
                        {
                            return Ok(st);
                        }
                    }
                }
            }
        }
        Err(VfError::NoSuchVf {
            pf: pf.name.clone(),
            driver: pf.driver.clone(),
            vf,
        })
    }

    /// Applies one PF-side setting to VF `vf`.
    pub fn set_vf(&mut self, pf: &Pf, vf: u32, setting: &VfSetting) -> Result<(), VfError> {
        let link = self.pf_link(pf)?;
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        msg.attributes
            .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
                setting.to_info(vf),
            ])]));
        self.change(RouteNetlinkMessage::SetLink(msg), &|| {
            format!("setting {} on VF {vf} of {}", setting.describe(), pf.name)
        })
        .map_err(|source| VfError::Refused {
            pf: pf.name.clone(),
            driver: pf.driver.clone(),
            vf,
            setting: setting.describe(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_puts_back_only_what_was_changed() {
        let saved = VfState {
            mac: Some("00:00:00:00:00:00".into()),
            vlan: Some(0),
            qos: Some(0),
            spoofchk: Some(true),
            trust: Some(false),
            ..Default::default()
        };
        let changed = [
            VfSetting::Vlan {
                vlan: 100,
                qos: 3,
                proto: VlanProto::Dot1Ad,
            },
            VfSetting::Trust(true),
        ];
        assert_eq!(
            restore_settings(&saved, &changed),
            vec![
                VfSetting::Vlan {
                    vlan: 0,
                    qos: 0,
                    proto: VlanProto::Dot1Q
                },
                VfSetting::Trust(false)
            ]
        );
    }

    #[test]
    fn settings_describe_themselves_as_the_config_names_them() {
        assert_eq!(
            VfSetting::LinkState(LinkState::Disable).describe(),
            "link_state disable"
        );
        assert_eq!(
            VfSetting::Vlan {
                vlan: 5,
                qos: 1,
                proto: VlanProto::Dot1Ad
            }
            .describe(),
            "vlan 5 qos 1 proto 802.1ad"
        );
    }

    #[test]
    fn a_pf_without_vf_support_is_refused_with_its_driver_named() {
        // lo has no VFs: setting one must fail and say who refused.
        let mut nl = Netlink::open().unwrap();
        let pf = Pf {
            name: "lo".into(),
            driver: "loopback".into(),
        };
        let e = nl.set_vf(&pf, 0, &VfSetting::Trust(true)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("PF lo (driver loopback) refused trust on"),
            "{e}"
        );
        assert!(matches!(nl.vf_state(&pf, 0), Err(VfError::NoSuchVf { .. })));
    }
}
