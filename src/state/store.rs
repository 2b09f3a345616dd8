//! The store: the last-good copy of every content armord loaded, one file
//! a content named by its sha256 (restored at boot), and the spare file
//! made ahead for the next new copy.

use super::write::{write_into, write_replace};
use super::{StateDir, StateError, io_err, set_aside};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// Past this many stored files to flush at once, `syncfs` on the store's
/// filesystem costs less than an fsync each.
const SYNC_FILESYSTEM_PAST: usize = 64;

impl StateDir {
    /// Put a file's content into the store under its hash. Idempotent. Not
    /// yet durable: [`StateDir::store_sync`] makes it so, before the manifest
    /// refers to it, which keeps fsyncs off the path to the parser.
    pub fn store_put(&self, sha256: &str, content: &[u8]) -> Result<PathBuf, StateError> {
        let path = self.store_entry(sha256);
        if self.store_load(sha256).is_some() {
            return Ok(path);
        }
        let spare = self.spare.lock().ok().and_then(|mut s| s.take());
        // A spare that cannot be written (gone, or not the file it was)
        // is dropped for a new temporary.
        let into_spare = spare.map(|tmp| write_into(&tmp, &path, content, Some("store-write")));
        if !matches!(into_spare, Some(Ok(()))) {
            write_replace(&path, content, false, Some("store-write"))?;
        }
        Ok(path)
    }

    /// Flush stored files (and the store directory) to disk: each file
    /// on its own, or, past [`SYNC_FILESYSTEM_PAST`] files, the store's
    /// filesystem in one call (a boot restore of 10,000 profiles took an
    /// open and an fsync each, 450 ms, where their copies were mostly
    /// clean already).
    pub fn store_sync<'a>(&self, shas: impl IntoIterator<Item = &'a str>) -> Result<(), StateError> {
        let shas: Vec<&str> = shas.into_iter().collect();
        if shas.is_empty() {
            return Ok(());
        }
        let dir = self.store();
        if shas.len() > SYNC_FILESYSTEM_PAST {
            return std::fs::File::open(&dir)
                .and_then(|d| nix::unistd::syncfs(&d).map_err(std::io::Error::from))
                .map_err(io_err(&dir));
        }
        for sha in shas {
            let path = self.store_entry(sha);
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    }

    /// The stored content for a hash, when present and intact. A damaged
    /// copy is left as it is: for readers (`armorctl`); the daemon, which
    /// owns the store, uses [`StateDir::store_load`].
    pub fn store_get(&self, sha256: &str) -> Option<Vec<u8>> {
        self.store_read(sha256).ok().flatten()
    }

    /// The stored content for a hash, when present and intact. A copy that
    /// cannot be read, or whose content is not the one its name says, is
    /// set aside (logged) and counts as missing: the next put of that
    /// content writes it afresh.
    pub fn store_load(&self, sha256: &str) -> Option<Vec<u8>> {
        self.store_read(sha256).unwrap_or_else(|e| {
            let aside = set_aside(e.path());
            log::warn!("{e}; {aside}");
            None
        })
    }

    /// The stored content for a hash: `None` when there is none, an error
    /// when it cannot be read or is not the content its name says.
    fn store_read(&self, sha256: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.store_entry(sha256);
        match std::fs::read(&path) {
            Ok(data) => {
                let found = crate::source::sha256_hex(&data);
                if found == sha256 {
                    Ok(Some(data))
                } else {
                    Err(StateError::Damaged {
                        path,
                        what: "stored copy",
                        reason: format!("its content has sha256 {found}"),
                    })
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// Every entry in the store: the names that are a sha256 (the content
    /// is checked when it is read).
    pub fn store_entries(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.store())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        out.sort();
        out
    }

    /// Delete store entries (and stray temp files) not in `keep`. Copies
    /// set aside as damaged (`*.corrupt`) stay for a look.
    pub fn store_gc(&self, keep: &BTreeSet<String>) -> Result<usize, StateError> {
        let dir = self.store();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) && !name.ends_with(".corrupt") {
                std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Make the spare file for the next new stored copy, when there is
    /// none. A failure only means the next copy makes its own file.
    pub fn store_spare(&self) {
        let Ok(mut spare) = self.spare.lock() else {
            return;
        };
        if spare.is_some() {
            return;
        }
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.spare().join(format!("{}.{n}", std::process::id()));
        let made = std::fs::create_dir_all(self.spare()).and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&path)
        });
        if made.is_ok() {
            *spare = Some(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_content_addressed_and_verified() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        let sha = crate::source::sha256_hex(b"profile x {}");
        s.store_put(&sha, b"profile x {}").unwrap();
        assert_eq!(s.store_get(&sha).unwrap(), b"profile x {}");
        assert_eq!(s.store_entries(), std::slice::from_ref(&sha));
        // A damaged entry is not returned, and a put repairs it.
        std::fs::write(s.store_entry(&sha), "garbage").unwrap();
        assert!(s.store_get(&sha).is_none());
        s.store_put(&sha, b"profile x {}").unwrap();
        assert!(s.store_get(&sha).is_some());
        let other = crate::source::sha256_hex(b"y");
        s.store_put(&other, b"y").unwrap();
        assert_eq!(s.store_gc(&[sha.clone()].into()).unwrap(), 1);
        assert_eq!(s.store_entries(), [sha]);
    }

    /// A few copies are synced each, naming one that is missing; many,
    /// the filesystem at once.
    #[test]
    fn store_sync_each_or_the_filesystem() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        let shas: Vec<String> = (0..=SYNC_FILESYSTEM_PAST)
            .map(|i| {
                let text = format!("profile p{i} {{}}");
                let sha = crate::source::sha256_hex(text.as_bytes());
                s.store_put(&sha, text.as_bytes()).unwrap();
                sha
            })
            .collect();
        s.store_sync(shas.iter().map(String::as_str)).unwrap();
        s.store_sync(shas[..3].iter().map(String::as_str)).unwrap();
        s.store_sync(std::iter::empty()).unwrap();
        let gone = crate::source::sha256_hex(b"gone");
        let e = s.store_sync([gone.as_str()]).unwrap_err().to_string();
        assert!(e.contains(&gone), "{e}");
    }

    #[test]
    fn a_new_stored_copy_takes_the_spare_file_made_ahead() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        // A spare an earlier run left is not used, and is cleared.
        std::fs::create_dir_all(t.path().join("spare")).unwrap();
        std::fs::write(t.path().join("spare/1.0"), "left over").unwrap();
        s.prepare().unwrap();
        let spares = || -> Vec<PathBuf> {
            std::fs::read_dir(t.path().join("spare"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        };
        let made = spares();
        assert_eq!(made.len(), 1, "{made:?}");
        let spare_inode = std::fs::metadata(&made[0]).map(|m| m.ino()).unwrap();
        let a = crate::source::sha256_hex(b"profile a {}");
        s.store_put(&a, b"profile a {}").unwrap();
        assert!(spares().is_empty(), "the spare was taken");
        assert_eq!(s.store_get(&a).unwrap(), b"profile a {}");
        assert_eq!(std::fs::metadata(s.store_entry(&a)).unwrap().ino(), spare_inode);
        // With no spare, a copy makes its own file.
        let b = crate::source::sha256_hex(b"profile b {}");
        s.store_put(&b, b"profile b {}").unwrap();
        assert_eq!(s.store_get(&b).unwrap(), b"profile b {}");
        s.store_spare();
        s.store_spare();
        assert_eq!(spares().len(), 1, "one spare at a time");
        assert_eq!(s.store_entries().len(), 2);
    }

    #[test]
    fn the_store_never_writes_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "root-only\n").unwrap();
        let state = StateDir::new(d.path().join("state"));
        state.prepare().unwrap();
        // The spare a store write would take, and every name it could have.
        for entry in std::fs::read_dir(state.spare()).unwrap().flatten() {
            std::fs::remove_file(entry.path()).unwrap();
            std::os::unix::fs::symlink(&victim, entry.path()).unwrap();
        }
        for n in 0..64 {
            let _ = std::os::unix::fs::symlink(&victim, state.spare().join(format!("{}.{n}", std::process::id())));
        }
        for i in 0..3u8 {
            let content = [b'p', i];
            let sha = crate::source::sha256_hex(&content);
            state.store_put(&sha, &content).unwrap();
            assert_eq!(state.store_get(&sha).unwrap(), content);
            state.store_spare();
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only\n");
    }

    #[test]
    fn a_damaged_stored_copy_is_set_aside_when_the_daemon_reads_it() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        s.prepare().unwrap();
        let sha = crate::source::sha256_hex(b"profile x {}");
        s.store_put(&sha, b"profile x {}").unwrap();
        let entry = s.store_entry(&sha);
        let aside = t.path().join(format!("store/{sha}.corrupt"));
        // A reader leaves it as it is.
        std::fs::write(&entry, "garbage").unwrap();
        assert!(s.store_get(&sha).is_none());
        assert!(entry.exists() && !aside.exists());
        // The daemon sets it aside, keeps it through a collection, and
        // writes the content afresh on the next put.
        assert!(s.store_load(&sha).is_none());
        assert!(!entry.exists());
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "garbage");
        assert_eq!(s.store_entries(), Vec::<String>::new());
        s.store_gc(&BTreeSet::new()).unwrap();
        assert!(aside.exists());
        std::fs::write(&entry, "garbage again").unwrap();
        s.store_put(&sha, b"profile x {}").unwrap();
        assert_eq!(s.store_load(&sha).unwrap(), b"profile x {}");
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "garbage again");
        // One that cannot be read at all is set aside too.
        std::fs::remove_file(&aside).unwrap();
        std::fs::remove_file(&entry).unwrap();
        std::fs::create_dir(&entry).unwrap();
        assert!(s.store_load(&sha).is_none());
        assert!(std::fs::symlink_metadata(&aside).unwrap().is_dir());
        s.store_put(&sha, b"profile x {}").unwrap();
        assert_eq!(s.store_load(&sha).unwrap(), b"profile x {}");
    }
}
