//! The learned rules on disk: a snapshot (`learned.json`) and a log of the
//! rules learned since it (`learned.log`, one JSON line each, appended the
//! moment a rule is new). A kill -9 loses no rule: a new rule is in the
//! log before the record that taught it is passed on. What it can lose is
//! the count and last-seen time of rules already known, for at most one
//! flush interval. A snapshot or log line that cannot be read (damaged, or
//! from another format) is set aside as `*.corrupt` with one warning, and
//! learning starts again from what could be read.

use super::learned::{At, Bounds, Learned, Observed};
use crate::audit::suggest::One;
use crate::state::StateDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    State(#[from] crate::state::StateError),
}

/// The snapshot: the learned rules and the last log line they include.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    learned: Learned,
    seq: u64,
}

/// One learned rule, as logged.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    seq: u64,
    profile: String,
    sha256: String,
    #[serde(flatten)]
    rule: LoggedRule,
    at_us: u64,
    /// The audit serial of the record that taught it (0: none).
    #[serde(default)]
    serial: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum LoggedRule {
    File { path: String, perms: BTreeSet<char> },
    Rule { rule: String },
}

impl LoggedRule {
    fn of(one: &One) -> Self {
        match one {
            One::File(path, perms) => LoggedRule::File {
                path: path.clone(),
                perms: perms.clone(),
            },
            One::Rule(rule) => LoggedRule::Rule { rule: rule.clone() },
        }
    }

    fn one(self) -> One {
        match self {
            LoggedRule::File { path, perms } => One::File(path, perms),
            LoggedRule::Rule { rule } => One::Rule(rule),
        }
    }
}

/// The learned rules with their files.
#[derive(Debug)]
pub struct Store {
    snapshot: PathBuf,
    log: PathBuf,
    pub learned: Learned,
    bounds: Bounds,
    seq: u64,
    /// Counts moved since the last snapshot.
    dirty: bool,
    /// The log, open for appending while lines go into it.
    log_file: Option<std::fs::File>,
    /// Lines written to the log since it was last synced.
    unsynced: bool,
    /// Something learned was lost at open (a file set aside): trials
    /// must start again, as what they learned is not known.
    pub lost: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Rename a file that cannot be read out of the way, and say so once.
fn set_aside(path: &Path, why: &str) {
    let aside = crate::state::set_aside(path);
    log::warn!("{}: {why}; {aside}; learning starts again", crate::escape::path(path));
}

impl Store {
    /// Open the store in a state directory: the snapshot, then the log
    /// lines after it.
    pub fn open(state: &StateDir, bounds: Bounds) -> Store {
        Store::read(state, bounds, true)
    }

    /// What the store in `dir` holds, for a reader that changes nothing
    /// (`armorctl learn`): a damaged file is skipped with a warning, not
    /// set aside.
    pub fn peek(state: &StateDir) -> Learned {
        let unbounded = Bounds {
            max_rules: usize::MAX,
            max_profiles: usize::MAX,
        };
        Store::read(state, unbounded, false).learned
    }

    fn read(state: &StateDir, bounds: Bounds, fix: bool) -> Store {
        let lost = std::cell::Cell::new(false);
        let set_aside = |path: &Path, why: &str| {
            lost.set(true);
            if fix {
                set_aside(path, why);
            } else {
                log::warn!("{}: {why}; skipped", crate::escape::path(path));
            }
        };
        let snapshot = state.learned();
        let log = state.learned_log();
        let (learned, seq) = match std::fs::read(&snapshot) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Learned::default(), 0),
            Err(e) => {
                set_aside(&snapshot, &format!("cannot be read: {e}"));
                (Learned::default(), 0)
            }
            Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) if s.learned.format == super::learned::FORMAT => (s.learned, s.seq),
                Ok(s) => {
                    set_aside(&snapshot, &format!("format {} is not this armord's", s.learned.format));
                    (Learned::default(), 0)
                }
                Err(e) => {
                    set_aside(&snapshot, &format!("damaged: {e}"));
                    (Learned::default(), 0)
                }
            },
        };
        let mut store = Store {
            snapshot,
            log,
            learned,
            bounds,
            seq,
            dirty: false,
            log_file: None,
            unsynced: false,
            lost: false,
        };
        store.replay(&set_aside, fix);
        store.lost = lost.get();
        store
    }

    fn replay(&mut self, set_aside: &dyn Fn(&Path, &str), fix: bool) {
        let text = match std::fs::read_to_string(&self.log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                set_aside(&self.log, &format!("cannot be read: {e}"));
                return;
            }
        };
        for (n, l) in text.lines().enumerate() {
            match serde_json::from_str::<Line>(l) {
                Ok(line) if line.seq <= self.seq => {}
                Ok(line) => {
                    self.seq = line.seq;
                    let one = line.rule.one();
                    self.learned.observe(
                        &line.profile,
                        &line.sha256,
                        &one,
                        At {
                            us: line.at_us,
                            serial: line.serial,
                        },
                        self.bounds,
                    );
                    self.dirty = true;
                }
                // A line cut short by a kill -9 mid-write is the last one:
                // cut off, so that lines appended later start on their own.
                Err(_) if n + 1 == text.lines().count() && !text.ends_with('\n') => {
                    if fix {
                        let keep = text.rfind('\n').map_or(0, |i| i + 1);
                        let cut = std::fs::OpenOptions::new()
                            .write(true)
                            .open(&self.log)
                            .and_then(|f| f.set_len(keep as u64));
                        if let Err(e) = cut {
                            set_aside(&self.log, &format!("cannot cut off its last, partial line: {e}"));
                        }
                    }
                }
                Err(e) => {
                    set_aside(&self.log, &format!("line {}: {e}", n + 1));
                    return;
                }
            }
        }
    }

    /// Learn `one` for version `sha256` of `profile`; a rule new to that
    /// version is logged before this returns.
    pub fn observe(&mut self, profile: &str, sha256: &str, one: &One, at: At) -> Result<Observed, StoreError> {
        let o = self.learned.observe(profile, sha256, one, at, self.bounds);
        self.dirty = true;
        if o == Observed::New {
            self.seq += 1;
            let line = Line {
                seq: self.seq,
                profile: profile.to_owned(),
                sha256: sha256.to_owned(),
                rule: LoggedRule::of(one),
                at_us: at.us,
                serial: at.serial,
            };
            let mut text = serde_json::to_string(&line).unwrap_or_default();
            text.push('\n');
            if self.log_file.is_none() {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .custom_flags_private()
                    .open(&self.log)
                    .map_err(io(&self.log))?;
                self.log_file = Some(f);
            }
            if let Some(f) = self.log_file.as_mut() {
                // Synced before the journal cursor passes the record that
                // taught it ([`Store::sync`]): a power loss loses no rule
                // the cursor has gone past. One sync a batch of records,
                // not one a rule.
                f.write_all(text.as_bytes()).map_err(io(&self.log))?;
                self.unsynced = true;
            }
        }
        Ok(o)
    }

    /// Put the log's lines on disk; called before the journal cursor
    /// moves past the records that taught them.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced
            && let Some(f) = self.log_file.as_mut()
        {
            f.sync_data().map_err(io(&self.log))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Write the snapshot and empty the log, when anything moved.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let snap = Snapshot {
            learned: self.learned.clone(),
            seq: self.seq,
        };
        let text = serde_json::to_vec(&snap).unwrap_or_default();
        crate::state::atomic_write(&self.snapshot, &text)?;
        // Every line is in the snapshot now (its seq says so): a crash
        // before this truncation replays none of them twice.
        self.log_file = None;
        self.unsynced = false;
        match std::fs::remove_file(&self.log) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.log)(e)),
        }
        self.dirty = false;
        Ok(())
    }
}

/// Open a file readable by its owner only.
trait PrivateOpen {
    fn custom_flags_private(&mut self) -> &mut Self;
}

impl PrivateOpen for std::fs::OpenOptions {
    fn custom_flags_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600).custom_flags(nix::libc::O_NOFOLLOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_rules: 100,
        max_profiles: 10,
    };

    fn file(p: &str) -> One {
        One::File(p.to_owned(), ['r'].into())
    }

    #[test]
    fn a_new_rule_survives_a_kill_before_any_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        s.observe("p", "v", &file("/a"), At::us(1)).unwrap();
        s.observe("p", "v", &file("/a"), At::us(2)).unwrap();
        drop(s); // no flush: as a kill -9
        let s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert_eq!(s.learned.version("p", "v").unwrap().render(), ["/a r,"]);
    }

    #[test]
    fn a_flush_then_a_crash_before_the_log_is_emptied_counts_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        s.observe("p", "v", &file("/a"), At::us(1)).unwrap();
        let log = std::fs::read(dir.path().join("learned.log")).unwrap();
        s.flush().unwrap();
        // As if the process died between the snapshot and the truncation.
        std::fs::write(dir.path().join("learned.log"), log).unwrap();
        let s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        let v = s.learned.version("p", "v").unwrap();
        assert_eq!(v.files["/a"].seen.count, 1);
    }

    #[test]
    fn damaged_files_are_set_aside_and_learning_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("learned.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("learned.log"), b"garbage\n{\"also\":1}\n").unwrap();
        let mut s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert!(s.learned.profiles.is_empty() && s.lost);
        assert!(dir.path().join("learned.json.corrupt").exists());
        assert!(dir.path().join("learned.log.corrupt").exists());
        s.observe("p", "v", &file("/b"), At::us(1)).unwrap();
        s.flush().unwrap();
        let s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert_eq!(s.learned.version("p", "v").unwrap().render(), ["/b r,"]);
    }

    #[test]
    fn another_format_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let other = Learned {
            format: 99,
            ..Default::default()
        };
        let snap = serde_json::to_vec(&Snapshot { learned: other, seq: 0 }).unwrap();
        std::fs::write(dir.path().join("learned.json"), snap).unwrap();
        let s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert!(s.learned.profiles.is_empty());
        assert!(dir.path().join("learned.json.corrupt").exists());
    }

    #[test]
    fn a_line_cut_short_by_a_kill_is_dropped_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        s.observe("p", "v", &file("/a"), At::us(1)).unwrap();
        drop(s);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("learned.log"))
            .unwrap();
        f.write_all(b"{\"seq\":2,\"prof").unwrap();
        let mut s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert_eq!(s.learned.version("p", "v").unwrap().render(), ["/a r,"]);
        assert!(!dir.path().join("learned.log.corrupt").exists() && !s.lost);
        // Lines appended later start on their own line.
        s.observe("p", "v", &file("/c"), At::us(3)).unwrap();
        drop(s);
        let s = Store::open(&StateDir::new(dir.path().to_owned()), B);
        assert_eq!(s.learned.version("p", "v").unwrap().render(), ["/a r,", "/c r,"]);
    }
}
