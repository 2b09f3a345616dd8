//! The state directory: the name of every file armord keeps there, making
//! it (private) and proving it writable, who else may write a directory,
//! and setting aside a state file that cannot be loaded.

use super::{StateError, create_temp, io_err};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The state directory (`/var/lib/armord`) and the one owner of the names
/// of the files in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
    /// The pending-load log, opened once for appending.
    pub(super) log: Arc<Mutex<Option<std::fs::File>>>,
    /// An empty file made ahead in `spare/`, for the next new stored copy:
    /// making a file costs most of a millisecond on some file systems, and
    /// a change should not wait for it.
    pub(super) spare: Arc<Mutex<Option<PathBuf>>>,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir {
            dir,
            log: Default::default(),
            spare: Default::default(),
        }
    }

    /// The ownership manifest.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The loads in flight (see [`StateDir::save_pending`]).
    pub fn pending_log(&self) -> PathBuf {
        self.dir.join("pending.log")
    }

    /// The store of last-good copies, one file a content, named by its
    /// sha256.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The stored copy of the content with this sha256.
    pub fn store_entry(&self, sha256: &str) -> PathBuf {
        self.store().join(sha256)
    }

    /// Where spare files for the next stored copy are made ahead.
    pub(super) fn spare(&self) -> PathBuf {
        self.dir.join("spare")
    }

    /// The denial follower's position in the journal, and the keys of the
    /// records it handled last.
    pub fn cursor(&self) -> PathBuf {
        self.dir.join("journal.cursor")
    }

    /// The learned rules' snapshot (see `trial::store`).
    pub fn learned(&self) -> PathBuf {
        self.dir.join("learned.json")
    }

    /// The rules learned since the snapshot, one JSON line each.
    pub fn learned_log(&self) -> PathBuf {
        self.dir.join("learned.log")
    }

    /// The trial book: trials running and versions promoted.
    pub fn trial_book(&self) -> PathBuf {
        self.dir.join("trial.json")
    }

    /// The serials of signed sources as older releases recorded them (the
    /// manifest holds them now).
    pub fn legacy_signed_serials(&self) -> PathBuf {
        self.dir.join("signed-serials.json")
    }

    /// Create the directories and prove they are writable.
    pub fn prepare(&self) -> Result<(), StateError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        // Created private (0700): the manifest and the store say what the
        // node's policy is.
        let store = self.store();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&store)
            .map_err(io_err(&store))?;
        if let Ok(m) = std::fs::metadata(&self.dir)
            && let Some(who) = writable_by_others(&m, false)
        {
            log::warn!(
                "state directory {} can be written by {who} (mode {:o}): whoever can write it can change what armord loads; make it owned by uid {}, mode 0700",
                crate::escape::path(&self.dir),
                m.mode() & 0o7777,
                nix::unistd::geteuid().as_raw()
            );
        }
        let probe = self.dir.join(".armord-write-probe");
        let (probe, _) = create_temp(&probe).map_err(io_err(&self.dir))?;
        let _ = std::fs::remove_file(&probe);
        // Spare files an earlier run made and did not use.
        let _ = std::fs::remove_dir_all(self.spare());
        self.store_spare();
        Ok(())
    }
}

/// Who, besides root and the user armord runs as, can write a directory
/// with metadata `m` (`None`: no one): its owner, every user, or a group
/// other than root's. With `sticky_ok`, a writable directory with the
/// sticky bit counts as safe (no one replaces what they do not own there).
pub fn writable_by_others(m: &std::fs::Metadata, sticky_ok: bool) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mode = m.mode();
    let sticky = sticky_ok && mode & 0o1000 != 0;
    if m.uid() != 0 && m.uid() != me {
        Some(format!("its owner, uid {}", m.uid()))
    } else if mode & 0o002 != 0 && !sticky {
        Some("every user".to_owned())
    } else if m.gid() != 0 && mode & 0o020 != 0 && !sticky {
        Some(format!("group {}", m.gid()))
    } else {
        None
    }
}

/// `NAME.corrupt` beside `path`: where a file that cannot be loaded goes.
pub fn aside_name(path: &Path) -> PathBuf {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    PathBuf::from(aside)
}

/// Set aside a state file that cannot be loaded: renamed to `NAME.corrupt`
/// beside it (replacing one set aside before), so that the next write
/// starts afresh and the damaged copy stays for a look. Returns the words
/// for the line that logs why: where it went, or why it could not move.
pub fn set_aside(path: &Path) -> String {
    let aside = aside_name(path);
    match std::fs::rename(path, &aside) {
        Ok(()) => format!("set aside as {}", crate::escape::path(&aside)),
        Err(e) => format!("cannot be set aside as {} ({e})", crate::escape::path(&aside)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_state_dir_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();
        let s = StateDir::new(t.path().join("file/state"));
        let e = s.prepare().unwrap_err();
        assert!(e.to_string().contains("file/state"), "{e}");
    }

    #[test]
    fn a_new_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let state = StateDir::new(d.path().join("a/state"));
        state.prepare().unwrap();
        for dir in [d.path().join("a/state"), d.path().join("a/state/store")] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{}: {mode:o}", dir.display());
        }
    }

    #[test]
    fn every_state_file_is_named_inside_the_state_directory() {
        let s = StateDir::new("/var/lib/armord".into());
        let names = [
            s.manifest(),
            s.pending_log(),
            s.store(),
            s.store_entry("ab"),
            s.spare(),
            s.cursor(),
            s.legacy_signed_serials(),
        ];
        for n in &names {
            assert!(n.starts_with("/var/lib/armord/"), "{}", n.display());
        }
        let mut unique = names.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn a_file_set_aside_keeps_its_content_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("state.json");
        std::fs::write(&f, "{ damaged").unwrap();
        let said = set_aside(&f);
        assert!(!f.exists());
        assert_eq!(
            std::fs::read_to_string(d.path().join("state.json.corrupt")).unwrap(),
            "{ damaged"
        );
        assert!(
            said.starts_with("set aside as ") && said.ends_with("state.json.corrupt"),
            "{said}"
        );
        let said = set_aside(&f);
        assert!(said.starts_with("cannot be set aside as "), "{said}");
    }
}
