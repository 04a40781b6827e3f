//! Addresses and routes on a link.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, Result};
use crate::netlink::link::Link;

fn family(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn address_message(link: &Link, ip: IpAddr, prefix: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(&ip);
    msg.header.prefix_len = prefix;
    msg.header.index = link.index;
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    msg
}

impl Netlink {
    /// Adds `ip/prefix` to a link.
    pub fn add_address(&mut self, link: &Link, ip: IpAddr, prefix: u8) -> Result<()> {
        let name = &link.name;
        self.create(
            RouteNetlinkMessage::NewAddress(address_message(link, ip, prefix)),
            &|| format!("adding address {ip}/{prefix} to {name}"),
        )
    }

    /// Removes `ip/prefix` from a link.
    pub fn del_address(&mut self, link: &Link, ip: IpAddr, prefix: u8) -> Result<()> {
        let name = &link.name;
        self.change(
            RouteNetlinkMessage::DelAddress(address_message(link, ip, prefix)),
            &|| format!("removing address {ip}/{prefix} from {name}"),
        )
    }

    /// Every (address, prefix) on a link.
    pub fn addresses(&mut self, link: &Link) -> Result<Vec<(IpAddr, u8)>> {
        let name = &link.name;
        let answers = self.get(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            true,
            &|| format!("listing addresses of {name}"),
        )?;
        let mut out = Vec::new();
        for m in answers {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != link.index {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    out.push((*ip, a.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// Adds a route to `dst/prefix` out of `link`, through `gw` if given.
    pub fn add_route(
        &mut self,
        link: &Link,
        dst: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(&dst);
        msg.header.destination_prefix_length = prefix;
        msg.header.table = libc::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        }
        if let Some(gw) = gw {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(link.index));
        let name = &link.name;
        let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
        self.create(RouteNetlinkMessage::NewRoute(msg), &|| {
            format!("adding route {dst}/{prefix}{via} on {name}")
        })
    }
}
