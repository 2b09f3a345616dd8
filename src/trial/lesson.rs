//! Which records teach a rule: a record the kernel wrote about a profile
//! armord owns, saying what its current version would have denied
//! (`ALLOWED` in complain mode, `DENIED` in enforce mode), from a process
//! that is the workload and not the container runtime starting it.
//!
//! Only the follower's records reach here: the audit and kernel transports,
//! which only the kernel writes. A record whose rule would carry a control
//! character, a replacement character (a name that is not UTF-8) or more
//! than `MAX_RULE` bytes teaches nothing: it could not be written back as
//! one honest line of a profile.

use super::learned::At;
use crate::audit::Record;
use crate::audit::suggest::{One, rule_for};
use std::collections::{BTreeMap, HashMap};

/// What armord loads or loaded for an owned profile: the version, its
/// mode, and when (µs since the epoch): the kernel load began after
/// `since_us` (0: before armord started) and had ended by `loaded_us`
/// (`None`: it is under way). The follower is told before the load starts,
/// so no record of the new version is ever judged by the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub sha256: crate::sha::Sha,
    pub complain: bool,
    pub since_us: u64,
    pub loaded_us: Option<u64>,
}

/// When the kernel wrote `r`: its audit time and serial, or now when it
/// has none.
pub fn record_at(r: &Record) -> At {
    r.audit_id.map_or_else(
        || At::us(super::now_us()),
        |a| At {
            us: a
                .epoch
                .saturating_mul(1_000_000)
                .saturating_add(u64::from(a.millis) * 1000),
            serial: a.serial,
        },
    )
}

/// The profile a record says the kernel just loaded or replaced (its
/// `STATUS` record), with the record's time: records of that profile
/// written before it are of the version before.
pub fn load_of(r: &Record) -> Option<(String, At)> {
    if r.kind != "STATUS" || !matches!(r.str("operation").as_deref(), Some("profile_load" | "profile_replace")) {
        return None;
    }
    let name = r.str("name")?;
    Some((crate::apparmor::top_level(&name).to_owned(), record_at(r)))
}

/// How far the kernel's audit clock may trail armord's: audit times are
/// kept in milliseconds from a coarse clock, a tick behind at most.
pub const AUDIT_SKEW_US: u64 = 20_000;

/// Which version wrote a record, as far as can be told yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The version armord loads or loaded last.
    Current,
    /// One before it.
    Earlier,
    /// Written while the load was under way, and the kernel's record of
    /// the load is not read yet: it will say.
    Wait,
}

/// Which version wrote a record at `at`: not the last loaded when written
/// before its load began; once the kernel's record of that load (`load`)
/// is read, the audit serials order them exactly. A version known from
/// armord's start is every record's. `settle`: no more waiting (no load
/// record is coming: the kernel writes none, or it was lost), and a doubt
/// counts for the version loaded last (a rule too many holds a trial; a
/// rule too few could let one through).
pub fn side(at: At, loaded: &Loaded, load: Option<At>, settle: bool) -> Side {
    if loaded.since_us == 0 {
        return Side::Current;
    }
    let since = loaded.since_us.saturating_sub(AUDIT_SKEW_US);
    if at.us < since {
        return Side::Earlier;
    }
    match load {
        Some(l) if l.us >= since => {
            if at > l {
                Side::Current
            } else {
                Side::Earlier
            }
        }
        _ if settle => Side::Current,
        _ => Side::Wait,
    }
}

/// The longest rule learned, in bytes (a path's limit, and some).
pub const MAX_RULE: usize = 4096 + 64;

/// The command names of container runtimes while they set a container up
/// under its profile: what they touch then is the runtime's need, not the
/// workload's. (runc's stages name themselves `runc:[0:PARENT]`,
/// `runc:[1:CHILD]`, `runc:[2:INIT]`; the kernel keeps 15 bytes of a name.)
pub const RUNTIME_COMMS: &[&str] = &["runc", "crun", "conmon", "youki"];
/// Prefixes of the same: runc's stages and containerd's shims.
pub const RUNTIME_COMM_PREFIXES: &[&str] = &["runc:[", "containerd-shim"];

/// Is `comm` a container runtime's?
pub fn is_runtime(comm: &str) -> bool {
    RUNTIME_COMMS.contains(&comm) || RUNTIME_COMM_PREFIXES.iter().any(|p| comm.starts_with(p))
}

/// Why a record teaches nothing, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlearned {
    /// Not about an owned profile, or of a kind its mode does not deny.
    NotALesson,
    /// Written by a version loaded before the current one.
    Earlier,
    /// Written while its profile was being loaded: held until the kernel's
    /// record of the load says by which version.
    Wait,
    /// From a container runtime setting a container up.
    Runtime,
    /// No rule expresses it.
    NoRule,
    /// Its rule would not be one honest line.
    Unsafe,
}

/// The profile, its loaded version and the rule `r` teaches.
/// `loads`: the kernel's last load record of each profile, as read;
/// `settle`: see [`side`].
pub fn lesson<'o>(
    r: &Record,
    owned: &'o BTreeMap<String, Loaded>,
    loads: &HashMap<String, At>,
    settle: bool,
) -> Result<(&'o str, &'o Loaded, One, At), Unlearned> {
    let label = r.profile().ok_or(Unlearned::NotALesson)?;
    let top = crate::apparmor::top_level(&label);
    let (name, loaded) = owned.get_key_value(top).ok_or(Unlearned::NotALesson)?;
    let wanted = if loaded.complain { "ALLOWED" } else { "DENIED" };
    if r.kind != wanted {
        return Err(Unlearned::NotALesson);
    }
    let at = record_at(r);
    match side(at, loaded, loads.get(name.as_str()).copied(), settle) {
        Side::Current => {}
        Side::Earlier => return Err(Unlearned::Earlier),
        Side::Wait => return Err(Unlearned::Wait),
    }
    if r.str("comm").is_some_and(|c| is_runtime(&c)) {
        return Err(Unlearned::Runtime);
    }
    let one = rule_for(r).ok_or(Unlearned::NoRule)?;
    let text = match &one {
        One::File(p, _) => p.as_str(),
        One::Rule(rule) => rule.as_str(),
    };
    if text.len() > MAX_RULE || text.chars().any(|c| c.is_control() || c == '\u{fffd}') {
        return Err(Unlearned::Unsafe);
    }
    Ok((name.as_str(), loaded, one, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parse;

    fn owned() -> BTreeMap<String, Loaded> {
        [
            (
                "custom.t".to_owned(),
                Loaded {
                    sha256: "v1".into(),
                    complain: true,
                    since_us: 0,
                    loaded_us: Some(0),
                },
            ),
            (
                "custom.e".to_owned(),
                Loaded {
                    sha256: "v2".into(),
                    complain: false,
                    since_us: 0,
                    loaded_us: Some(0),
                },
            ),
        ]
        .into()
    }

    fn none() -> HashMap<String, At> {
        HashMap::new()
    }

    fn rec(kind: &str, profile: &str, extra: &str) -> String {
        format!(
            r#"apparmor="{kind}" operation="open" profile="{profile}" name="/etc/x" requested_mask="r" denied_mask="r" comm="app"{extra}"#
        )
    }

    #[test]
    fn complain_learns_allowed_and_enforce_learns_denied() {
        let o = owned();
        let line = rec("ALLOWED", "custom.t//null-/bin/sh", "");
        let (p, v, one, _) = lesson(&parse(&line).unwrap(), &o, &none(), false).unwrap();
        assert_eq!((p, v.sha256.as_str()), ("custom.t", "v1"));
        assert_eq!(one, One::File("/etc/x".into(), ['r'].into()));
        assert!(lesson(&parse(&rec("DENIED", "custom.t", "")).unwrap(), &o, &none(), false).is_err());
        assert!(lesson(&parse(&rec("DENIED", "custom.e", "")).unwrap(), &o, &none(), false).is_ok());
        assert!(lesson(&parse(&rec("ALLOWED", "custom.e", "")).unwrap(), &o, &none(), false).is_err());
        assert_eq!(
            lesson(&parse(&rec("ALLOWED", "other", "")).unwrap(), &o, &none(), false).err(),
            Some(Unlearned::NotALesson)
        );
    }

    #[test]
    fn runtimes_and_unsafe_names_teach_nothing() {
        let o = owned();
        for comm in ["runc:[2:INIT]", "containerd-shim", "crun", "conmon"] {
            let line = rec("ALLOWED", "custom.t", "").replace("comm=\"app\"", &format!("comm=\"{comm}\""));
            assert_eq!(
                lesson(&parse(&line).unwrap(), &o, &none(), false).err(),
                Some(Unlearned::Runtime),
                "{comm}"
            );
        }
        // A newline in a name (hex-encoded, as the kernel writes it).
        let nl = rec("ALLOWED", "custom.t", "").replace("name=\"/etc/x\"", "name=2F746D702F610A62");
        assert_eq!(
            lesson(&parse(&nl).unwrap(), &o, &none(), false).err(),
            Some(Unlearned::Unsafe)
        );
        let bad = rec("ALLOWED", "custom.t", "").replace("name=\"/etc/x\"", "name=2F746D702FFF");
        assert_eq!(
            lesson(&parse(&bad).unwrap(), &o, &none(), false).err(),
            Some(Unlearned::Unsafe)
        );
        let huge = rec("ALLOWED", "custom.t", "").replace("/etc/x", &format!("/{}", "a".repeat(5000)));
        assert_eq!(
            lesson(&parse(&huge).unwrap(), &o, &none(), false).err(),
            Some(Unlearned::Unsafe)
        );
    }

    #[test]
    fn a_record_is_taught_to_the_version_that_wrote_it() {
        // custom.t's new version: its load began at t=10 s.
        let mut o = owned();
        if let Some(l) = o.get_mut("custom.t") {
            l.since_us = 10_000_000;
            l.loaded_us = None;
        }
        let at = |secs: u64, ms: u32, serial: u64| {
            rec("ALLOWED", "custom.t", "").replacen(
                "apparmor=",
                &format!("audit({secs}.{ms:03}:{serial}): apparmor="),
                1,
            )
        };
        let is =
            |line: &str, loads: &HashMap<String, At>, settle| lesson(&parse(line).unwrap(), &o, loads, settle).err();
        // Before the load began (beyond the audit clock's lag): earlier.
        assert_eq!(is(&at(9, 900, 5), &none(), false), Some(Unlearned::Earlier));
        // After it began, the kernel's record of the load not read: wait;
        // settled (no such record is coming), the new version's.
        assert_eq!(is(&at(10, 500, 6), &none(), false), Some(Unlearned::Wait));
        assert_eq!(is(&at(10, 500, 6), &none(), true), None);
        assert_eq!(is(&at(9, 990, 6), &none(), true), None, "within the audit clock's lag");
        // With the load record read (serial 8 at 10.400 s), the serials
        // say which side a record is on, settled or not.
        let status = parse(r#"audit(10.400:8): apparmor="STATUS" operation="profile_replace" profile="unconfined" name="custom.t" pid=1 comm="armord""#).unwrap();
        let loads: HashMap<String, At> = [load_of(&status).unwrap()].into();
        assert_eq!(is(&at(10, 400, 7), &loads, false), Some(Unlearned::Earlier));
        assert_eq!(is(&at(10, 400, 7), &loads, true), Some(Unlearned::Earlier));
        assert_eq!(is(&at(10, 400, 9), &loads, false), None);
        assert_eq!(is(&at(10, 500, 10), &loads, false), None);
        // A load record from before this version's load says nothing.
        let old = parse(r#"audit(5.000:1): apparmor="STATUS" operation="profile_load" profile="unconfined" name="custom.t" pid=1 comm="armord""#).unwrap();
        let stale: HashMap<String, At> = [load_of(&old).unwrap()].into();
        assert_eq!(is(&at(10, 500, 6), &stale, false), Some(Unlearned::Wait));
        // A version known from armord's start takes every record.
        if let Some(l) = o.get_mut("custom.t") {
            l.since_us = 0;
        }
        let is = |line: &str| lesson(&parse(line).unwrap(), &o, &stale, false).err();
        assert_eq!(is(&at(1, 0, 1)), None);
    }
}
