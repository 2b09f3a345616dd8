//! What each owned profile's current version would have denied, as the
//! rules that would allow it: de-duplicated, with first and last seen and
//! a count, keyed by the profile and its version (sha256), and bounded.
//! What a bound drops is counted, never silently lost.

use super::generalise::file_pattern;
use crate::audit::suggest::{One, perm_string};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The format of the learned-state file; another one is set aside.
pub const FORMAT: u32 = 1;

/// When the kernel wrote a record: its time (µs since the epoch) and its
/// audit serial (0 when it has none). Within a boot the serial grows, and
/// across boots the time does: a record read again after a kill -9 is at
/// or before the last one counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct At {
    pub us: u64,
    pub serial: u64,
}

impl At {
    /// A time with no serial (a record without one, or a test's clock).
    pub fn us(us: u64) -> Self {
        At { us, serial: 0 }
    }
}

/// When an access was seen (µs since the epoch), and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub first_us: u64,
    pub last_us: u64,
    pub count: u64,
    /// The audit serial of the last record counted (0: none).
    #[serde(default)]
    pub last_serial: u64,
}

impl Seen {
    fn new(at: At) -> Self {
        Seen {
            first_us: at.us,
            last_us: at.us,
            count: 1,
            last_serial: at.serial,
        }
    }

    /// Count one more record; a record with a serial at or before the last
    /// one counted is one read again (after a restart), and counts nothing.
    fn again(&mut self, at: At) {
        if at.serial != 0
            && at
                <= (At {
                    us: self.last_us,
                    serial: self.last_serial,
                })
        {
            return;
        }
        self.first_us = self.first_us.min(at.us);
        if at.us >= self.last_us {
            self.last_us = at.us;
            self.last_serial = at.serial;
        }
        self.count = self.count.saturating_add(1);
    }
}

/// A file pattern's permissions, merged over every access to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSeen {
    pub perms: BTreeSet<char>,
    pub seen: Seen,
}

/// The learned rules of one version of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub sha256: String,
    /// File rules by pattern.
    pub files: BTreeMap<String, FileSeen>,
    /// Every other rule, as written.
    pub rules: BTreeMap<String, Seen>,
    /// Distinct accesses not kept: the bound was reached.
    pub dropped: u64,
}

impl Version {
    fn new(sha256: &str) -> Self {
        Version {
            sha256: sha256.to_owned(),
            files: BTreeMap::new(),
            rules: BTreeMap::new(),
            dropped: 0,
        }
    }

    /// How many distinct rules are kept.
    pub fn len(&self) -> usize {
        self.files.len() + self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rules, ready for a profile: sorted, one per line.
    pub fn render(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .iter()
            .map(|(p, f)| format!("{p} {},", perm_string(&f.perms)))
            .chain(self.rules.keys().cloned())
            .collect();
        out.sort();
        out
    }
}

/// One profile's learned versions: the current one, and the one before it
/// for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub current: Version,
    pub previous: Option<Version>,
    /// When something was last learned for it (µs): the least recent
    /// profile is the one a bound drops.
    pub touched_us: u64,
}

impl Profile {
    /// Make `sha256` the current version: the previous one when it is that
    /// (a revert keeps what it learned), else a new set.
    fn switch_to(&mut self, sha256: &str) {
        if self.current.sha256 == sha256 {
            return;
        }
        let next = match self.previous.take() {
            Some(prev) if prev.sha256 == sha256 => prev,
            _ => Version::new(sha256),
        };
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }
}

/// How much is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Distinct rules per profile version.
    pub max_rules: usize,
    /// Profiles with learned rules.
    pub max_profiles: usize,
}

impl From<&crate::config::TrialConfig> for Bounds {
    /// `[trial] max_rules` and `max_profiles`.
    fn from(t: &crate::config::TrialConfig) -> Self {
        Bounds {
            max_rules: t.max_rules,
            max_profiles: t.max_profiles,
        }
    }
}

/// What an observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A rule not known before for this version.
    New,
    /// Known: its count and last seen moved.
    Known,
    /// New, but over the bound: counted in `dropped`.
    Dropped,
}

/// Every profile's learned rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    pub format: u32,
    pub profiles: BTreeMap<String, Profile>,
    /// Profiles dropped whole by the profile bound.
    pub dropped_profiles: u64,
    /// The profiles so dropped (at most `max_profiles`): what they would
    /// have denied is no longer known, so a trial of one is held.
    #[serde(default)]
    pub evicted: BTreeSet<String>,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            format: FORMAT,
            profiles: BTreeMap::new(),
            dropped_profiles: 0,
            evicted: BTreeSet::new(),
        }
    }
}

impl Learned {
    /// Learn that version `sha256` of `profile` would have denied `one`.
    /// A new version starts a new set; the old one is kept as `previous`.
    pub fn observe(&mut self, profile: &str, sha256: &str, one: &One, at: At, bounds: Bounds) -> Observed {
        // The common case: a profile already known (no name copied).
        if let Some(p) = self.profiles.get_mut(profile) {
            p.switch_to(sha256);
            p.touched_us = p.touched_us.max(at.us);
            return learn(&mut p.current, one, at, bounds.max_rules);
        }
        if bounds.max_profiles == 0 {
            self.dropped_profiles = self.dropped_profiles.saturating_add(1);
            return Observed::Dropped;
        }
        if self.profiles.len() >= bounds.max_profiles {
            self.drop_least_recent();
        }
        let p = self.profiles.entry(profile.to_owned()).or_insert_with(|| Profile {
            current: Version::new(sha256),
            previous: None,
            touched_us: at.us,
        });
        learn(&mut p.current, one, at, bounds.max_rules)
    }

    /// What version `sha256` of `profile` would have denied that a trial
    /// must wait on: its rules, those a bound dropped, and anything at all
    /// when the profile's rules were dropped whole.
    pub fn pending(&self, profile: &str, sha256: &str) -> usize {
        if self.evicted.contains(profile) {
            return 1;
        }
        self.version(profile, sha256).map_or(0, |v| {
            v.len().saturating_add(usize::try_from(v.dropped).unwrap_or(usize::MAX))
        })
    }

    /// The current version of `profile` as armord loads it now is
    /// `sha256`: a set learned for another version becomes the previous.
    pub fn version_loaded(&mut self, profile: &str, sha256: &str) {
        if let Some(p) = self.profiles.get_mut(profile) {
            p.switch_to(sha256);
        }
    }

    /// What version `sha256` of `profile` learned, if anything.
    pub fn version(&self, profile: &str, sha256: &str) -> Option<&Version> {
        let p = self.profiles.get(profile)?;
        std::iter::once(&p.current)
            .chain(&p.previous)
            .find(|v| v.sha256 == sha256)
    }

    /// Keep only the profiles `keep` says armord still owns.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.profiles.retain(|name, _| keep(name));
    }

    fn drop_least_recent(&mut self) {
        // Compared by reference: a copy of each name per eviction made
        // a burst over many profiles cost an allocation per profile held.
        let oldest = self
            .profiles
            .iter()
            .min_by(|(a, p), (b, q)| (p.touched_us, *a).cmp(&(q.touched_us, *b)))
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            self.profiles.remove(&name);
            self.dropped_profiles = self.dropped_profiles.saturating_add(1);
            if self.evicted.len() < self.profiles.len().max(1) * 2 {
                self.evicted.insert(name);
            }
        }
    }
}

fn learn(v: &mut Version, one: &One, at: At, max_rules: usize) -> Observed {
    match one {
        One::File(path, perms) => {
            let pattern = file_pattern(path);
            if let Some(f) = v.files.get_mut(&pattern) {
                f.seen.again(at);
                let before = f.perms.len();
                f.perms.extend(perms.iter().copied());
                return if f.perms.len() > before {
                    Observed::New
                } else {
                    Observed::Known
                };
            }
            if v.len() >= max_rules {
                v.dropped = v.dropped.saturating_add(1);
                return Observed::Dropped;
            }
            v.files.insert(
                pattern,
                FileSeen {
                    perms: perms.clone(),
                    seen: Seen::new(at),
                },
            );
            Observed::New
        }
        One::Rule(rule) => {
            if let Some(s) = v.rules.get_mut(rule) {
                s.again(at);
                return Observed::Known;
            }
            if v.len() >= max_rules {
                v.dropped = v.dropped.saturating_add(1);
                return Observed::Dropped;
            }
            v.rules.insert(rule.clone(), Seen::new(at));
            Observed::New
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Bounds = Bounds {
        max_rules: 3,
        max_profiles: 2,
    };

    fn file(p: &str, perms: &str) -> One {
        One::File(p.to_owned(), perms.chars().collect())
    }

    #[test]
    fn rules_are_merged_counted_and_generalised() {
        let mut l = Learned::default();
        assert_eq!(
            l.observe("p", "v1", &file("/proc/12/status", "r"), At::us(5), B),
            Observed::New
        );
        assert_eq!(
            l.observe("p", "v1", &file("/proc/99/status", "r"), At::us(9), B),
            Observed::Known
        );
        assert_eq!(
            l.observe("p", "v1", &file("/proc/99/status", "w"), At::us(7), B),
            Observed::New
        );
        let cap = One::Rule("capability net_raw,".into());
        assert_eq!(l.observe("p", "v1", &cap, At::us(3), B), Observed::New);
        assert_eq!(l.observe("p", "v1", &cap, At::us(4), B), Observed::Known);
        let v = l.version("p", "v1").unwrap();
        assert_eq!(v.render(), ["/proc/[0-9]*/status rw,", "capability net_raw,"]);
        let f = &v.files["/proc/[0-9]*/status"];
        assert_eq!((f.seen.first_us, f.seen.last_us, f.seen.count), (5, 9, 3));
        assert_eq!(v.rules["capability net_raw,"].count, 2);
    }

    #[test]
    fn a_record_read_again_after_a_restart_counts_nothing() {
        let mut l = Learned::default();
        let at = |us, serial| At { us, serial };
        let f = file("/etc/x", "r");
        l.observe("p", "v", &f, at(10, 5), B);
        l.observe("p", "v", &f, at(10, 6), B);
        // The journal gives 5 and 6 again, then 7 (new), then a later boot
        // whose serials start over.
        for (us, serial) in [(10, 5), (10, 6), (11, 7), (20, 1)] {
            l.observe("p", "v", &f, at(us, serial), B);
        }
        let seen = l.version("p", "v").unwrap().files["/etc/x"].seen;
        assert_eq!((seen.count, seen.last_us, seen.last_serial), (4, 20, 1));
        // Without a serial, every record counts.
        l.observe("p", "v", &f, At::us(3), B);
        assert_eq!(l.version("p", "v").unwrap().files["/etc/x"].seen.count, 5);
    }

    #[test]
    fn a_new_version_starts_a_new_set_and_keeps_the_old_one() {
        let mut l = Learned::default();
        l.observe("p", "v1", &file("/a", "r"), At::us(1), B);
        l.observe("p", "v2", &file("/b", "r"), At::us(2), B);
        assert_eq!(l.version("p", "v1").unwrap().render(), ["/a r,"]);
        assert_eq!(l.version("p", "v2").unwrap().render(), ["/b r,"]);
        l.version_loaded("p", "v3");
        assert!(l.version("p", "v3").unwrap().is_empty());
        assert!(l.version("p", "v1").is_none());
        // A revert to the version before keeps what it learned.
        l.version_loaded("p", "v2");
        assert_eq!(l.version("p", "v2").unwrap().render(), ["/b r,"]);
        assert_eq!(l.pending("p", "v2"), 1);
    }

    #[test]
    fn bounds_drop_and_count() {
        let mut l = Learned::default();
        for (i, p) in ["/a", "/b", "/c", "/d", "/e"].iter().enumerate() {
            l.observe("p", "v", &file(p, "r"), At::us(i as u64), B);
        }
        let v = l.version("p", "v").unwrap();
        assert_eq!((v.len(), v.dropped), (3, 2));
        l.observe("q", "v", &file("/a", "r"), At::us(10), B);
        l.observe("r", "v", &file("/a", "r"), At::us(11), B);
        // p was touched least recently: dropped whole, and counted; a
        // trial of it is held, its rules no longer known.
        assert!(l.version("p", "v").is_none());
        assert_eq!((l.profiles.len(), l.dropped_profiles), (2, 1));
        assert_eq!(l.pending("p", "v"), 1);
        assert_eq!(l.pending("q", "v"), 1);
    }

    proptest! {
        #[test]
        fn never_past_the_bounds_and_nothing_lost_uncounted(
            ops in prop::collection::vec((0u8..5, 0u8..3, 0u8..20, 0u64..1000), 0..200),
            max_rules in 0usize..6,
            max_profiles in 0usize..4,
        ) {
            let bounds = Bounds { max_rules, max_profiles };
            let mut l = Learned::default();
            let mut news = 0u64;
            let mut drops = 0u64;
            for (profile, version, path, at) in ops {
                let o = l.observe(&format!("p{profile}"), &format!("v{version}"), &file(&format!("/f{path}"), "r"), At::us(at), bounds);
                match o { Observed::New => news += 1, Observed::Dropped => drops += 1, Observed::Known => {} }
                prop_assert!(l.profiles.len() <= max_profiles);
                for p in l.profiles.values() {
                    prop_assert!(p.current.len() <= max_rules);
                }
            }
            let counted: u64 = l.profiles.values().flat_map(|p| std::iter::once(&p.current).chain(&p.previous)).map(|v| v.dropped).sum();
            prop_assert!(counted <= drops);
            prop_assert!(news + drops >= l.profiles.values().map(|p| p.current.len() as u64).sum::<u64>());
        }
    }
}
