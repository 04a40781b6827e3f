//! Link the binary with compact relative relocations (DT_RELR, glibc 2.36+
//! and binutils 2.38+, both in Debian 12): the CNI plugin is exec'd once
//! per ADD and DEL, and the dynamic loader otherwise reads ~1.3 MB of
//! RELA entries at every start.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
