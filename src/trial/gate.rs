//! The promotion gate: when a profile in trial on this node may be
//! enforced. Pure: the evidence and the clock in, a verdict out.
//!
//! A trial profile is promoted when, and only when, every one of these
//! holds: its current version has been loaded in trial for `min_trial`; at
//! least one process ran confined by it; that version learned nothing it
//! would have denied; the audit trail lost nothing while it was in trial;
//! and this node's spread offset for the version has passed.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// The evidence for one profile's current version in trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evidence {
    /// When this version was loaded in trial (µs since the epoch).
    pub since_us: u64,
    /// Processes seen confined by it.
    pub confined: u64,
    /// Rules it learned (would have denied).
    pub learned: usize,
    /// Audit records lost while it was in trial.
    pub lost: u64,
}

/// The gate's settings for one version on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub min_trial: Duration,
    /// This node's offset into the fleet spread for this version.
    pub offset: Duration,
}

/// Why a trial is not promoted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not in trial for `min_trial` yet (µs since the epoch it will be).
    TooSoon { until_us: u64 },
    /// No process ran under it.
    NothingConfined,
    /// It would have denied something.
    Learned(usize),
    /// The audit trail lost records during the trial.
    Lossy(u64),
    /// Past `min_trial`, but this node's turn in the fleet comes later.
    Spread { until_us: u64 },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::TooSoon { .. } => f.write_str("the trial has not run its minimum time"),
            Hold::NothingConfined => f.write_str("no process has run under it"),
            Hold::Learned(n) => write!(f, "{n} rules learned"),
            Hold::Lossy(n) => write!(f, "{n} audit records were lost during the trial"),
            Hold::Spread { .. } => f.write_str("this node's turn in the fleet spread has not come"),
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Promote,
    /// Every reason it is held; when the clock alone could open it, when
    /// to look again (µs since the epoch).
    Held {
        why: Vec<Hold>,
        recheck_us: Option<u64>,
    },
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Decide at `now_us`.
pub fn decide(e: &Evidence, gate: &Gate, now_us: u64) -> Verdict {
    let due = e.since_us.saturating_add(micros(gate.min_trial));
    let turn = due.saturating_add(micros(gate.offset));
    let mut why = Vec::new();
    if now_us < due {
        why.push(Hold::TooSoon { until_us: due });
    } else if now_us < turn {
        why.push(Hold::Spread { until_us: turn });
    }
    if e.confined == 0 {
        why.push(Hold::NothingConfined);
    }
    if e.learned > 0 {
        why.push(Hold::Learned(e.learned));
    }
    if e.lost > 0 {
        why.push(Hold::Lossy(e.lost));
    }
    if why.is_empty() {
        return Verdict::Promote;
    }
    // Only time is missing: look again when it has passed.
    let recheck_us = match why.as_slice() {
        [Hold::TooSoon { .. } | Hold::Spread { .. }] => Some(turn),
        _ => None,
    };
    Verdict::Held { why, recheck_us }
}

/// This node's offset in `[0, spread)` for a version of a profile: from a
/// hash of the machine ID, the profile name and the version, so a fleet
/// spreads a new version's promotion with no coordinator, and a node's
/// offset for a version never changes.
pub fn spread_offset(machine_id: &str, profile: &str, sha256: &str, spread: Duration) -> Duration {
    let ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut h = Sha256::new();
    for part in [machine_id.trim(), profile, sha256] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    Duration::from_millis(u64::from_be_bytes(first) % ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: u64 = 3_600_000_000;

    #[test]
    fn promotes_only_when_every_condition_holds() {
        let gate = Gate {
            min_trial: Duration::from_secs(3600),
            offset: Duration::ZERO,
        };
        let e = Evidence {
            since_us: 0,
            confined: 2,
            learned: 0,
            lost: 0,
        };
        assert_eq!(decide(&e, &gate, H), Verdict::Promote);
        assert_eq!(
            decide(&e, &gate, H - 1),
            Verdict::Held {
                why: vec![Hold::TooSoon { until_us: H }],
                recheck_us: Some(H)
            }
        );
        let quiet = Evidence { confined: 0, ..e };
        assert!(matches!(
            decide(&quiet, &gate, H),
            Verdict::Held { recheck_us: None, .. }
        ));
        let learned = Evidence { learned: 4, ..e };
        assert_eq!(
            decide(&learned, &gate, 2 * H),
            Verdict::Held {
                why: vec![Hold::Learned(4)],
                recheck_us: None
            }
        );
    }

    #[test]
    fn the_spread_offset_is_stable_bounded_and_spread() {
        let spread = Duration::from_secs(86400);
        let a = spread_offset("m1", "custom.web", "abc", spread);
        assert_eq!(a, spread_offset("m1\n", "custom.web", "abc", spread));
        assert!(a < spread);
        assert_eq!(spread_offset("m1", "p", "v", Duration::ZERO), Duration::ZERO);
        let offsets: std::collections::BTreeSet<Duration> = (0..50)
            .map(|i| spread_offset(&format!("machine-{i}"), "custom.web", "abc", spread))
            .collect();
        assert!(offsets.len() > 45, "offsets do not spread: {offsets:?}");
    }

    proptest! {
        #[test]
        fn never_promotes_with_a_reason_to_hold(
            since in 0u64..10 * H,
            confined in 0u64..3,
            learned in 0usize..3,
            lost in 0u64..3,
            min in 0u64..5 * H,
            offset in 0u64..5 * H,
            now in 0u64..20 * H,
        ) {
            let e = Evidence { since_us: since, confined, learned, lost };
            let gate = Gate { min_trial: Duration::from_micros(min), offset: Duration::from_micros(offset) };
            let open = now >= since + min + offset && confined > 0 && learned == 0 && lost == 0;
            let v = decide(&e, &gate, now);
            prop_assert_eq!(v == Verdict::Promote, open, "{:?}", v);
            if let Verdict::Held { recheck_us: Some(at), .. } = v {
                // Once the time named passes, with nothing else changed, it opens.
                prop_assert_eq!(decide(&e, &gate, at), Verdict::Promote);
            }
        }
    }
}
