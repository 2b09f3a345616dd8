//! Drift: an owned profile removed behind armord's back (`aa-teardown`,
//! `apparmor_parser -R`, a package script) is put back within a second,
//! not at the next resync. The kernel's policy revision
//! (`securityfs/apparmor/revision`) says when policy changed; where there
//! is none, the profile list is read at each poll. armord's own loads do not
//! count: after each of its jobs, the job itself (off the loop) looks at
//! the list its own reads left; when every owned profile is there, the
//! poll reads the list again only once the revision moves past the one
//! that list was kept under, and otherwise at the next poll. A profile that
//! is removed again and again is not fought over: its repairs back off.

use crate::apparmor::Kernel;
use crate::apparmor::Mode;
use crate::state::Manifest;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How often the kernel's revision is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// More repairs of one profile than this within `WINDOW` back off.
const REPAIRS: usize = 3;
const WINDOW: Duration = Duration::from_secs(60);
/// The first back-off, doubled up to `BACKOFF_MAX`.
const BACKOFF: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Drift {
    /// The revision armord last saw (`None`: look at the list next time).
    last: Option<u64>,
    /// When each profile was last repaired, within the window.
    repaired: HashMap<String, VecDeque<Instant>>,
    /// Profiles whose repairs back off: until when, and the next back-off.
    held: BTreeMap<String, (Instant, Duration)>,
    /// Profiles put back, in all (counted by the caller from what the
    /// repair did).
    pub repairs_total: u64,
}

impl Drift {
    /// After a job of armord's own: its loads are not drift, but what
    /// happened beside them may be; the list is looked at on the next poll.
    pub fn settled(&mut self) {
        self.last = None;
    }

    /// After a job of armord's own that found every owned profile in the
    /// kernel's list kept under `revision` (read after its loads, or read
    /// again since when the revision moved): nothing was lost up to that
    /// revision, and the poll looks at the list again only once it moves.
    /// `None` (no revision, an unreadable list, an owned profile missing):
    /// as [`Drift::settled`], the list is looked at on the next poll.
    pub fn settled_at(&mut self, revision: Option<u64>) {
        self.last = revision;
    }

    /// The revision under which `loaded` (the kernel's list kept under
    /// `revision`) holds every owned profile of `manifest`, if it does.
    /// One walk of both sorted lists, after every job of armord's.
    pub fn all_there(manifest: &Manifest, revision: u64, loaded: &BTreeMap<String, Mode>) -> Option<u64> {
        let mut listed = loaded.keys().peekable();
        for name in manifest.profiles.keys() {
            while listed.next_if(|l| *l < name).is_some() {}
            if listed.peek() != Some(&name) && !manifest.removing.contains(name) {
                return None;
            }
        }
        Some(revision)
    }

    /// Whether policy may have changed since the last look.
    pub fn changed(&mut self, kernel: &dyn Kernel) -> bool {
        match kernel.revision() {
            Some(r) => {
                let changed = self.last != Some(r);
                self.last = Some(r);
                changed
            }
            None => true,
        }
    }

    /// The owned profiles the kernel lacks (those being removed aside).
    pub fn missing(manifest: &Manifest, loaded: &BTreeMap<String, Mode>) -> Vec<String> {
        manifest
            .profiles
            .keys()
            .filter(|n| !loaded.contains_key(n.as_str()) && !manifest.removing.contains(n.as_str()))
            .cloned()
            .collect()
    }

    /// Of `missing`, those to repair now; the rest back off. Records the
    /// repairs.
    pub fn repairs_due(&mut self, missing: &[String], now: Instant) -> Vec<String> {
        // A back-off long over is forgotten.
        self.held.retain(|_, (until, _)| *until + BACKOFF_MAX > now);
        let mut out = Vec::new();
        for name in missing {
            if self.held.get(name).is_some_and(|(until, _)| *until > now) {
                continue;
            }
            let times = self.repaired.entry(name.clone()).or_default();
            while times.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                times.pop_front();
            }
            if times.len() >= REPAIRS {
                let next = self.held.get(name).map_or(BACKOFF, |(_, d)| (*d * 2).min(BACKOFF_MAX));
                self.held.insert(name.clone(), (now + next, next));
                let removed = times.len() + 1;
                // The back-off stands for these; after it, repairs start over.
                times.clear();
                log::warn!(
                    "drift: {} was removed {} times within {}s; armord stops putting it back for {}s (something keeps removing it)",
                    crate::escape::text(name),
                    removed,
                    WINDOW.as_secs(),
                    next.as_secs()
                );
                continue;
            }
            times.push_back(now);
            out.push(name.clone());
        }
        out
    }

    /// The profiles whose repairs back off now.
    pub fn held(&self, now: Instant) -> Vec<&str> {
        self.held
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_removed_again_and_again_backs_off() {
        let mut d = Drift::default();
        let t0 = Instant::now();
        let x = vec!["custom.x".to_string()];
        for i in 0..3 {
            assert_eq!(d.repairs_due(&x, t0 + Duration::from_secs(i)), x);
        }
        // The fourth removal within the window: held.
        assert!(d.repairs_due(&x, t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(d.held(t0 + Duration::from_secs(5)), ["custom.x"]);
        // Another profile is repaired meanwhile.
        let y = vec!["custom.y".to_string()];
        assert_eq!(d.repairs_due(&y, t0 + Duration::from_secs(5)), y);
        // After the back-off, repaired again; the next back-off is longer.
        let later = t0 + Duration::from_secs(4) + BACKOFF + Duration::from_secs(1);
        for i in 0..3 {
            assert_eq!(d.repairs_due(&x, later + Duration::from_secs(i)), x);
        }
        assert!(d.repairs_due(&x, later + Duration::from_secs(4)).is_empty());
        assert_eq!(d.held.get("custom.x").unwrap().1, BACKOFF * 2);
    }

    /// A kernel at a revision the test sets.
    struct AtRevision(std::sync::atomic::AtomicU64);

    impl Kernel for AtRevision {
        fn loaded(&self) -> Result<BTreeMap<String, Mode>, crate::apparmor::KernelError> {
            Ok(BTreeMap::new())
        }
        fn remove(&self, _: &str) -> Result<(), crate::apparmor::KernelError> {
            Ok(())
        }
        fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, crate::apparmor::KernelError> {
            Ok(BTreeMap::new())
        }
        fn revision(&self) -> Option<u64> {
            Some(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    #[test]
    fn a_job_that_saw_every_owned_profile_is_not_looked_at_again_until_policy_moves() {
        let m = owning(&["a", "b"]);
        let both: BTreeMap<String, Mode> = [("a".to_string(), Mode::Enforce), ("b".into(), Mode::Complain)].into();
        let only_a: BTreeMap<String, Mode> = [("a".to_string(), Mode::Enforce)].into();
        assert_eq!(Drift::all_there(&m, 7, &both), Some(7));
        assert_eq!(Drift::all_there(&m, 7, &only_a), None);

        let kernel = AtRevision(7.into());
        let mut d = Drift::default();
        // The job's list had every owned profile at 7: no look at 7.
        d.settled_at(Drift::all_there(&m, 7, &both));
        assert!(!d.changed(&kernel));
        // Policy moved since (a removal behind armord's back): looked at.
        kernel.0.store(8, std::sync::atomic::Ordering::SeqCst);
        assert!(d.changed(&kernel));
        assert!(!d.changed(&kernel));
        // The job's list lacked an owned profile: looked at even at the
        // revision the job saw, so the poll repairs it.
        d.settled_at(Drift::all_there(&m, 8, &only_a));
        assert!(d.changed(&kernel));
        // No list to go by (no revision, an unreadable list): looked at.
        d.settled_at(None);
        assert!(d.changed(&kernel));
    }

    proptest::proptest! {
        /// The walk of both lists says "all there" exactly when no owned
        /// profile is missing, children and names being removed included.
        #[test]
        fn all_there_is_no_owned_profile_missing(
            owned in proptest::collection::btree_set("[ab]{1,2}(//[ab])?", 0..8),
            listed in proptest::collection::btree_set("[ab]{1,2}(//[ab])?", 0..8),
            removing in proptest::collection::btree_set("[ab]{1,2}", 0..3),
        ) {
            let names: Vec<&str> = owned.iter().map(String::as_str).collect();
            let mut m = owning(&names);
            m.removing = removing.into_iter().collect();
            let loaded: BTreeMap<String, Mode> = listed.into_iter().map(|n| (n, Mode::Enforce)).collect();
            let want = Drift::missing(&m, &loaded).is_empty().then_some(3);
            proptest::prop_assert_eq!(Drift::all_there(&m, 3, &loaded), want);
        }
    }

    fn owning(names: &[&str]) -> Manifest {
        let mut m = Manifest::new();
        for n in names {
            m.profiles.insert(
                (*n).into(),
                crate::state::Owned {
                    file: std::path::Path::new("/f").into(),
                    source: std::path::Path::new("/s").into(),
                    sha256: "x".into(),
                    complain: false,
                    mode: Mode::Enforce,
                },
            );
        }
        m
    }

    #[test]
    fn missing_owned_profiles_only() {
        let mut m = owning(&["a", "b", "c"]);
        m.removing.insert("c".into());
        let loaded: BTreeMap<String, Mode> = [("a".to_string(), Mode::Enforce), ("z".into(), Mode::Enforce)].into();
        assert_eq!(Drift::missing(&m, &loaded), ["b"]);
    }
}
