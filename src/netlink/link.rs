//! Links: lookup by name or index, MAC, MTU, up/down, and the one-message
//! move into another namespace with a rename.

use std::os::fd::RawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::{Netlink, NetlinkError, Result};

/// What fastpath needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Current hardware address, `aa:bb:...` lower-case.
    pub mac: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// IFF_UP is set.
    pub up: bool,
}

/// Formats a hardware address as the kernel prints it.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive); `None` when malformed.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn link_from(msg: LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: None,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = Some(format_mac(&a)),
            LinkAttribute::Mtu(m) => link.mtu = Some(m),
            _ => {}
        }
    }
    link
}

impl Link {
    /// A link known only by its name (ifindex 0). Requests that change it
    /// address it by IFLA_IFNAME, which the kernel resolves under the same
    /// lock as the change: one request instead of a lookup and a change.
    /// Not for [`Netlink::rename`] or [`Netlink::move_to_netns`], whose
    /// IFLA_IFNAME is the new name.
    pub fn named(name: &str) -> Link {
        Link {
            index: 0,
            name: name.to_string(),
            mac: None,
            mtu: None,
            up: false,
        }
    }
}

fn by_index(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// The ifindex of `link`. Renames and moves carry the new name in
/// IFLA_IFNAME, so a [`Link::named`] there would name the wrong device.
fn indexed(link: &Link) -> Result<u32> {
    match link.index {
        0 => Err(NetlinkError::NoSuchLink(format!(
            "{} (known by name only: look it up first)",
            link.name
        ))),
        i => Ok(i),
    }
}

/// A request for `link`: by ifindex, or by name for [`Link::named`].
fn addressing(link: &Link) -> LinkMessage {
    let mut msg = by_index(link.index);
    if link.index == 0 {
        msg.attributes
            .push(LinkAttribute::IfName(link.name.clone()));
    }
    msg
}

impl Netlink {
    /// The link named `name`; `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.one_link(msg, &|| format!("looking up interface {name}"))
    }

    /// The link with ifindex `index`; `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.one_link(by_index(index), &|| {
            format!("looking up interface index {index}")
        })
    }

    fn one_link(&mut self, msg: LinkMessage, what: &dyn Fn() -> String) -> Result<Option<Link>> {
        match self.get(RouteNetlinkMessage::GetLink(msg), false, what) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(nix::errno::Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link named `name`, or [`NetlinkError::NoSuchLink`].
    pub fn require_link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// Sets IFF_UP (`up`) or clears it.
    pub fn set_up(&mut self, link: &Link, up: bool) -> Result<()> {
        let mut msg = addressing(link);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        let name = &link.name;
        self.change(RouteNetlinkMessage::SetLink(msg), &|| {
            format!("setting {name} {}", if up { "up" } else { "down" })
        })
    }

    /// Sets the hardware address.
    pub fn set_mac(&mut self, link: &Link, mac: [u8; 6]) -> Result<()> {
        let mut msg = addressing(link);
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        let name = &link.name;
        self.change(RouteNetlinkMessage::SetLink(msg), &|| {
            format!("setting MAC {} on {name}", format_mac(&mac))
        })
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<()> {
        let mut msg = addressing(link);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        let name = &link.name;
        self.change(RouteNetlinkMessage::SetLink(msg), &|| {
            format!("setting MTU {mtu} on {name}")
        })
    }

    /// Renames a link (it must be down).
    pub fn rename(&mut self, link: &Link, new_name: &str) -> Result<()> {
        let mut msg = by_index(indexed(link)?);
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        let name = &link.name;
        self.change(RouteNetlinkMessage::SetLink(msg), &|| {
            format!("renaming {name} to {new_name}")
        })
    }

    /// Moves a link into the namespace `netns_fd` and names it `new_name`
    /// there, in one RTM_NEWLINK: the kernel changes the namespace and then
    /// renames, so the link is never visible under a temporary name. Not
    /// atomic, though: if `new_name` is taken there, the rename fails
    /// (EEXIST) with the link already moved under its old name. A
    /// `new_name` with `%d` lets the kernel pick a free `dev0`, `dev1`, ...
    pub fn move_to_netns(&mut self, link: &Link, netns_fd: RawFd, new_name: &str) -> Result<()> {
        let mut msg = by_index(indexed(link)?);
        msg.attributes.push(LinkAttribute::NetNsFd(netns_fd));
        msg.attributes
            .push(LinkAttribute::IfName(new_name.to_string()));
        let name = &link.name;
        self.change(RouteNetlinkMessage::NewLink(msg), &|| {
            format!("moving {name} to another netns as {new_name}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip_and_malformed_ones_are_refused() {
        let m = parse_mac("02:AB:00:00:00:01").unwrap();
        assert_eq!(format_mac(&m), "02:ab:00:00:00:01");
        for bad in [
            "",
            "02:ab",
            "02:ab:00:00:00:01:02",
            "0g:00:00:00:00:00",
            "2:ab:0:0:0:1",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn loopback_is_found_by_name_and_index() {
        let mut nl = Netlink::open().unwrap();
        let lo = nl.require_link("lo").unwrap();
        assert_eq!(lo.name, "lo");
        assert_eq!(nl.link_by_index(lo.index).unwrap().unwrap().name, "lo");
        assert!(nl.link_by_name("fp-nonexistent0").unwrap().is_none());
    }

    #[test]
    fn a_link_known_by_name_is_changed_by_name_but_never_moved_or_renamed() {
        let mut nl = Netlink::open().unwrap();
        // lo is up already: setting it up by name is a real, harmless request.
        nl.set_up(&Link::named("lo"), true).unwrap();
        let err = nl
            .set_up(&Link::named("fp-nonexistent0"), true)
            .unwrap_err();
        assert_eq!(err.errno(), Some(nix::errno::Errno::ENODEV), "{err}");
        // Here IFLA_IFNAME would be the new name: refused before any request.
        for r in [
            nl.rename(&Link::named("lo"), "lo2"),
            nl.move_to_netns(&Link::named("lo"), 0, "lo2"),
        ] {
            assert!(matches!(r, Err(NetlinkError::NoSuchLink(_))), "{r:?}");
        }
        assert!(nl.link_by_name("lo").unwrap().is_some());
    }
}
