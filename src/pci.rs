//! PCI identifiers: the strictly parsed address that is the only way a
//! device path is ever formed, and the vendor/device id pair.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A PCI function address in the kernel's canonical form `dddd:bb:dd.f`.
///
/// Parsing is strict (exact field widths, hex digits only, device <= 0x1f,
/// function <= 7) because this value is joined into sysfs paths that the
/// agent writes as root: nothing else may reach a path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    domain: u16,
    bus: u8,
    device: u8,
    function: u8,
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {value:?}: {reason} (expected dddd:bb:dd.f, e.g. 0000:3b:02.1)")]
pub struct PciAddressError {
    /// The rejected input, as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl PciAddress {
    /// Builds an address from its parts; `None` if device or function is out of range.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device <= 0x1f && function <= 7).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }

    /// PCI domain (segment).
    pub fn domain(&self) -> u16 {
        self.domain
    }

    /// Bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }

    /// Device (slot) number, 0..=0x1f.
    pub fn device(&self) -> u8 {
        self.device
    }

    /// Function number, 0..=7.
    pub fn function(&self) -> u8 {
        self.function
    }

    /// Routing ID within the domain: bus << 8 | device << 3 | function.
    pub fn routing_id(&self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.device) << 3 | u16::from(self.function)
    }

    /// Which VF of `pf` this address would be, from the PF's SR-IOV
    /// `offset` and `stride` (the kernel places VF n at the PF's routing
    /// ID + offset + n x stride, in the PF's domain). `None` when it is
    /// not on that grid. Callers confirm the answer against `virtfnN`.
    pub fn vf_index_on(&self, pf: PciAddress, offset: u16, stride: u16) -> Option<u32> {
        if self.domain != pf.domain {
            return None;
        }
        let from_first = u32::from(self.routing_id())
            .checked_sub(u32::from(pf.routing_id()) + u32::from(offset))?;
        match stride {
            0 => (from_first == 0).then_some(0),
            s => (from_first % u32::from(s) == 0).then(|| from_first / u32::from(s)),
        }
    }
}

fn hex_field(s: &str, width: usize) -> Option<u32> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PciAddressError {
            value: s.to_string(),
            reason,
        };
        // Four fields split by ':' ':' '.'; splitn keeps extra separators in
        // the last part so that "0000:00:00.0:1" is rejected, not truncated.
        let mut colon = s.splitn(3, ':');
        let (Some(dom), Some(bus), Some(rest)) = (colon.next(), colon.next(), colon.next()) else {
            return Err(err("missing ':' separators"));
        };
        let Some((dev, func)) = rest.split_once('.') else {
            return Err(err("missing '.' before the function"));
        };
        let domain = hex_field(dom, 4).ok_or_else(|| err("domain must be 4 hex digits"))?;
        let bus = hex_field(bus, 2).ok_or_else(|| err("bus must be 2 hex digits"))?;
        let device = hex_field(dev, 2).ok_or_else(|| err("device must be 2 hex digits"))?;
        if device > 0x1f {
            return Err(err("device must be at most 1f"));
        }
        let function = hex_field(func, 1).ok_or_else(|| err("function must be 1 digit"))?;
        if function > 7 {
            return Err(err("function must be 0-7"));
        }
        // The narrowing casts are exact: each field was bounded by its width above.
        Ok(Self {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl fmt::Debug for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciAddress({self})")
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PciAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A PCI vendor or device id, printed as the kernel and the reference
/// config print it: four lower-case hex digits without `0x`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciId(pub u16);

impl PciId {
    /// Parses sysfs `vendor`/`device` contents (`0x8086\n`) or config values
    /// (`8086`, `0x8086`).
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(t, 16).ok().map(PciId)
    }
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl fmt::Debug for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PciId({self})")
    }
}

impl Serialize for PciId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Human names of a vendor/device pair from the bundled pci.ids database.
pub fn id_names(vendor: PciId, device: PciId) -> (Option<&'static str>, Option<&'static str>) {
    (
        crate::pci_names::vendor(vendor.0),
        crate::pci_names::device(vendor.0, device.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn vf_index_follows_offset_and_stride_across_buses() {
        let pf = a("0000:3b:00.0");
        // e810-like: offset 0x80 (bus 3c), stride 1.
        assert_eq!(a("0000:3b:10.0").vf_index_on(pf, 0x80, 1), Some(0));
        assert_eq!(a("0000:3c:00.5").vf_index_on(pf, 0x80, 1), Some(0x85));
        // igb-like: offset 0x80, stride 2.
        let igb = a("0000:01:00.0");
        assert_eq!(a("0000:01:10.0").vf_index_on(igb, 0x80, 2), Some(0));
        assert_eq!(a("0000:01:10.2").vf_index_on(igb, 0x80, 2), Some(1));
        assert_eq!(
            a("0000:01:10.1").vf_index_on(igb, 0x80, 2),
            None,
            "between VFs"
        );
        assert_eq!(
            a("0000:01:00.1").vf_index_on(igb, 0x80, 2),
            None,
            "before VF 0"
        );
        assert_eq!(
            a("0001:01:10.0").vf_index_on(igb, 0x80, 2),
            None,
            "other domain"
        );
        assert_eq!(a("0000:01:10.0").vf_index_on(igb, 0x80, 0), Some(0));
        assert_eq!(a("0000:01:10.1").vf_index_on(igb, 0x80, 0), None);
        assert_eq!(a("0000:ff:1f.7").routing_id(), 0xffff);
    }

    #[test]
    fn parses_and_prints_canonical_form() {
        let a: PciAddress = "0000:3b:02.1".parse().unwrap();
        assert_eq!(
            (a.domain(), a.bus(), a.device(), a.function()),
            (0, 0x3b, 2, 1)
        );
        assert_eq!(a.to_string(), "0000:3b:02.1");
        let upper: PciAddress = "0000:AF:1F.7".parse().unwrap();
        assert_eq!(upper.to_string(), "0000:af:1f.7");
    }

    #[test]
    fn rejects_everything_that_is_not_an_address() {
        for bad in [
            "",
            "3b:02.1",
            "0000:3b:02",
            "0000:3b:02.8",
            "0000:3b:20.0",
            "000:3b:02.1",
            "00000:3b:02.1",
            "0000:3b:2.1",
            "0000:3b:02.1 ",
            " 0000:3b:02.1",
            "0000:3b:02.1/../../x",
            "../0000:3b:02.1",
            "0000:3b:02.1:0",
            "0000:3g:02.1",
            "0000:+3:02.1",
            "0000:3b:02.-1",
            "0000:3b:02..1",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(err.value, bad);
            assert!(err.to_string().contains("dddd:bb:dd.f"), "{err}");
        }
    }

    #[test]
    fn pci_id_accepts_sysfs_and_config_forms() {
        assert_eq!(PciId::parse("0x8086\n"), Some(PciId(0x8086)));
        assert_eq!(PciId::parse("15b3"), Some(PciId(0x15b3)));
        assert_eq!(PciId(0x154c).to_string(), "154c");
        assert_eq!(PciId::parse("0x"), None);
        assert_eq!(PciId::parse("10086"), None);
        assert_eq!(PciId::parse("zz"), None);
    }

    #[test]
    fn names_come_from_pci_ids() {
        let (v, d) = id_names(PciId(0x8086), PciId(0x10ca));
        assert_eq!(v, Some("Intel Corporation"));
        assert!(d.unwrap().contains("82576"), "{d:?}");
        assert_eq!(
            id_names(PciId(0x8086), PciId(0xfffe)),
            (Some("Intel Corporation"), None)
        );
        assert_eq!(id_names(PciId(0xbeef), PciId(0x0001)), (None, None));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(dom: u16, bus: u8, dev in 0u8..=0x1f, func in 0u8..=7) {
            let a = PciAddress::new(dom, bus, dev, func).unwrap();
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical_shapes(s in "\\PC{0,20}") {
            if let Ok(a) = s.parse::<PciAddress>() {
                prop_assert_eq!(a.to_string(), s.to_ascii_lowercase());
            }
        }
    }
}
