//! The ownership manifest (`state.json`), the store of last-good files, and
//! atomic writes (temp file, fsync, rename, fsync of the directory).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
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
/// Write `data` into the existing file `tmp`, then rename it to `path`
/// (not durable); `tmp` is gone either way.
fn write_into(tmp: &Path, path: &Path, data: &[u8], midpoint: Option<&str>) -> Result<(), StateError> {
    let result = (|| {
        crate::failpoint::hit("state-write").map_err(io_err(tmp))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(tmp)
            .map_err(io_err(tmp))?;
        f.write_all(data).map_err(io_err(tmp))?;
        if let Some(point) = midpoint {
            crate::failpoint::hit(point).map_err(io_err(tmp))?;
        }
        std::fs::rename(tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

fn write_replace(path: &Path, data: &[u8], durable: bool, midpoint: Option<&str>) -> Result<(), StateError> {
    write_replace_with(path, data, durable, midpoint, |_| Ok(()))
}

/// A name no one can guess: the process and 64 random bits.
fn unpredictable() -> String {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is seeded from the operating system's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    format!("{}.{:016x}", std::process::id(), h.finish())
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

/// A new private directory (mode 0700) in the temporary directory, named
/// `PREFIX-PID.RANDOM` and made with a plain mkdir: a name another user
/// planted there (a symlink into root's files) is never used.
pub fn private_temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!("{prefix}-{}", unpredictable()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
}

/// Create a new temporary file beside `path` that never existed before:
/// `.NAME.tmp.PID.RANDOM`, made with `O_CREAT | O_EXCL | O_NOFOLLOW`
/// (mode 0666 less the umask, as a plain create), so a symlink or file
/// planted at any name is never followed or reused.
pub fn create_temp(path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..8 {
        let tmp = dir.join(format!(".{name}.tmp.{}", unpredictable()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name left")))
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
    let mut tmp = dir.join(".tmp");
    let result = (|| {
        crate::failpoint::hit("state-write").map_err(io_err(path))?;
        let (made, mut f) = create_temp(path).map_err(io_err(path))?;
        tmp = made;
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
    /// Counts the durable writes of the manifest: a pending-load record
    /// (`pending.log`) belongs to the manifest of its generation only.
    #[serde(default)]
    pub generation: u64,
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
    /// The serial of each signed source's last applied revision (the floor
    /// a rollback is judged against), as durable as the manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub serials: BTreeMap<PathBuf, u64>,
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

/// The pending-load record's file in the state directory.
pub const PENDING_FILE: &str = "pending.log";

/// The pending-load record: the loads in flight since the manifest of
/// `generation`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingRecord {
    generation: u64,
    pending: BTreeMap<String, PendingLoad>,
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
    /// The pending-load log, opened once for appending.
    log: std::sync::Arc<std::sync::Mutex<Option<std::fs::File>>>,
    /// An empty file made ahead in `spare/`, for the next new stored copy:
    /// making a file costs most of a millisecond on some file systems, and
    /// a change should not wait for it.
    spare: std::sync::Arc<std::sync::Mutex<Option<PathBuf>>>,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir {
            dir,
            log: Default::default(),
            spare: Default::default(),
        }
    }

    /// The pending-load log, opened (created) on first use.
    fn with_log<T>(&self, f: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>) -> Result<T, StateError> {
        let path = self.pending_path();
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let file = match log.as_mut() {
            Some(file) => file,
            None => log.insert(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(io_err(&path))?,
            ),
        };
        f(file).map_err(io_err(&path))
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
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        // Created private (0700): the manifest and the store say what the
        // node's policy is.
        let store = self.store_dir();
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
        let _ = std::fs::remove_dir_all(self.spare_dir());
        self.store_spare();
        Ok(())
    }

    fn spare_dir(&self) -> PathBuf {
        self.dir.join("spare")
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
        let path = self.spare_dir().join(format!("{}.{n}", std::process::id()));
        let made = std::fs::create_dir_all(self.spare_dir()).and_then(|()| {
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

    pub fn load_manifest(&self) -> Loaded {
        let path = self.manifest_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // A first run that stopped between its first load and its
                // first manifest write left only the pending-load record.
                let mut m = Manifest::new();
                return match self.load_pending(&mut m) {
                    Ok(()) if m.pending.is_empty() => Loaded::Missing,
                    Ok(()) => Loaded::Found(m),
                    Err(e) => Loaded::Corrupt(e),
                };
            }
            Err(source) => return Loaded::Corrupt(StateError::Io { path, source }),
        };
        match serde_json::from_slice::<Manifest>(&text) {
            Ok(mut m) if m.version == MANIFEST_VERSION => match self.load_pending(&mut m) {
                Ok(()) => Loaded::Found(m),
                Err(e) => Loaded::Corrupt(e),
            },
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

    /// Where the loads in flight are recorded (see [`StateDir::save_pending`]).
    pub fn pending_path(&self) -> PathBuf {
        self.dir.join(PENDING_FILE)
    }

    /// Write the manifest durably (the next generation), with its pending
    /// loads; the pending-load log is then obsolete, and emptied.
    pub fn save_manifest(&self, m: &mut Manifest) -> Result<(), StateError> {
        m.generation += 1;
        let written = serde_json::to_vec_pretty(m)
            .map_err(|e| StateError::Corrupt {
                path: self.manifest_path(),
                reason: e.to_string(),
            })
            .and_then(|mut text| {
                text.push(b'\n');
                write_replace(&self.manifest_path(), &text, true, None)
            });
        if let Err(e) = written {
            // The file still holds the generation before.
            m.generation -= 1;
            return Err(e);
        }
        // Emptied on its open descriptor; a record left by a crash before
        // this is of an older generation, and ignored.
        let _ = self.with_log(|f| f.set_len(0));
        Ok(())
    }

    /// Record the loads in flight (`m.pending`) before the parser loads
    /// them, so that a crash of armord between the load and the manifest
    /// write leaves nothing it loaded unowned: one line appended to the
    /// pending-load log on its open descriptor (no file created, renamed or
    /// synced on the path to the load; the whole manifest is not rewritten).
    /// A crash of armord leaves the line in the page cache; a power loss
    /// empties the kernel too, so a record of loads in flight has nothing to
    /// protect then, and the durable manifest write after the load does.
    pub fn save_pending(&self, m: &Manifest) -> Result<(), StateError> {
        let path = self.pending_path();
        crate::failpoint::hit("state-write").map_err(io_err(&path))?;
        let record = PendingRecord {
            generation: m.generation,
            pending: m.pending.clone(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        self.with_log(|f| f.write_all(&line))
    }

    /// Add the latest pending-load record of `m`'s generation to
    /// `m.pending`. A record of another generation is one the manifest has
    /// since taken in; a last line without its newline was cut by a crash
    /// while written, before its loads began.
    fn load_pending(&self, m: &mut Manifest) -> Result<(), StateError> {
        let path = self.pending_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let mut latest = None;
        for (i, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
            let Some(line) = line.strip_suffix(b"\n") else {
                break;
            };
            let record: PendingRecord = serde_json::from_slice(line).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            if record.generation == m.generation {
                latest = Some(record.pending);
            }
        }
        m.pending.extend(latest.unwrap_or_default());
        Ok(())
    }

    /// Put a file's content into the store under its hash. Idempotent. Not
    /// yet durable: [`StateDir::store_sync`] makes it so, before the manifest
    /// refers to it, which keeps fsyncs off the path to the parser.
    pub fn store_put(&self, sha256: &str, content: &[u8]) -> Result<PathBuf, StateError> {
        let path = self.store_path(sha256);
        if self.store_get(sha256).is_some() {
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
        s.save_manifest(&mut m).unwrap();
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

    fn pending(sha: &str) -> PendingLoad {
        PendingLoad {
            file: "/src/b".into(),
            source: "/src".into(),
            sha256: sha.into(),
            complain: false,
        }
    }

    #[test]
    fn a_pending_record_belongs_to_its_manifest_generation_only() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().join("state"));
        s.prepare().unwrap();
        let mut m = Manifest::new();
        m.profiles.insert("custom.a".into(), owned("aa"));
        s.save_manifest(&mut m).unwrap();
        let manifest_before = std::fs::read(s.manifest_path()).unwrap();

        // Intent recorded: the manifest file is not rewritten, and a crash
        // now finds the pending load on reading; the latest record counts.
        m.pending.insert("custom.b".into(), pending("b0"));
        s.save_pending(&m).unwrap();
        m.pending.insert("custom.b".into(), pending("bb"));
        s.save_pending(&m).unwrap();
        assert_eq!(std::fs::read(s.manifest_path()).unwrap(), manifest_before);
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back.pending.get("custom.b"), Some(&pending("bb"))),
            other => panic!("{other:?}"),
        }
        // A line cut by a crash while it was written is not read; the one
        // before it is.
        let whole = std::fs::read(s.pending_path()).unwrap();
        let mut cut = whole.clone();
        cut.extend_from_slice(b"{\"generation\": 1, \"pend");
        std::fs::write(s.pending_path(), &cut).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back.pending.get("custom.b"), Some(&pending("bb"))),
            other => panic!("{other:?}"),
        }
        std::fs::write(s.pending_path(), &whole).unwrap();

        // The load confirmed and the manifest written: the record is gone,
        // and a stale one (a crash before it was removed) is not read back.
        m.pending.clear();
        m.profiles.insert("custom.b".into(), owned("bb"));
        let stale = std::fs::read(s.pending_path()).unwrap();
        s.save_manifest(&mut m).unwrap();
        assert_eq!(std::fs::read(s.pending_path()).unwrap(), b"", "emptied");
        std::fs::write(s.pending_path(), stale).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => {
                assert!(back.pending.is_empty(), "{back:?}");
                assert_eq!(back, m);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_first_run_stopped_before_its_first_manifest_keeps_its_pending_loads() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().join("state"));
        s.prepare().unwrap();
        let mut m = Manifest::new();
        m.pending.insert("custom.b".into(), pending("bb"));
        s.save_pending(&m).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back, m),
            other => panic!("{other:?}"),
        }
        // Cut while written: nothing was loaded yet, nothing to keep.
        std::fs::write(s.pending_path(), "{\"generation\": 0, \"pend").unwrap();
        assert!(matches!(s.load_manifest(), Loaded::Missing));
        // Damaged before its last line: an error naming the file and line.
        std::fs::write(s.pending_path(), "{\"generation\": 0, \"pend\n{}\n").unwrap();
        match s.load_manifest() {
            Loaded::Corrupt(e) => assert!(e.to_string().contains("pending.log: corrupt manifest: line 1"), "{e}"),
            other => panic!("{other:?}"),
        }
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
        assert_eq!(std::fs::metadata(s.store_path(&a)).unwrap().ino(), spare_inode);
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

    #[test]
    fn a_symlink_planted_at_a_temporary_or_the_target_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "root-only\n").unwrap();
        let out = d.path().join("armord.prom");
        // The name temporaries had before, and a symlink as the target.
        std::os::unix::fs::symlink(
            &victim,
            d.path().join(format!(".armord.prom.tmp.{}", std::process::id())),
        )
        .unwrap();
        atomic_write_readable(&out, b"metrics\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only\n");
        std::fs::remove_file(&out).unwrap();
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        atomic_write(&out, b"state\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only\n");
        assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "state\n");
        // Two temporaries for one file never share a name.
        let (a, _) = create_temp(&out).unwrap();
        let (b, _) = create_temp(&out).unwrap();
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".armord.prom.tmp.")
        );
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
    fn private_temporary_directories_are_new_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let a = private_temp_dir("armord-test").unwrap();
        let b = private_temp_dir("armord-test").unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            let m = std::fs::symlink_metadata(d).unwrap();
            assert!(m.is_dir() && m.permissions().mode() & 0o777 == 0o700);
            std::fs::remove_dir(d).unwrap();
        }
    }

    #[test]
    fn the_store_never_writes_through_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "root-only\n").unwrap();
        let state = StateDir::new(d.path().join("state"));
        state.prepare().unwrap();
        // The spare a store write would take, and every name it could have.
        for entry in std::fs::read_dir(state.spare_dir()).unwrap().flatten() {
            std::fs::remove_file(entry.path()).unwrap();
            std::os::unix::fs::symlink(&victim, entry.path()).unwrap();
        }
        for n in 0..64 {
            let _ = std::os::unix::fs::symlink(&victim, state.spare_dir().join(format!("{}.{n}", std::process::id())));
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
}
