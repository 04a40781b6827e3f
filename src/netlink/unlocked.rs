//! Link reads the kernel answers without RTNL: the SIOCGIF* ioctls on the
//! netlink socket (any socket's ioctl reaches the device layer of the
//! socket's namespace). They look the device up under RCU, whereas
//! RTM_GETLINK waits for RTNL: when many pods start at once every ADD's
//! netns move holds RTNL for ~17 ms, and each extra request queued behind
//! them costs a wake-up and a turn.

use std::io;
use std::os::fd::AsRawFd;

use super::link::{Link, format_mac};
use super::{Netlink, NetlinkError, Result};

/// ARPHRD_ETHER: the only hardware type whose address SIOCGIFHWADDR
/// returns whole (an InfiniBand address has 20 bytes, the ioctl 14).
const ARPHRD_ETHER: u16 = 1;

/// An `ifreq` naming `name`; `None` when no interface can have that name.
fn request(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: `ifreq` is a C struct of integers, byte arrays and a union of
    // them; all-zero bytes are a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Some(req)
}

impl Netlink {
    fn ifreq_ioctl(&self, cmd: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: the fd is this socket's, open for our lifetime; `req` is a
        // valid, NUL-terminated `ifreq` that the SIOCGIF* requests read the
        // name from and write one union member of, within its size.
        let r = unsafe { libc::ioctl(self.socket.as_raw_fd(), cmd, req as *mut libc::ifreq) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The Ethernet link named `name` (index, MAC, MTU, up) read without
    /// RTNL; `None` when there is none. Other link types (and names the
    /// ioctls cannot carry) are read with RTM_GETLINK.
    pub fn link_by_name_unlocked(&mut self, name: &str) -> Result<Option<Link>> {
        let Some(mut req) = request(name) else {
            return self.link_by_name(name);
        };
        let err = |what: &str, e: io::Error| NetlinkError::Kernel {
            what: format!("{what} of {name}"),
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        match self.ifreq_ioctl(libc::SIOCGIFINDEX, &mut req) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(err("SIOCGIFINDEX", e)),
        }
        // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote ifru_ifindex.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        self.ifreq_ioctl(libc::SIOCGIFHWADDR, &mut req)
            .map_err(|e| err("SIOCGIFHWADDR", e))?;
        // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote ifru_hwaddr.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hw.sa_family != ARPHRD_ETHER {
            return self.link_by_name(name);
        }
        let mac: Vec<u8> = hw.sa_data[..6].iter().map(|b| *b as u8).collect();
        self.ifreq_ioctl(libc::SIOCGIFMTU, &mut req)
            .map_err(|e| err("SIOCGIFMTU", e))?;
        // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote ifru_mtu.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        self.ifreq_ioctl(libc::SIOCGIFFLAGS, &mut req)
            .map_err(|e| err("SIOCGIFFLAGS", e))?;
        // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote ifru_flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        Ok(Some(Link {
            index: u32::try_from(index).unwrap_or(0),
            name: name.to_string(),
            mac: Some(format_mac(&mac)),
            mtu: u32::try_from(mtu).ok(),
            up: flags & libc::IFF_UP as libc::c_short != 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::test_ip::ip_ok;

    #[test]
    fn unlocked_reads_agree_with_rtm_getlink() {
        let mut nl = Netlink::open().unwrap();
        // lo is not Ethernet: read through RTM_GETLINK, the same answer.
        assert_eq!(
            nl.link_by_name_unlocked("lo").unwrap(),
            nl.link_by_name("lo").unwrap()
        );
        assert_eq!(nl.link_by_name_unlocked("fp-nonexistent0").unwrap(), None);
        // A name no ioctl can carry goes to RTM_GETLINK, which refuses it.
        assert!(
            nl.link_by_name_unlocked("a-name-longer-than-ifnamsiz")
                .is_err()
        );
    }

    #[test]
    fn an_ethernet_link_reads_the_same_both_ways() {
        let (a, b) = (
            format!("fpul{}a", std::process::id()),
            format!("fpul{}b", std::process::id()),
        );
        assert!(ip_ok(&[
            "link", "add", &a, "type", "veth", "peer", "name", &b
        ]));
        let set = ip_ok(&[
            "link",
            "set",
            &a,
            "mtu",
            "1400",
            "address",
            "02:12:34:56:78:9a",
            "up",
        ]);
        let mut nl = Netlink::open().unwrap();
        let (fast, slow) = (nl.link_by_name_unlocked(&a), nl.link_by_name(&a));
        let _ = ip_ok(&["link", "del", &a]);
        assert!(set);
        let fast = fast.unwrap().unwrap();
        assert_eq!(fast, slow.unwrap().unwrap());
        assert_eq!(fast.mac.as_deref(), Some("02:12:34:56:78:9a"));
        assert_eq!((fast.mtu, fast.up), (Some(1400), true));
    }
}
