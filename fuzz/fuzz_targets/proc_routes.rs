//! The /proc/net/route and /proc/net/ipv6_route readers: never panic on
//! any text.
#![no_main]

use fastpath::procfs::{parse_ipv4_default_routes, parse_ipv6_default_routes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = parse_ipv4_default_routes(s);
    let _ = parse_ipv6_default_routes(s);
});
