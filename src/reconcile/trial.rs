//! The reconciler's side of trial → enforce: what the plan needs to know
//! of trials, the trial book kept in step with what is loaded, promotion
//! by the gate or an operator, and putting a profile back in trial.

use super::*;
use crate::trial::book::Promoter;
use crate::trial::{Evidence, Gate, Verdict as GateVerdict, decide, spread_offset};

/// This node's machine ID, for the fleet spread; without one (or with no
/// spread configured) the spread is not used, and a spread configured is
/// said to be ignored.
pub(super) fn machine_id(config: &Config, notes: &mut Vec<String>) -> Option<String> {
    if config.trial.fleet_spread.is_zero() {
        return None;
    }
    match std::fs::read_to_string(&config.trial.machine_id) {
        Ok(id) if !id.trim().is_empty() => Some(id.trim().to_owned()),
        Ok(_) | Err(_) => {
            notes.push(format!(
                "{}: no machine ID; [trial] fleet_spread is not used (every gate opens after min_trial)",
                crate::escape::path(&config.trial.machine_id)
            ));
            None
        }
    }
}

/// Profiles the gate promoted, with the evidence it went by.
pub type Promoted = Vec<(String, Evidence)>;

/// A profile's trial as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialStatus {
    pub name: String,
    /// `trial`, `held` (something other than time holds it) or `promoted`.
    pub state: &'static str,
    /// One line: how long, how many processes, how many rules, what next.
    pub text: String,
    /// When this node's gate opens for the version (µs since the epoch).
    pub gate_us: u64,
    pub learned: usize,
}

impl Reconciler {
    /// What the plan needs to know of trials now.
    /// It costs what the trials hold, not what the node holds: with no
    /// trial declared and none in the book, nothing is walked.
    pub(super) fn trials_now(&mut self, desired: &Desired) -> Trials {
        if !self.validator.trial.is_empty() {
            let shas: std::collections::HashSet<&str> = desired.files.iter().map(|f| f.sha256.as_str()).collect();
            self.validator.trial.retain(|s| shas.contains(s.as_str()));
        }
        Trials {
            declared: self.validator.trial.clone(),
            promoted: self
                .book
                .trials
                .iter()
                .filter(|(_, t)| t.promoted.is_some())
                .map(|(n, t)| (n.clone(), t.sha256.clone()))
                .collect(),
            // Only a profile in the book can have been promoted.
            known: self
                .book
                .trials
                .keys()
                .filter(|n| {
                    self.manifest
                        .profiles
                        .get(n.as_str())
                        .is_some_and(|o| self.book.promoted(n, &o.sha256))
                })
                .cloned()
                .collect(),
            allow_demotion: self.config.trial.allow_demotion,
            refused: (self.config.mode == crate::config::ForcedMode::Enforce)
                .then(|| "trial refused: mode = \"enforce\" is configured".to_owned()),
        }
    }

    /// Keep the book in step with what is loaded: a version loaded in
    /// trial starts (or goes on with) its trial; a profile no longer owned,
    /// or whose loaded version no longer declares trial, leaves the book.
    pub(super) fn book_follows(&mut self) -> Result<(), ApplyError> {
        // No version declares trial and the book is empty: nothing to
        // follow, and no walk of every owned profile.
        if self.validator.trial.is_empty() && self.book.trials.is_empty() {
            return Ok(());
        }
        let now = (self.clock)();
        let declared = &self.validator.trial;
        let mut changed = false;
        for (name, o) in &self.manifest.profiles {
            let forced = self.config.mode == crate::config::ForcedMode::Complain;
            if declared.contains(o.sha256.as_str()) && (o.complain && !forced || self.book.promoted(name, &o.sha256)) {
                changed |= self.book.on_trial(name, &o.sha256, now);
            }
        }
        // A trial runs while its version loads in complain mode; a
        // promotion is kept while the promoted version is loaded. Nothing
        // else stays in the book (a refused trial is not one).
        let manifest = &self.manifest;
        let forced = self.config.mode == crate::config::ForcedMode::Complain;
        let promoted: std::collections::BTreeSet<String> = manifest
            .profiles
            .iter()
            .filter(|(n, o)| self.book.promoted(n, &o.sha256))
            .map(|(n, _)| n.clone())
            .collect();
        changed |= self.book.retain(|n| {
            manifest.profiles.get(n).is_some_and(|o| {
                declared.contains(o.sha256.as_str()) && ((o.complain && !forced) || promoted.contains(n))
            })
        });
        if changed {
            self.book.save(&self.state.trial_book())?;
        }
        Ok(())
    }

    /// The gate for version `sha256` of `name` on this node.
    pub fn gate_of(&self, name: &str, sha256: &str) -> Gate {
        let offset = self.machine_id.as_deref().map_or(Duration::ZERO, |id| {
            spread_offset(id, name, sha256, self.config.trial.fleet_spread)
        });
        Gate {
            min_trial: self.config.trial.min_trial,
            offset,
        }
    }

    /// Evidence in: processes confined now, and audit records lost since
    /// the last look. The book is saved when it moved.
    pub fn trial_evidence(&mut self, confined: &BTreeMap<String, Vec<u32>>, lost: u64) -> Result<(), ApplyError> {
        let moved = self.book.saw_confined(confined) | self.book.saw_loss(lost);
        if moved {
            self.book.save(&self.state.trial_book())?;
        }
        Ok(())
    }

    /// Ask the gate about every trial running; promote those it opens for.
    /// `learned`: rules the version learned. Returns the promoted, with
    /// the evidence, and when to ask again.
    pub fn run_gate(&mut self, learned: impl Fn(&str, &str) -> usize) -> Result<(Promoted, Option<u64>), ApplyError> {
        let now = (self.clock)();
        let mut promoted = Vec::new();
        let mut next: Option<u64> = None;
        let names: Vec<String> = self
            .book
            .trials
            .iter()
            .filter(|(_, t)| t.promoted.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(t) = self.book.trials.get(&name) else { continue };
            let evidence = t.evidence(learned(&name, &t.sha256));
            match decide(&evidence, &self.gate_of(&name, &t.sha256), now) {
                GateVerdict::Promote => {
                    if let Some(t) = self.book.trials.get_mut(&name) {
                        t.promoted = Some((now, Promoter::Gate));
                    }
                    promoted.push((name, evidence));
                }
                GateVerdict::Held { recheck_us, .. } => {
                    if let Some(at) = recheck_us {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            }
        }
        if !promoted.is_empty() {
            self.book.save(&self.state.trial_book())?;
        }
        Ok((promoted, next))
    }

    /// What the trials learned was lost (a learned file set aside): every
    /// trial not promoted starts again, its evidence afresh.
    pub fn restart_trials(&mut self) -> Result<(), ApplyError> {
        let now = (self.clock)();
        let mut any = false;
        for (name, t) in self.book.trials.iter_mut().filter(|(_, t)| t.promoted.is_none()) {
            log::warn!(
                profile = name.as_str();
                "trial of {} starts again: what it learned was lost",
                crate::escape::text(name)
            );
            t.since_us = now;
            t.pids.clear();
            t.lost = 0;
            any = true;
        }
        if any {
            self.book.save(&self.state.trial_book())?;
        }
        Ok(())
    }

    /// An operator's `armorctl promote NAME` (uid `by`): the profile's
    /// trial version is enforced now. The reason it cannot be, otherwise.
    pub fn promote(&mut self, name: &str, by: u32) -> Result<String, String> {
        let t = self
            .book
            .trials
            .get_mut(name)
            .ok_or_else(|| format!("{} is not in trial", crate::escape::text(name)))?;
        if t.promoted.is_some() {
            return Ok(format!("{} is promoted already", crate::escape::text(name)));
        }
        t.promoted = Some(((self.clock)(), Promoter::Operator { uid: by }));
        self.book.save(&self.state.trial_book()).map_err(|e| e.to_string())?;
        Ok(format!("{} promoted to enforce", crate::escape::text(name)))
    }

    /// An operator's `armorctl trial NAME`: a promoted profile goes back
    /// in trial (complain mode), its evidence started afresh.
    pub fn back_in_trial(&mut self, name: &str) -> Result<String, String> {
        let t = self
            .book
            .trials
            .get_mut(name)
            .ok_or_else(|| format!("{} was never in trial", crate::escape::text(name)))?;
        if t.promoted.is_none() {
            return Ok(format!("{} is in trial already", crate::escape::text(name)));
        }
        t.promoted = None;
        t.since_us = (self.clock)();
        t.pids.clear();
        t.lost = 0;
        self.book.save(&self.state.trial_book()).map_err(|e| e.to_string())?;
        Ok(format!(
            "{} is in trial again (complain mode)",
            crate::escape::text(name)
        ))
    }

    /// Every trial, as status shows it.
    pub fn trial_status(&self, learned: impl Fn(&str, &str) -> usize) -> Vec<TrialStatus> {
        let now = (self.clock)();
        self.book
            .trials
            .iter()
            .map(|(name, t)| {
                let n = learned(name, &t.sha256);
                let gate = self.gate_of(name, &t.sha256);
                let e = t.evidence(n);
                let gate_us = e
                    .since_us
                    .saturating_add(u64::try_from((gate.min_trial + gate.offset).as_micros()).unwrap_or(u64::MAX));
                let (state, text) = status_line(name, t, &e, &gate, now);
                TrialStatus {
                    name: name.clone(),
                    state,
                    text,
                    gate_us,
                    learned: n,
                }
            })
            .collect()
    }
}

/// `trial: quiet 3h12m of 24h, 2 processes seen, 0 rules learned`, and the
/// like.
fn status_line(
    name: &str,
    t: &crate::trial::book::Trial,
    e: &Evidence,
    gate: &Gate,
    now: u64,
) -> (&'static str, String) {
    if let Some((_, by)) = &t.promoted {
        let by = match by {
            Promoter::Gate => "by the gate".to_owned(),
            Promoter::Operator { uid } => format!("by uid {uid}"),
        };
        return ("promoted", format!("trial: promoted to enforce {by}"));
    }
    let ran = Duration::from_micros(now.saturating_sub(e.since_us));
    let ran = Duration::from_secs(ran.as_secs());
    let base = format!(
        "trial: quiet {} of {}, {} processes seen, {} rules learned",
        crate::human::duration(ran),
        crate::human::duration(Duration::from_secs((gate.min_trial + gate.offset).as_secs())),
        e.confined,
        e.learned
    );
    match decide(e, gate, now) {
        GateVerdict::Held { recheck_us: None, why } => {
            let why: Vec<String> = why.iter().map(ToString::to_string).collect();
            let next = if e.learned > 0 {
                format!(": run armorctl learn {}", crate::escape::text(name))
            } else {
                String::new()
            };
            ("held", format!("{base}; not promoted: {}{next}", why.join(", ")))
        }
        _ => ("trial", base),
    }
}
