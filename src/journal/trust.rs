//! Which journal entries count as armord's own. Only the fields journald
//! sets itself (`_UID`, `_SYSTEMD_UNIT`, …) say who wrote an entry; every
//! other field, `MESSAGE_ID` and `ARMORD_*` included, is whatever the
//! writer chose, and any local process may write such an entry.
//!
//! The rule: on a node, an entry is armord's when journald says uid 0
//! wrote it from `armord.service`; in a simulation, when the user running
//! the simulation wrote it. It is given to `journalctl` as matches, so
//! nothing else is even read, and checked again on each entry read.

use std::collections::BTreeMap;

/// armord's unit on a node.
pub const UNIT: &str = "armord.service";

/// Who writes armord's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    pub uid: u32,
    /// The unit it runs in (`None`: any, in a simulation).
    pub unit: Option<String>,
}

impl Writer {
    /// armord on a node: root, in its unit.
    pub fn node() -> Writer {
        Writer {
            uid: 0,
            unit: Some(UNIT.to_owned()),
        }
    }

    /// A simulation: the user running it.
    pub fn simulation() -> Writer {
        Writer {
            uid: nix::unistd::geteuid().as_raw(),
            unit: None,
        }
    }

    pub fn of(simulate: bool) -> Writer {
        if simulate { Writer::simulation() } else { Writer::node() }
    }

    /// The `journalctl` matches that select only this writer's entries.
    pub fn matches(&self) -> Vec<String> {
        let mut m = vec![format!("_UID={}", self.uid)];
        if let Some(u) = &self.unit {
            m.push(format!("_SYSTEMD_UNIT={u}"));
        }
        m
    }

    /// Whether journald says this writer wrote `entry`.
    pub fn wrote(&self, entry: &serde_json::Value) -> bool {
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str());
        self.wrote_as(field("_UID"), field("_SYSTEMD_UNIT"))
    }

    /// Whether an entry whose journald fields are `_UID=uid` and
    /// `_SYSTEMD_UNIT=unit` is this writer's.
    pub fn wrote_as(&self, uid: Option<&str>, unit: Option<&str>) -> bool {
        uid.and_then(|u| u.parse::<u32>().ok()) == Some(self.uid)
            && self.unit.as_deref().is_none_or(|u| unit == Some(u))
    }
}

/// Entries that carry armord's `MESSAGE_ID` but that the rule does not
/// trust: counted by their writer as journald names it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imitations {
    pub count: u64,
    /// (`_UID`, `_COMM`) → entries.
    pub writers: BTreeMap<(String, String), u64>,
}

impl Imitations {
    /// Count one entry that journald says `_UID=uid` (`_COMM=comm`) wrote.
    pub fn note_writer(&mut self, uid: Option<&str>, comm: Option<&str>) {
        /// Writers told apart; the rest are counted together.
        const WRITERS: usize = 64;
        self.count += 1;
        let mut key = (uid.unwrap_or("?").to_owned(), comm.unwrap_or("?").to_owned());
        if self.writers.len() >= WRITERS && !self.writers.contains_key(&key) {
            key = ("?".into(), "others".into());
        }
        *self.writers.entry(key).or_default() += 1;
    }

    /// `N entries imitating armord's, ignored (uid U (COMM): n, …)`.
    pub fn summary(&self) -> Option<String> {
        (self.count > 0).then(|| {
            let who: Vec<String> = self
                .writers
                .iter()
                .take(8)
                .map(|((uid, comm), n)| {
                    format!("uid {} ({}): {n}", crate::escape::text(uid), crate::escape::text(comm))
                })
                .collect();
            format!(
                "{} {} imitating armord's, ignored (written by {})",
                self.count,
                if self.count == 1 { "entry" } else { "entries" },
                who.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_journalds_fields_say_who_wrote_an_entry() {
        let node = Writer::node();
        assert_eq!(node.matches(), ["_UID=0", "_SYSTEMD_UNIT=armord.service"]);
        let e = |uid: &str, unit: &str| serde_json::json!({"_UID": uid, "_SYSTEMD_UNIT": unit, "ARMORD_PROFILE": "x"});
        assert!(node.wrote(&e("0", "armord.service")));
        assert!(!node.wrote(&e("65534", "armord.service")));
        assert!(!node.wrote(&e("0", "cron.service")));
        assert!(!node.wrote(&serde_json::json!({"UID": "0", "SYSTEMD_UNIT": "armord.service"})));
        let sim = Writer { uid: 1000, unit: None };
        assert_eq!(sim.matches(), ["_UID=1000"]);
        assert!(sim.wrote(&e("1000", "session-1.scope")));
        assert!(!sim.wrote(&e("0", "armord.service")));
        let mut i = Imitations::default();
        assert_eq!(i.summary(), None);
        i.note_writer(Some("65534"), Some("logger"));
        i.note_writer(Some("65534"), Some("logger"));
        assert_eq!(
            i.summary().unwrap(),
            "2 entries imitating armord's, ignored (written by uid 65534 (logger): 2)"
        );
    }
}
