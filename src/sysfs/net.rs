//! A network interface's sysfs attributes (`net/<ifname>/...`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Result;
use super::at::AttrDir;
use super::pci::optional;

/// ARPHRD_ETHER, the `type` of an Ethernet netdev.
pub const ARPHRD_ETHER: u16 = 1;
/// ARPHRD_INFINIBAND, the `type` of an IPoIB netdev.
pub const ARPHRD_INFINIBAND: u16 = 32;

/// Link layer of a netdev, named as netlink names the encapsulation (the
/// values the reference config's `linkTypes` selector uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkType {
    /// Ethernet (`ether`).
    Ether,
    /// InfiniBand (`infiniband`).
    Infiniband,
}

impl LinkType {
    /// From the ARPHRD value in `net/<if>/type`; `None` for other link types.
    pub fn from_arphrd(t: u16) -> Option<Self> {
        match t {
            ARPHRD_ETHER => Some(Self::Ether),
            ARPHRD_INFINIBAND => Some(Self::Infiniband),
            _ => None,
        }
    }

    /// The netlink encapsulation name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ether => "ether",
            Self::Infiniband => "infiniband",
        }
    }
}

/// True for a name the kernel would accept as an interface name: 1-15
/// bytes, no '/', no whitespace, no ':', not "." or "..".
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// A handle on one netdev's sysfs directory.
#[derive(Debug, Clone)]
pub struct NetDev {
    name: String,
    dir: AttrDir,
}

impl NetDev {
    pub(super) fn new(name: &str, dir: PathBuf) -> Self {
        Self::at(name, AttrDir::new(dir))
    }

    pub(super) fn at(name: &str, dir: AttrDir) -> Self {
        Self {
            name: name.to_string(),
            dir,
        }
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its sysfs directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Permanent-or-current hardware `address`, as the kernel prints it.
    pub fn address(&self) -> Result<Option<String>> {
        optional(self.dir.read("address"))
    }

    /// ARPHRD `type`.
    pub fn arphrd(&self) -> Result<Option<u16>> {
        optional(self.dir.read_parsed("type", |s| s.parse().ok()))
    }

    /// Link type from `type`; `None` when absent or neither Ethernet nor IB.
    pub fn link_type(&self) -> Result<Option<LinkType>> {
        Ok(self.arphrd()?.and_then(LinkType::from_arphrd))
    }

    /// RFC 2863 `operstate` (`up`, `down`, `lowerlayerdown`, ...).
    pub fn operstate(&self) -> Result<Option<String>> {
        optional(self.dir.read("operstate"))
    }

    /// `mtu`.
    pub fn mtu(&self) -> Result<Option<u32>> {
        optional(self.dir.read_parsed("mtu", |s| s.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_kernel_rules() {
        for ok in ["eth0", "ens1f0v12", "net1", "a", "123456789012345"] {
            assert!(valid_ifname(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:1", "1234567890123456", "é"] {
            assert!(!valid_ifname(bad), "{bad}");
        }
    }
}
