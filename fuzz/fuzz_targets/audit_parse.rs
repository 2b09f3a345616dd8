#![no_main]
//! The audit parser never panics, and what it returns serializes and reads back.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = armord::audit::parse_bytes(data) {
        let json = serde_json::to_value(&r).expect("a record serializes");
        let back = armord::cli::record_from_json(&json).expect("and reads back");
        assert_eq!(back.kind, r.kind);
        assert_eq!(back.audit_id, r.audit_id);
    }
});
