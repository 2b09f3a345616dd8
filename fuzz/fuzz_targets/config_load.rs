#![no_main]
//! The config loader never panics on any main file plus drop-in; what it
//! accepts prints (`--check-config`) to TOML that loads back to the same
//! configuration.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into a main file and a drop-in at the first 0xff byte.
    let (main, dropin) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(main), Ok(dropin)) = (std::str::from_utf8(main), std::str::from_utf8(dropin)) else {
        return;
    };
    let files = [("/etc/armord/armord.toml", main), ("/etc/armord/armord.toml.d/50-x.toml", dropin)];
    if let Ok(c) = armord::config::load_from_strs(&files) {
        let text = c.to_toml();
        let back = armord::config::load_from_strs(&[("/etc/armord/armord.toml", &text)])
            .unwrap_or_else(|e| panic!("effective config does not load back: {e}\n{text}"));
        assert_eq!(back, c, "{text}");
    }
});
