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

use crate::audit::Record;
use crate::audit::suggest::{One, rule_for};
use std::collections::HashMap;

/// What armord loaded for an owned profile: the version, and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub sha256: String,
    pub complain: bool,
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
    /// From a container runtime setting a container up.
    Runtime,
    /// No rule expresses it.
    NoRule,
    /// Its rule would not be one honest line.
    Unsafe,
}

/// The profile, its loaded version and the rule `r` teaches.
pub fn lesson<'o>(r: &Record, owned: &'o HashMap<String, Loaded>) -> Result<(&'o str, &'o Loaded, One), Unlearned> {
    let label = r.profile().ok_or(Unlearned::NotALesson)?;
    let top = crate::apparmor::top_level(&label);
    let (name, loaded) = owned.get_key_value(top).ok_or(Unlearned::NotALesson)?;
    let wanted = if loaded.complain { "ALLOWED" } else { "DENIED" };
    if r.kind != wanted {
        return Err(Unlearned::NotALesson);
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
    Ok((name.as_str(), loaded, one))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::parse;

    fn owned() -> HashMap<String, Loaded> {
        [
            (
                "custom.t".to_owned(),
                Loaded {
                    sha256: "v1".into(),
                    complain: true,
                },
            ),
            (
                "custom.e".to_owned(),
                Loaded {
                    sha256: "v2".into(),
                    complain: false,
                },
            ),
        ]
        .into()
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
        let (p, v, one) = lesson(&parse(&line).unwrap(), &o).unwrap();
        assert_eq!((p, v.sha256.as_str()), ("custom.t", "v1"));
        assert_eq!(one, One::File("/etc/x".into(), ['r'].into()));
        assert!(lesson(&parse(&rec("DENIED", "custom.t", "")).unwrap(), &o).is_err());
        assert!(lesson(&parse(&rec("DENIED", "custom.e", "")).unwrap(), &o).is_ok());
        assert!(lesson(&parse(&rec("ALLOWED", "custom.e", "")).unwrap(), &o).is_err());
        assert_eq!(
            lesson(&parse(&rec("ALLOWED", "other", "")).unwrap(), &o).err(),
            Some(Unlearned::NotALesson)
        );
    }

    #[test]
    fn runtimes_and_unsafe_names_teach_nothing() {
        let o = owned();
        for comm in ["runc:[2:INIT]", "containerd-shim", "crun", "conmon"] {
            let line = rec("ALLOWED", "custom.t", "").replace("comm=\"app\"", &format!("comm=\"{comm}\""));
            assert_eq!(
                lesson(&parse(&line).unwrap(), &o).err(),
                Some(Unlearned::Runtime),
                "{comm}"
            );
        }
        // A newline in a name (hex-encoded, as the kernel writes it).
        let nl = rec("ALLOWED", "custom.t", "").replace("name=\"/etc/x\"", "name=2F746D702F610A62");
        assert_eq!(lesson(&parse(&nl).unwrap(), &o).err(), Some(Unlearned::Unsafe));
        let bad = rec("ALLOWED", "custom.t", "").replace("name=\"/etc/x\"", "name=2F746D702FFF");
        assert_eq!(lesson(&parse(&bad).unwrap(), &o).err(), Some(Unlearned::Unsafe));
        let huge = rec("ALLOWED", "custom.t", "").replace("/etc/x", &format!("/{}", "a".repeat(5000)));
        assert_eq!(lesson(&parse(&huge).unwrap(), &o).err(), Some(Unlearned::Unsafe));
    }
}
