//! The ownership manifest (`state.json`) and its pending-load log
//! (`pending.log`): what armord owns, and the loads in flight since the
//! manifest was last written.

use super::write::write_replace;
use super::{StateDir, StateError, io_err};
use crate::apparmor::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const MANIFEST_VERSION: u32 = 1;

/// Fewer names added than this are not worth packing the table for.
const PACK_MIN: usize = 256;

/// A profile armord loaded and therefore owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// The source file as the operator names it (shared with the plan's
    /// file and the published row).
    pub file: Arc<Path>,
    /// The configured source it came from (shared by its every file).
    pub source: Arc<Path>,
    /// sha256 of the file content that was loaded (its store key).
    pub sha256: crate::sha::Sha,
    /// Loaded with `-C` (forced complain).
    #[serde(default)]
    pub complain: bool,
    /// The mode the kernel reported after the load.
    pub mode: crate::apparmor::Mode,
}

/// A load that was started but not confirmed. If armord dies between the
/// parser call and the manifest write, the next start adopts the profile when
/// the kernel holds it, so nothing armord loaded is ever left unowned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLoad {
    /// Shared with the load's own (a set load notes thousands at once).
    pub file: Arc<Path>,
    pub source: Arc<Path>,
    pub sha256: crate::sha::Sha,
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
    /// The profiles whose entry changed since [`Manifest::take_touched`]
    /// was last called: what is published follows them a name at a time.
    #[serde(skip)]
    touched: Touched,
    /// Names added to `profiles` since it was last packed.
    #[serde(skip)]
    added: Added,
}

/// How many names were added since the table was last packed: not part of
/// what a manifest is either.
#[derive(Debug, Clone, Default)]
struct Added(usize);

impl PartialEq for Added {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Added {}

/// Names whose owned entry changed; `None`: every name (a manifest just
/// read or built, whose readers have not seen it yet). Not part of what a
/// manifest is: two manifests that own the same are equal.
#[derive(Debug, Clone, Default)]
struct Touched(Option<BTreeSet<String>>);

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Touched {}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            ..Default::default()
        }
    }

    /// Own `name` as `o`.
    pub fn own(&mut self, name: String, o: Owned) {
        self.touch(&name);
        if self.profiles.insert(name, o).is_none() {
            self.added.0 += 1;
        }
    }

    /// Build the table of owned profiles again, packed, when many names
    /// were added to it since it last was: names added one at a time (a
    /// start's loads, a manifest read) leave each of its nodes a little
    /// over half full, and one build from the sorted names fills them
    /// (at 10,000 profiles, 0.6 MB less held for as long as armord runs).
    /// Moves the entries; copies nothing.
    pub fn pack_if_grown(&mut self) {
        if self.added.0 >= PACK_MIN && self.added.0 * 4 >= self.profiles.len() {
            self.profiles = std::mem::take(&mut self.profiles).into_iter().collect();
        }
        self.added.0 = 0;
    }

    /// Own `name` no more.
    pub fn disown(&mut self, name: &str) -> Option<Owned> {
        self.touch(name);
        self.profiles.remove(name)
    }

    /// The entry of `name`, to change in place.
    pub fn owned_mut(&mut self, name: &str) -> Option<&mut Owned> {
        self.touch(name);
        self.profiles.get_mut(name)
    }

    fn touch(&mut self, name: &str) {
        if let Some(t) = &mut self.touched.0
            && !t.contains(name)
        {
            t.insert(name.to_owned());
        }
    }

    /// The names whose entry changed since the last call (`None`: every
    /// name may have), and from now on, none.
    pub fn take_touched(&mut self) -> Option<BTreeSet<String>> {
        self.touched.0.replace(BTreeSet::new())
    }

    /// Settle what a crash left behind, against what the kernel holds: a
    /// pending load the kernel has becomes owned (with an unknown hash, so the
    /// next reconcile replaces it); one it lacks is dropped.
    pub fn recover(&mut self, kernel: &BTreeMap<String, Mode>) -> Vec<String> {
        let mut adopted = Vec::new();
        for (name, p) in std::mem::take(&mut self.pending) {
            if let Some(mode) = kernel.get(&name) {
                self.touch(&name);
                let entry = self.profiles.entry(name.clone()).or_insert_with(|| Owned {
                    file: p.file.clone(),
                    source: p.source.clone(),
                    sha256: Default::default(),
                    complain: p.complain,
                    mode: mode.clone(),
                });
                if entry.sha256 != p.sha256 {
                    entry.sha256 = Default::default();
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
            .map(|o| o.sha256.to_string())
            .chain(self.pending.values().map(|p| p.sha256.to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    }
}

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
    /// The manifest or its pending-load log cannot be read or parsed; the
    /// error names the file (the one to set aside) and says why.
    Corrupt(StateError),
}

impl StateDir {
    /// The pending-load log, opened (created) on first use.
    fn with_log<T>(&self, f: impl FnOnce(&mut std::fs::File) -> std::io::Result<T>) -> Result<T, StateError> {
        let path = self.pending_log();
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

    /// Read the manifest, with the pending loads recorded for its
    /// generation. Nothing is changed on disk: the owner of the state sets
    /// a corrupt file aside (see [`super::set_aside`]).
    pub fn load_manifest(&self) -> Loaded {
        let path = self.manifest();
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
                Ok(()) => {
                    m.added.0 = m.profiles.len();
                    m.pack_if_grown();
                    Loaded::Found(m)
                }
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

    /// Write the manifest durably (the next generation), with its pending
    /// loads; the pending-load log is then obsolete, and emptied.
    pub fn save_manifest(&self, m: &mut Manifest) -> Result<(), StateError> {
        m.generation += 1;
        let written = serde_json::to_vec(m)
            .map_err(|e| StateError::Corrupt {
                path: self.manifest(),
                reason: e.to_string(),
            })
            .and_then(|mut text| {
                text.push(b'\n');
                write_replace(&self.manifest(), &text, true, None)
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
        let path = self.pending_log();
        crate::failpoint::hit("state-write").map_err(io_err(&path))?;
        // Written from the manifest's own entries, not a copy of them.
        #[derive(Serialize)]
        struct Record<'a> {
            generation: u64,
            pending: &'a BTreeMap<String, PendingLoad>,
        }
        let record = Record {
            generation: m.generation,
            pending: &m.pending,
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
        let path = self.pending_log();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(sha: &str) -> Owned {
        Owned {
            file: Path::new("/src/a").into(),
            source: Path::new("/src").into(),
            sha256: sha.into(),
            complain: false,
            mode: Mode::Enforce,
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
        std::fs::write(s.manifest(), "{\"version\": 1, \"profiles\": {").unwrap();
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
    fn packing_the_table_keeps_every_entry_and_what_changed() {
        let mut m = Manifest::new();
        let _ = m.take_touched();
        for i in (0..1000).rev() {
            m.own(format!("custom.p{i:04}"), owned(&format!("{i}")));
        }
        m.disown("custom.p0500");
        let before = m.profiles.clone();
        m.pack_if_grown();
        assert_eq!(m.profiles, before);
        assert_eq!(m.profiles.get("custom.p0007").map(|o| o.sha256.as_str()), Some("7"));
        assert_eq!(m.take_touched().map(|t| t.len()), Some(1000));
        // A manifest read back is packed as it is read, and owns the same.
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().join("state"));
        s.prepare().unwrap();
        s.save_manifest(&mut m).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back.profiles, before),
            other => panic!("{other:?}"),
        }
    }

    fn pending(sha: &str) -> PendingLoad {
        PendingLoad {
            file: Path::new("/src/b").into(),
            source: Path::new("/src").into(),
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
        let manifest_before = std::fs::read(s.manifest()).unwrap();

        // Intent recorded: the manifest file is not rewritten, and a crash
        // now finds the pending load on reading; the latest record counts.
        m.pending.insert("custom.b".into(), pending("b0"));
        s.save_pending(&m).unwrap();
        m.pending.insert("custom.b".into(), pending("bb"));
        s.save_pending(&m).unwrap();
        assert_eq!(std::fs::read(s.manifest()).unwrap(), manifest_before);
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back.pending.get("custom.b"), Some(&pending("bb"))),
            other => panic!("{other:?}"),
        }
        // A line cut by a crash while it was written is not read; the one
        // before it is.
        let whole = std::fs::read(s.pending_log()).unwrap();
        let mut cut = whole.clone();
        cut.extend_from_slice(b"{\"generation\": 1, \"pend");
        std::fs::write(s.pending_log(), &cut).unwrap();
        match s.load_manifest() {
            Loaded::Found(back) => assert_eq!(back.pending.get("custom.b"), Some(&pending("bb"))),
            other => panic!("{other:?}"),
        }
        std::fs::write(s.pending_log(), &whole).unwrap();

        // The load confirmed and the manifest written: the record is gone,
        // and a stale one (a crash before it was removed) is not read back.
        m.pending.clear();
        m.profiles.insert("custom.b".into(), owned("bb"));
        let stale = std::fs::read(s.pending_log()).unwrap();
        s.save_manifest(&mut m).unwrap();
        assert_eq!(std::fs::read(s.pending_log()).unwrap(), b"", "emptied");
        std::fs::write(s.pending_log(), stale).unwrap();
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
        std::fs::write(s.pending_log(), "{\"generation\": 0, \"pend").unwrap();
        assert!(matches!(s.load_manifest(), Loaded::Missing));
        // Damaged before its last line: an error naming the file and line.
        std::fs::write(s.pending_log(), "{\"generation\": 0, \"pend\n{}\n").unwrap();
        match s.load_manifest() {
            Loaded::Corrupt(e) => assert!(e.to_string().contains("pending.log: corrupt manifest: line 1"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recover_adopts_pending_loads_the_kernel_holds() {
        let mut m = Manifest::new();
        m.profiles.insert("custom.old".into(), owned("11"));
        let p = |sha: &str| PendingLoad {
            file: Path::new("/src/b").into(),
            source: Path::new("/src").into(),
            sha256: sha.into(),
            complain: false,
        };
        m.pending.insert("custom.new".into(), p("22"));
        m.pending.insert("custom.old".into(), p("33"));
        m.pending.insert("custom.never".into(), p("44"));
        let kernel: BTreeMap<String, Mode> = [("custom.new", "enforce"), ("custom.old", "enforce")]
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
}
