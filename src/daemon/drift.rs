//! Drift: an owned profile removed behind armord's back (`aa-teardown`,
//! `apparmor_parser -R`, a package script) is put back within a second,
//! not at the next resync. The kernel's policy revision
//! (`securityfs/apparmor/revision`) says when policy changed; where there
//! is none, the profile list is read at each poll. armord's own loads do not
//! count: the revision is taken again after each of its jobs. A profile that
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

    #[test]
    fn missing_owned_profiles_only() {
        let mut m = Manifest::new();
        for n in ["a", "b", "c"] {
            m.profiles.insert(
                n.into(),
                crate::state::Owned {
                    file: std::path::Path::new("/f").into(),
                    source: std::path::Path::new("/s").into(),
                    sha256: "x".into(),
                    complain: false,
                    mode: Mode::Enforce,
                },
            );
        }
        m.removing.insert("c".into());
        let loaded: BTreeMap<String, Mode> = [("a".to_string(), Mode::Enforce), ("z".into(), Mode::Enforce)].into();
        assert_eq!(Drift::missing(&m, &loaded), ["b"]);
    }
}
