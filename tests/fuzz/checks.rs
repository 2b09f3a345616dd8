//! The properties the fuzz targets check, shared: `fuzz/` runs them under
//! libFuzzer, and `tests/fuzz_corpus.rs` replays the committed corpora
//! through them in every `cargo test`.
#![allow(dead_code)]

use armord::config::{LayoutKind, SourceConfig};
use armord::source::{Limits, ReadCache, SnapshotResult, snapshot, snapshot_cached};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The audit parser never panics, and what it returns serializes and reads back.
pub fn audit_parse(data: &[u8]) {
    if let Ok(r) = armord::audit::parse_bytes(data) {
        let json = serde_json::to_value(&r).expect("a record serializes");
        let back = armord::cli::record_from_json(&json).expect("and reads back");
        assert_eq!(back.kind, r.kind);
        assert_eq!(back.audit_id, r.audit_id);
    }
}

/// The config loader never panics on any main file plus drop-in; what it
/// accepts prints (`--check-config`) to TOML that loads back to the same
/// configuration.
pub fn config_load(data: &[u8]) {
    // Split the input into a main file and a drop-in at the first 0xff byte.
    let (main, dropin) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (Ok(main), Ok(dropin)) = (std::str::from_utf8(main), std::str::from_utf8(dropin)) else {
        return;
    };
    let files = [
        ("/etc/armord/armord.toml", main),
        ("/etc/armord/armord.toml.d/50-x.toml", dropin),
    ];
    if let Ok(c) = armord::config::load_from_strs(&files) {
        let text = c.to_toml();
        let back = armord::config::load_from_strs(&[("/etc/armord/armord.toml", &text)])
            .unwrap_or_else(|e| panic!("effective config does not load back: {e}\n{text}"));
        assert_eq!(back, c, "{text}");
    }
}

/// The file outside the source. Longer than any body the input can write
/// (at most 39 bytes), so no file inside the source can hold it.
const OUTSIDE: &str = "OUTSIDE-THE-SOURCE:this-file-must-never-be-read-by-a-snapshot";

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&len, rest) = data.split_first()?;
    let len = (len as usize % 40).min(rest.len());
    let (v, rest) = rest.split_at(len);
    *data = rest;
    Some(v)
}

/// A source snapshot of any directory tree never panics, never reads a file
/// outside the source, and honours its limits; the read cache gives the
/// same snapshot as a plain read. The input is a list of entries: a kind
/// byte, a name, and content or a link target; names and targets may hold
/// `/`, `..`, NUL and any byte.
pub fn source_snapshot(input: &[u8]) {
    let Ok(t) = tempfile::tempdir() else { return };
    let root = t.path().join("src");
    let _ = std::fs::create_dir(&root);
    let _ = std::fs::write(t.path().join("secret"), OUTSIDE);
    let mut data = input;
    for _ in 0..24 {
        let Some((&kind, rest)) = data.split_first() else { break };
        data = rest;
        let (Some(name), Some(body)) = (take(&mut data), take(&mut data)) else {
            break;
        };
        if name.is_empty() || name.contains(&0) {
            continue;
        }
        // Names are relative to the source; `..` may climb, but never write
        // outside the temp dir.
        let path = root.join(OsStr::from_bytes(name));
        if !path.starts_with(t.path()) || path.components().any(|c| c.as_os_str() == "..") {
            continue;
        }
        // One entry per name (writing into a FIFO made earlier would block).
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = match kind % 6 {
            0 | 1 => std::fs::write(&path, body),
            2 => std::os::unix::fs::symlink(OsStr::from_bytes(body), &path),
            3 => std::fs::create_dir_all(&path),
            4 => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
                .map_err(std::io::Error::from),
            _ => std::os::unix::fs::symlink(Path::new("../secret"), &path),
        };
    }
    let limits = Limits {
        max_file_bytes: 64,
        max_files: 8,
    };
    for layout in [LayoutKind::Auto, LayoutKind::Plain] {
        let cfg = SourceConfig {
            path: root.clone(),
            layout,
            link: None,
            subdir: None,
            signatures: Default::default(),
        };
        let plain = snapshot(&cfg, &limits);
        let mut cache = ReadCache::default();
        let cached = snapshot_cached(&cfg, &limits, &mut cache);
        let again = snapshot_cached(&cfg, &limits, &mut cache);
        if let SnapshotResult::Ok(s) = &plain {
            assert!(s.files.len() <= limits.max_files);
            for f in &s.files {
                assert!(f.content.len() as u64 <= limits.max_file_bytes);
                assert!(!f.content.contains('\0'));
                assert!(
                    !f.content.contains(OUTSIDE),
                    "read outside the source: {}",
                    f.path.display()
                );
                assert_eq!(f.sha256, armord::source::sha256_hex(f.content.as_bytes()));
            }
        }
        assert_eq!(format!("{plain:?}"), format!("{cached:?}"));
        assert_eq!(format!("{plain:?}"), format!("{again:?}"));
    }
}

/// Every reader of a profile file's text never panics on any text, and
/// what they say holds together: the names a file may define include the
/// top-level names the header scan finds, and a violation names a line of
/// the file.
pub fn profile_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use armord::apparmor::*;
    let declared = declared_profiles(text);
    let may = names_a_file_may_define(text);
    for d in &declared {
        if !d.name.is_empty() && !d.name.starts_with('{') {
            let top = d.name.split("//").next().unwrap_or(&d.name);
            if !top.is_empty() {
                assert!(may.iter().any(|m| m == top), "{:?} not in {may:?}", d.name);
            }
        }
    }
    let lines = text.lines().count().max(1);
    for v in [include_violation(text), escaped_name(text), policy_violation(text)]
        .into_iter()
        .flatten()
    {
        let n: usize = v
            .strip_prefix("line ")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no line in {v:?}"));
        assert!(n >= 1 && n <= lines, "{v:?} for {lines} lines");
    }
    let allowed = vec!["/opt/**".to_string(), "/usr/local/bin/*".to_string()];
    let _ = attachment_violation(text, &allowed);
}

/// The compiled-policy reader never panics on any bytes, and whatever it
/// reads is judged (names, modes, attachments against globs) without a
/// panic. Bytes past the first 0xff are globs, one per line.
pub fn compiled_policy(data: &[u8]) {
    let (policy, globs) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"/opt/**\n/usr/local/bin/*"[..]),
    };
    let globs: Vec<String> = String::from_utf8_lossy(globs)
        .lines()
        .take(8)
        .map(|g| g.chars().take(64).collect())
        .collect();
    if let Ok(profiles) = armord::apparmor::read_policy(policy) {
        let names = armord::apparmor::names_in_policy(policy).expect("read twice, read alike");
        assert_eq!(names.len(), profiles.len());
        let bounds = armord::reconcile::Bounds::new(armord::config::ForcedMode::Enforce, Some(globs.clone()));
        let _ = bounds.judge(&profiles);
    }
    // Any bytes as a DFA, walked and judged.
    if let Ok(dfa) = armord::apparmor::Dfa::read(policy) {
        let g = armord::apparmor::Globs::new(&globs);
        let _ = armord::apparmor::dfa_within(&dfa, &g);
        let _ = dfa.matches(b"/usr/sbin/sshd");
    }
}
