//! State written by earlier releases (fixtures in `tests/fixtures/state/`,
//! one per format in the history of `src/state/`) is adopted: every owned
//! profile stays owned and loaded, an edit replaces, a deleted file's
//! profile is removed once its source stood still, and a profile armord
//! never owned is left alone.

mod common;
use common::*;

const KEEP: &str = "profile custom.keep {\n  /etc/hostname r,\n}\n";
const EDITED: &str = "profile custom.edit {\n  /etc/hostname r,\n  /etc/motd r,\n}\n";

fn copy_dir(from: &std::path::Path, to: &std::path::Path, src: &str) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target, src);
        } else if e.file_name() == "state.json" {
            let text = std::fs::read_to_string(e.path()).unwrap().replace("SRC", src);
            std::fs::write(target, text).unwrap();
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn every_earlier_state_format_is_adopted() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state");
    let mut formats: Vec<_> = std::fs::read_dir(&fixtures)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.path())
        .collect();
    formats.sort();
    assert!(formats.len() >= 3, "{formats:?}");
    for format in formats {
        let name = format.file_name().unwrap().to_string_lossy().into_owned();
        let t = Tree::new();
        let src = t.path("src");
        copy_dir(&format, &t.path("state"), src.to_str().unwrap());
        t.write("src/keep", KEEP);
        t.write("src/edit", EDITED);
        // What the kernel held when the old release stopped, and a profile
        // someone else loaded.
        t.write(
            "state/simulate/profiles",
            "custom.edit (enforce)\ncustom.gone (enforce)\ncustom.keep (enforce)\nforeign (enforce)\n",
        );
        let cfg = t.write(
            "armord.toml",
            "state_dir = \"state\"\nremoval_settle_ms = 0\n[denials]\nenabled = false\n[[source]]\npath = \"src\"\n",
        );
        let (code, s) = once_config(&cfg);
        assert_eq!(code, 0, "{name}: {s}");
        assert!(
            !s.contains("rebuilt"),
            "{name}: the manifest was not adopted as it is: {s}"
        );
        let k = t.read("state/simulate/profiles");
        assert_eq!(
            k, "custom.edit (enforce)\ncustom.keep (enforce)\nforeign (enforce)\n",
            "{name}: {s}"
        );
        assert!(
            s.contains("replaced: custom.edit") && s.contains("removed: custom.gone"),
            "{name}: {s}"
        );
        let m: serde_json::Value = serde_json::from_str(&t.read("state/state.json")).unwrap();
        let p = &m["profiles"];
        assert_eq!(
            p["custom.keep"]["sha256"],
            armord::source::sha256_hex(KEEP.as_bytes()),
            "{name}: {m}"
        );
        assert_eq!(
            p["custom.edit"]["sha256"],
            armord::source::sha256_hex(EDITED.as_bytes()),
            "{name}: {m}"
        );
        assert!(
            p.get("custom.gone").is_none() && p.get("foreign").is_none(),
            "{name}: {m}"
        );
        assert!(m["generation"].as_u64().unwrap() > 0, "{name}: {m}");
        // The cursor is kept as it was.
        assert_eq!(t.read("state/journal.cursor"), "s=3", "{name}");
    }
}
