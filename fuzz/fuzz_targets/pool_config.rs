//! The reference device-plugin config (`{"resourceList":[...]}`): never
//! panics; bad input is an error naming the field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = fastpath::pools::config::parse(text, "intel.com");
});
