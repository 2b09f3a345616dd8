#![no_main]
//! A source snapshot of any directory tree never panics, never reads a file
//! outside the source, and honours its limits; the read cache gives the same
//! snapshot as a plain read.
//!
//! The input is a list of entries: a kind byte, a name, and content or a
//! link target. Names and targets may hold `/`, `..`, NUL and any byte.

use armord::config::{LayoutKind, SourceConfig};
use armord::source::{Limits, ReadCache, SnapshotResult, snapshot, snapshot_cached};
use libfuzzer_sys::fuzz_target;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

fuzz_target!(|input: &[u8]| {
    let Ok(t) = tempfile::tempdir() else { return };
    let root = t.path().join("src");
    let _ = std::fs::create_dir(&root);
    let _ = std::fs::write(t.path().join("secret"), OUTSIDE);
    let mut data = input;
    for _ in 0..24 {
        let Some((&kind, rest)) = data.split_first() else { break };
        data = rest;
        let (Some(name), Some(body)) = (take(&mut data), take(&mut data)) else { break };
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
            4 => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).map_err(std::io::Error::from),
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
                assert!(!f.content.contains(OUTSIDE), "read outside the source: {}", f.path.display());
                assert_eq!(f.sha256, armord::source::sha256_hex(f.content.as_bytes()));
            }
        }
        assert_eq!(format!("{plain:?}"), format!("{cached:?}"));
        assert_eq!(format!("{plain:?}"), format!("{again:?}"));
    }
});
