//! The pfNames VF-range parser: never panics; what it accepts round-trips
//! through its canonical form.
#![no_main]

use fastpath::vfrange::PfVfSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(sel) = s.parse::<PfVfSelector>() {
        let again: PfVfSelector = sel.to_string().parse().unwrap();
        assert_eq!(again, sel);
    }
});
