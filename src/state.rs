//! The ownership manifest (`state.json`), the store of last-good files, and
//! atomic writes (temp file, fsync, rename, fsync of the directory).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt manifest: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Write `data` to `path` so that a reader (or a crash) sees the old content
/// or the new, never a mix: temp file in the same directory, fsync, rename,
/// fsync the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), StateError> {
    write_replace(path, data, true, None)
}

/// [`atomic_write`] of a file other programs read (an export for
/// node_exporter or node-feature-discovery): mode 0644 whatever the umask.
pub fn atomic_write_readable(path: &Path, data: &[u8]) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    write_replace_with(path, data, true, None, |f: &std::fs::File| {
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
    })
}

/// Like [`atomic_write`], with the fsyncs only when `durable`: readers see
/// the old content or the new, but a crash may lose the new. `midpoint` is
/// a failpoint passed with the data written and not yet renamed.
fn write_replace(path: &Path, data: &[u8], durable: bool, midpoint: Option<&str>) -> Result<(), StateError> {
    write_replace_with(path, data, durable, midpoint, |_| Ok(()))
}

fn write_replace_with(
    path: &Path,
    data: &[u8],
    durable: bool,
    midpoint: Option<&str>,
    prepare: impl Fn(&std::fs::File) -> std::io::Result<()>,
) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        crate::failpoint::hit("state-write").map_err(io_err(&tmp))?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        prepare(&f).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        if let Some(point) = midpoint {
            crate::failpoint::hit(point).map_err(io_err(&tmp))?;
        }
        if durable {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        if durable {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A profile armord loaded and therefore owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// The source file as the operator names it.
    pub file: PathBuf,
    /// The configured source it came from.
    pub source: PathBuf,
    /// sha256 of the file content that was loaded (its store key).
    pub sha256: String,
    /// Loaded with `-C` (forced complain).
    #[serde(default)]
    pub complain: bool,
    /// The mode the kernel reported after the load.
    pub mode: String,
}

/// A load that was started but not confirmed. If armord dies between the
/// parser call and the manifest write, the next start adopts the profile when
/// the kernel holds it, so nothing armord loaded is ever left unowned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLoad {
    pub file: PathBuf,
    pub source: PathBuf,
    pub sha256: String,
    #[serde(default)]
    pub complain: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub profiles: BTreeMap<String, Owned>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, PendingLoad>,
    /// Profiles being removed: boot restore never brings these back.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removing: BTreeSet<String>,
    /// Contents (sha256) loaded without a parser to check them (a
    /// simulation without `apparmor_parser`): checked as soon as a parser
    /// is there.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unchecked: BTreeSet<String>,
}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            ..Default::default()
        }
    }

    /// Settle what a crash left behind, against what the kernel holds: a
    /// pending load the kernel has becomes owned (with an unknown hash, so the
    /// next reconcile replaces it); one it lacks is dropped.
    pub fn recover(&mut self, kernel: &BTreeMap<String, String>) -> Vec<String> {
        let mut adopted = Vec::new();
        for (name, p) in std::mem::take(&mut self.pending) {
            if let Some(mode) = kernel.get(&name) {
                let entry = self.profiles.entry(name.clone()).or_insert_with(|| Owned {
                    file: p.file.clone(),
                    source: p.source.clone(),
                    sha256: String::new(),
                    complain: p.complain,
                    mode: mode.clone(),
                });
                if entry.sha256 != p.sha256 {
                    entry.sha256.clear();
                    adopted.push(name);
                }
            }
        }
        adopted
    }

    /// Every store key the manifest refers to.
    pub fn referenced(&self) -> BTreeSet<String> {
        self.profiles
            .values()
            .map(|o| o.sha256.clone())
            .chain(self.pending.values().map(|p| p.sha256.clone()))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// What reading the manifest found.
#[derive(Debug)]
pub enum Loaded {
    Found(Manifest),
    /// No manifest: first start, or it was deleted.
    Missing,
    /// Unreadable content; the error says why.
    Corrupt(StateError),
}

/// The state directory: manifest and store.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir { dir }
    }
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }
    pub fn store_path(&self, sha256: &str) -> PathBuf {
        self.store_dir().join(sha256)
    }

    /// Create the directories and prove they are writable.
    pub fn prepare(&self) -> Result<(), StateError> {
        let store = self.store_dir();
        std::fs::create_dir_all(&store).map_err(io_err(&store))?;
        let probe = self.dir.join(".armord-write-probe");
        std::fs::write(&probe, b"").map_err(io_err(&self.dir))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    pub fn load_manifest(&self) -> Loaded {
        let path = self.manifest_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Loaded::Missing,
            Err(source) => return Loaded::Corrupt(StateError::Io { path, source }),
        };
        match serde_json::from_slice::<Manifest>(&text) {
            Ok(m) if m.version == MANIFEST_VERSION => Loaded::Found(m),
            Ok(m) => Loaded::Corrupt(StateError::Corrupt {
                path,
                reason: format!("version {} is not {MANIFEST_VERSION}", m.version),
            }),
            Err(e) => Loaded::Corrupt(StateError::Corrupt {
                path,
                reason: e.to_string(),
            }),
        }
    }

    pub fn save_manifest(&self, m: &Manifest) -> Result<(), StateError> {
        self.write_manifest(m, true)
    }

    /// Write the manifest so that a crash of armord leaves the old or the
    /// new one, without waiting for the disk: for the pending-load record.
    /// A power loss empties the kernel too, so a record of loads in flight
    /// has nothing to protect then; the durable save after the load does.
    pub fn save_manifest_volatile(&self, m: &Manifest) -> Result<(), StateError> {
        self.write_manifest(m, false)
    }

    fn write_manifest(&self, m: &Manifest, durable: bool) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(m).map_err(|e| StateError::Corrupt {
            path: self.manifest_path(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        write_replace(&self.manifest_path(), &text, durable, None)
    }

    /// Put a file's content into the store under its hash. Idempotent. Not
    /// yet durable: [`StateDir::store_sync`] makes it so, before the manifest
    /// refers to it, which keeps fsyncs off the path to the parser.
    pub fn store_put(&self, sha256: &str, content: &[u8]) -> Result<PathBuf, StateError> {
        let path = self.store_path(sha256);
        if self.store_get(sha256).is_some() {
            return Ok(path);
        }
        write_replace(&path, content, false, Some("store-write"))?;
        Ok(path)
    }

    /// Flush stored files (and the store directory) to disk.
    pub fn store_sync<'a>(&self, shas: impl IntoIterator<Item = &'a str>) -> Result<(), StateError> {
        let mut any = false;
        for sha in shas {
            let path = self.store_path(sha);
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
            any = true;
        }
        if any {
            let dir = self.store_dir();
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// The stored content for a hash, when present and intact.
    pub fn store_get(&self, sha256: &str) -> Option<Vec<u8>> {
        let data = std::fs::read(self.store_path(sha256)).ok()?;
        (crate::source::sha256_hex(&data) == sha256).then_some(data)
    }

    /// Every intact entry in the store.
    pub fn store_entries(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.store_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        out.sort();
        out
    }

    /// Delete store entries (and stray temp files) not in `keep`.
    pub fn store_gc(&self, keep: &BTreeSet<String>) -> Result<usize, StateError> {
        let dir = self.store_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(sha: &str) -> Owned {
        Owned {
            file: "/src/a".into(),
            source: "/src".into(),
            sha256: sha.into(),
            complain: false,
            mode: "enforce".into(),
        }
    }

    #[test]
    fn manifest_round_trip_and_corruption() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().join("state"));
        s.prepare().unwrap();
        assert!(matches!(s.load_manifest(), Loaded::Missing));
        let mut m = Manifest::new();
        m.profiles.insert("custom.a".into(), owned("aa"));
        s.save_manifest(&m).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back, m),
            other => panic!("{other:?}"),
        }
        std::fs::write(s.manifest_path(), "{\"version\": 1, \"profiles\": {").unwrap();
        match s.load_manifest() {
            Loaded::Corrupt(e) => assert!(e.to_string().contains("state.json: corrupt manifest"), "{e}"),
            other => panic!("{other:?}"),
        }
        // No temp files are left behind.
        let stray: Vec<_> = std::fs::read_dir(&s.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(stray.is_empty());
    }

    #[test]
    fn store_is_content_addressed_and_verified() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        let sha = crate::source::sha256_hex(b"profile x {}");
        s.store_put(&sha, b"profile x {}").unwrap();
        assert_eq!(s.store_get(&sha).unwrap(), b"profile x {}");
        assert_eq!(s.store_entries(), std::slice::from_ref(&sha));
        // A damaged entry is not returned, and a put repairs it.
        std::fs::write(s.store_path(&sha), "garbage").unwrap();
        assert!(s.store_get(&sha).is_none());
        s.store_put(&sha, b"profile x {}").unwrap();
        assert!(s.store_get(&sha).is_some());
        let other = crate::source::sha256_hex(b"y");
        s.store_put(&other, b"y").unwrap();
        assert_eq!(s.store_gc(&[sha.clone()].into()).unwrap(), 1);
        assert_eq!(s.store_entries(), [sha]);
    }

    #[test]
    fn recover_adopts_pending_loads_the_kernel_holds() {
        let mut m = Manifest::new();
        m.profiles.insert("custom.old".into(), owned("11"));
        let p = |sha: &str| PendingLoad {
            file: "/src/b".into(),
            source: "/src".into(),
            sha256: sha.into(),
            complain: false,
        };
        m.pending.insert("custom.new".into(), p("22"));
        m.pending.insert("custom.old".into(), p("33"));
        m.pending.insert("custom.never".into(), p("44"));
        let kernel: BTreeMap<String, String> = [("custom.new", "enforce"), ("custom.old", "enforce")]
            .into_iter()
            .map(|(a, b)| (a.into(), b.into()))
            .collect();
        let adopted = m.recover(&kernel);
        assert_eq!(adopted, ["custom.new", "custom.old"]);
        assert!(m.pending.is_empty());
        assert_eq!(m.profiles.len(), 2);
        assert_eq!(m.profiles["custom.new"].sha256, "");
        assert!(!m.profiles.contains_key("custom.never"));
    }

    #[test]
    fn unwritable_state_dir_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();
        let s = StateDir::new(t.path().join("file/state"));
        let e = s.prepare().unwrap_err();
        assert!(e.to_string().contains("file/state"), "{e}");
    }
}
