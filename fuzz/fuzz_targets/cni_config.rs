//! The CNI network config (stdin) with CNI_ARGS, as a runtime would pass
//! them, and the IPAM result / prevResult parser: never panic; bad input
//! is an error value.
#![no_main]

use fastpath::cni::config::Config;
use fastpath::cni::env::{CniEnv, Env};
use fastpath::cni::result::IpamResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (cni_args, stdin) = input;
    let mut env = Env::new();
    for (k, v) in [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "fuzz"),
        ("CNI_IFNAME", "net1"),
        ("CNI_NETNS", "/run/netns/fuzz"),
        ("CNI_PATH", "/usr/lib/cni"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    env.insert("CNI_ARGS".to_string(), cni_args.to_string());
    if let Ok(e) = CniEnv::parse(&env, true, true) {
        let _ = Config::parse(stdin, &e);
    }
    let _ = IpamResult::parse(stdin, "fuzz");
});
