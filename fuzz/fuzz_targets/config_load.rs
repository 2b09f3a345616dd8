#![no_main]
//! The config loader: see `tests/fuzz/checks.rs` for the properties checked.

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz/checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::config_load(data));
