//! VF admin MACs through the PF (rtnetlink `IFLA_VFINFO_LIST`): the only
//! netlink provisioning needs. Blocking: each call runs a private
//! current-thread runtime, so callers inside tokio use `spawn_blocking`.

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkVfInfo, VfInfo, VfInfoMac};
use rtnetlink::LinkUnspec;

/// Reading or setting a VF admin MAC failed.
#[derive(Debug, thiserror::Error)]
pub enum VfMacError {
    /// The netlink socket or runtime could not be set up.
    #[error("opening rtnetlink: {0}")]
    Connect(std::io::Error),
    /// The PF netdev was not found.
    #[error("PF {pf} not found")]
    NoPf {
        /// PF netdev name.
        pf: String,
    },
    /// Listing the PF's VF info failed.
    #[error("reading VF info of {pf}: {error}")]
    Get {
        /// PF netdev name.
        pf: String,
        /// The netlink error.
        error: rtnetlink::Error,
    },
    /// Setting a VF's MAC failed.
    #[error("setting admin MAC of VF {vf} on {pf}: {error}")]
    Set {
        /// PF netdev name.
        pf: String,
        /// VF index.
        vf: u32,
        /// The netlink error.
        error: rtnetlink::Error,
    },
}

fn block_on<F: std::future::Future>(
    f: impl FnOnce(rtnetlink::Handle) -> F,
) -> Result<F::Output, VfMacError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(VfMacError::Connect)?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(VfMacError::Connect)?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        Ok(out)
    })
}

/// The admin MAC of every VF of PF netdev `pf`, by VF index.
pub fn admin_macs(pf: &str) -> Result<Vec<(u32, [u8; 6])>, VfMacError> {
    let name = pf.to_string();
    let msg = block_on(|h| async move {
        h.link()
            .get()
            .match_name(name)
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::Vf])
            .execute()
            .try_next()
            .await
    })?
    .map_err(|error| VfMacError::Get {
        pf: pf.to_string(),
        error,
    })?
    .ok_or_else(|| VfMacError::NoPf { pf: pf.to_string() })?;
    let mut out = Vec::new();
    for attr in msg.attributes {
        let LinkAttribute::VfInfoList(list) = attr else {
            continue;
        };
        for LinkVfInfo(infos) in list {
            for info in infos {
                if let VfInfo::Mac(m) = info {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&m.mac[..6]);
                    out.push((m.vf_id, mac));
                }
            }
        }
    }
    Ok(out)
}

/// Pins VF `vf`'s admin MAC through PF netdev `pf`.
pub fn set_admin_mac(pf: &str, vf: u32, mac: [u8; 6]) -> Result<(), VfMacError> {
    let name = pf.to_string();
    block_on(|h| async move {
        let msg = LinkUnspec::new_with_name(&name)
            .append_extra_attribute(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
                VfInfo::Mac(VfInfoMac::new(vf, &mac)),
            ])]))
            .build();
        h.link().set(msg).execute().await
    })?
    .map_err(|error| VfMacError::Set {
        pf: pf.to_string(),
        vf,
        error,
    })
}
