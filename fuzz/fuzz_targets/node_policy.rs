//! The node policy (YAML or JSON): never panics; bad input is an error
//! naming the entry.
#![no_main]

use std::path::Path;

use fastpath::provision::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = Policy::parse(text, Path::new("policy.yaml"));
    let _ = Policy::parse(text, Path::new("policy.json"));
});
