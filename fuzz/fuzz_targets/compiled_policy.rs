#![no_main]
//! See `tests/fuzz/checks.rs` for the properties checked.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::compiled_policy(data));
