//! CHECK: the interface is in the netns with the recorded name, MAC and
//! MTU, and the IPAM plugin agrees.

use serde_json::Value;

use super::config::Config;
use super::env::CniEnv;
use super::error::{CniError, CniResult, code};
use super::ipam;
use super::records;
use crate::netlink::Netlink;
use crate::netns::NetNs;

/// Runs CHECK.
pub fn check(env: &CniEnv, conf: &Config) -> CniResult<()> {
    if conf.cni_version == "0.3.1" {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "CHECK needs cniVersion 0.4.0 or later",
            format!("config has {}", conf.cni_version),
        ));
    }
    let rec = records::find_attachment(&env.state_dir, &env.container_id, &env.ifname)?
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!("no attachment {}/{}", env.container_id, env.ifname),
                "fastpath has no record of this ADD",
            )
        })?;
    if !rec.dpdk {
        let iface = rec
            .result
            .as_ref()
            .and_then(|r| r.get("interfaces"))
            .and_then(|i| i.get(0))
            .cloned()
            .unwrap_or(Value::Null);
        let want_mac = iface.get("mac").and_then(Value::as_str).map(str::to_string);
        let want_mtu = conf.mtu.or(rec.original.mtu);
        let netns = env.netns.as_deref().unwrap_or(std::path::Path::new(""));
        let pod = NetNs::open(netns).map_err(|e| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                "opening the pod netns",
                e.to_string(),
            )
        })?;
        let ifname = env.ifname.clone();
        let link = Netlink::open_in(&pod)
            .and_then(|mut nl| nl.link_by_name(&ifname))
            .map_err(|e| CniError::kernel("looking up the interface", e))?
            .ok_or_else(|| {
                CniError::new(
                    code::KERNEL,
                    format!(
                        "interface {} is missing from netns {}",
                        env.ifname,
                        netns.display()
                    ),
                    format!("VF {}", rec.pci),
                )
            })?;
        if want_mac.is_some() && link.mac != want_mac {
            return Err(CniError::new(
                code::KERNEL,
                format!("interface {} has MAC {:?}", env.ifname, link.mac),
                format!("expected {want_mac:?}"),
            ));
        }
        if want_mtu.is_some() && link.mtu != want_mtu {
            return Err(CniError::new(
                code::KERNEL,
                format!("interface {} has MTU {:?}", env.ifname, link.mtu),
                format!("expected {want_mtu:?}"),
            ));
        }
    }
    ipam::check(conf, env)
}
