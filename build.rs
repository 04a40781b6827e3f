//! Three things for the binary's start-up time. The CNI plugin is exec'd
//! once per ADD and DEL, so what the dynamic loader does at every start
//! counts:
//!
//! - Link the binaries at a fixed address (`-no-pie`), also when cargo links
//!   them dynamically (`cargo build --release`, `cargo install`): a PIE's
//!   loader relocates every pointer in the executable's data and copies
//!   each page it touches; at a fixed address the linker has done that.
//!   Measured on the CNI's VERSION call: 310 page faults and 1.7 ms of CPU
//!   as a PIE, 145 and 1.25 ms dynamic at a fixed address, 100 and 1.0 ms
//!   static (`hack/build-release`; docs/PERFORMANCE.md "Which build").
//!   The code is still compiled position-independent, so this changes only
//!   the link. `FASTPATH_PIE=1` at build time keeps a PIE for whoever
//!   prefers a randomized executable image to the start-up time
//!   (docs/SECURITY.md).
//! - Link with compact relative relocations (DT_RELR, glibc 2.36+ and
//!   binutils 2.38+, both in Debian 12) instead of ~1.3 MB of RELA entries
//!   (what is left of them in a PIE).
//! - Bundle the pci.ids names as plain bytes (`pci_names.txt`) indexed by
//!   fixed-size records (`pci_vendors.bin`, `pci_devices.bin`) rather than
//!   link the `pci-ids` crate's tables: those are structs of `&'static str`,
//!   about 1.5 MB of pointers the loader had to relocate, one copied page
//!   at a time, before `main` (about 1.3 ms of every CNI call).

use std::collections::BTreeMap;
use std::path::Path;

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        if std::env::var_os("FASTPATH_PIE").is_none_or(|v| v != "1") {
            // gcc takes the last of -pie / -no-pie: this one comes after
            // rustc's own -pie.
            println!("cargo:rustc-link-arg-bins=-no-pie");
        }
    }
    println!("cargo:rerun-if-env-changed=FASTPATH_PIE");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    write_pci_names(Path::new(&out));
    println!("cargo:rerun-if-changed=build.rs");
}

/// Record layouts, little-endian, sorted by id (src/pci_names.rs reads
/// them): vendor `id u16, offset u32, len u16`; device `vendor u16,
/// device u16, offset u32, len u16, 0u16`. Offsets and lengths are bytes
/// of `pci_names.txt`.
fn write_pci_names(out: &Path) {
    let mut names = String::new();
    let mut push = |s: &str| {
        let off = u32::try_from(names.len()).expect("names fit in u32");
        let len = u16::try_from(s.len()).expect("a name fits in u16");
        names.push_str(s);
        (off, len)
    };
    let mut vendors = BTreeMap::new();
    let mut devices = BTreeMap::new();
    for v in pci_ids::Vendors::iter() {
        // The first entry wins, as a linear search of the crate's tables
        // would find it.
        if vendors.contains_key(&v.id()) {
            continue;
        }
        vendors.insert(v.id(), push(v.name()));
        for d in v.devices() {
            devices
                .entry((v.id(), d.id()))
                .or_insert_with(|| push(d.name()));
        }
    }
    let mut vbin = Vec::with_capacity(vendors.len() * 8);
    for (id, (off, len)) in &vendors {
        vbin.extend(id.to_le_bytes());
        vbin.extend(off.to_le_bytes());
        vbin.extend(len.to_le_bytes());
    }
    let mut dbin = Vec::with_capacity(devices.len() * 12);
    for ((vid, did), (off, len)) in &devices {
        dbin.extend(vid.to_le_bytes());
        dbin.extend(did.to_le_bytes());
        dbin.extend(off.to_le_bytes());
        dbin.extend(len.to_le_bytes());
        dbin.extend(0u16.to_le_bytes());
    }
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    };
    write("pci_names.txt", names.as_bytes());
    write("pci_vendors.bin", &vbin);
    write("pci_devices.bin", &dbin);
}
