//! The trial book: for each profile in trial, the version on trial, since
//! when, the processes seen confined by it and the audit losses during it;
//! and which versions were promoted, when and by whom. Kept in the state
//! directory (`trial.json`), written atomically on every change, so a
//! promotion survives restarts and reboots (the boot restore loads the
//! promoted mode). A damaged book is set aside as `trial.json.corrupt`
//! with one warning and every trial starts again: nothing is promoted by
//! a book that cannot be read.

use super::gate::Evidence;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The format of `trial.json`; another one is set aside.
pub const FORMAT: u32 = 1;

/// How many distinct confined process IDs are kept per trial: the gate
/// needs one; the count shown is capped here.
pub const MAX_PIDS: usize = 64;

/// Who promoted a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Promoter {
    /// The gate, on this node's own evidence.
    Gate,
    /// An operator, through `armorctl promote` (the caller's uid).
    Operator { uid: u32 },
}

/// One profile's trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The version on trial.
    pub sha256: String,
    /// When it was loaded in trial (µs since the epoch).
    pub since_us: u64,
    /// Processes seen confined by it (at most `MAX_PIDS`).
    pub pids: BTreeSet<u32>,
    /// Audit records lost while it was in trial.
    pub lost: u64,
    /// When and by whom it was promoted: then it is loaded in enforce mode.
    pub promoted: Option<(u64, Promoter)>,
}

impl Trial {
    /// The gate's evidence, with `learned` rules for this version.
    pub fn evidence(&self, learned: usize) -> Evidence {
        Evidence {
            since_us: self.since_us,
            confined: self.pids.len() as u64,
            learned,
            lost: self.lost,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub format: u32,
    pub trials: BTreeMap<String, Trial>,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            format: FORMAT,
            trials: BTreeMap::new(),
        }
    }
}

impl Book {
    /// Read the book; a damaged one (or one of another format) is set
    /// aside and an empty book returned.
    pub fn load(path: &Path) -> Book {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Book::default(),
            Err(e) => {
                set_aside(path, &format!("cannot be read: {e}"));
                return Book::default();
            }
        };
        match serde_json::from_slice::<Book>(&bytes) {
            Ok(b) if b.format == FORMAT => b,
            Ok(b) => {
                set_aside(path, &format!("format {} is not this armord's", b.format));
                Book::default()
            }
            Err(e) => {
                set_aside(path, &format!("damaged: {e}"));
                Book::default()
            }
        }
    }

    /// Read the book without changing anything (for armorctl).
    pub fn peek(path: &Path) -> Book {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Book>(&b).ok())
            .filter(|b| b.format == FORMAT)
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> Result<(), crate::state::StateError> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::state::atomic_write(path, &text)
    }

    /// Version `sha256` of `name` is loaded in trial now: a trial of
    /// another version ends and this one starts at `now_us`. True when
    /// anything changed.
    pub fn on_trial(&mut self, name: &str, sha256: &str, now_us: u64) -> bool {
        if self.trials.get(name).is_some_and(|t| t.sha256 == sha256) {
            return false;
        }
        self.trials.insert(
            name.to_owned(),
            Trial {
                sha256: sha256.to_owned(),
                since_us: now_us,
                pids: BTreeSet::new(),
                lost: 0,
                promoted: None,
            },
        );
        true
    }

    /// Is version `sha256` of `name` promoted?
    pub fn promoted(&self, name: &str, sha256: &str) -> bool {
        self.trials
            .get(name)
            .is_some_and(|t| t.sha256 == sha256 && t.promoted.is_some())
    }

    /// Processes confined by profiles now: added to the trials of those
    /// not promoted yet. True when anything changed.
    pub fn saw_confined(&mut self, confined: &BTreeMap<String, Vec<u32>>) -> bool {
        let mut changed = false;
        for (name, t) in self.trials.iter_mut().filter(|(_, t)| t.promoted.is_none()) {
            for pid in confined.get(name).into_iter().flatten() {
                if t.pids.len() < MAX_PIDS {
                    changed |= t.pids.insert(*pid);
                }
            }
        }
        changed
    }

    /// `n` audit records were lost: every trial running now counts them.
    pub fn saw_loss(&mut self, n: u64) -> bool {
        let mut changed = false;
        for t in self.trials.values_mut().filter(|t| t.promoted.is_none()) {
            t.lost = t.lost.saturating_add(n);
            changed |= n > 0;
        }
        changed
    }

    /// Forget trials of profiles `keep` does not keep.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> bool {
        let before = self.trials.len();
        self.trials.retain(|n, _| keep(n));
        self.trials.len() != before
    }
}

fn set_aside(path: &Path, why: &str) {
    let aside = crate::state::set_aside(path);
    log::warn!(
        "{}: {why}; {aside}; every trial starts again",
        crate::escape::path(path)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_version_starts_a_new_trial_and_promotion_is_per_version() {
        let mut b = Book::default();
        assert!(b.on_trial("p", "v1", 10));
        assert!(!b.on_trial("p", "v1", 20));
        assert_eq!(b.trials["p"].since_us, 10);
        b.trials.get_mut("p").unwrap().promoted = Some((30, Promoter::Gate));
        assert!(b.promoted("p", "v1"));
        assert!(b.on_trial("p", "v2", 40));
        assert!(!b.promoted("p", "v2"));
        assert_eq!(b.trials["p"].since_us, 40);
    }

    #[test]
    fn evidence_is_bounded_and_stops_at_promotion() {
        let mut b = Book::default();
        b.on_trial("p", "v", 0);
        b.on_trial("q", "v", 0);
        let many: BTreeMap<String, Vec<u32>> = [("p".to_owned(), (0..100).collect())].into();
        assert!(b.saw_confined(&many));
        assert_eq!(b.trials["p"].pids.len(), MAX_PIDS);
        assert!(b.saw_loss(3));
        assert_eq!(b.trials["q"].lost, 3);
        b.trials.get_mut("q").unwrap().promoted = Some((1, Promoter::Operator { uid: 0 }));
        b.saw_loss(5);
        assert_eq!((b.trials["p"].lost, b.trials["q"].lost), (8, 3));
    }

    #[test]
    fn a_damaged_book_is_set_aside_and_promotes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::state::StateDir::new(dir.path().to_owned()).trial_book();
        let mut b = Book::default();
        b.on_trial("p", "v", 1);
        b.trials.get_mut("p").unwrap().promoted = Some((2, Promoter::Gate));
        b.save(&path).unwrap();
        assert!(Book::load(&path).promoted("p", "v"));
        std::fs::write(&path, b"{\"format\":1,\"trials\":").unwrap();
        let b = Book::load(&path);
        assert!(!b.promoted("p", "v"));
        assert!(dir.path().join("trial.json.corrupt").exists());
        std::fs::write(&path, b"{\"format\":7,\"trials\":{}}").unwrap();
        assert!(Book::load(&path).trials.is_empty());
    }
}
