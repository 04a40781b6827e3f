//! The PCI address parser: never panics; anything it accepts prints back
//! as the canonical lower-case form of the input.
#![no_main]

use fastpath::pci::{PciAddress, PciId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(a) = s.parse::<PciAddress>() {
        assert_eq!(a.to_string(), s.to_ascii_lowercase());
        assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
    }
    let _ = PciId::parse(s);
});
