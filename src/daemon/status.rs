//! What the loop publishes after a reconcile: the counts of `STATUS=` and
//! `armorctl status`, and the D-Bus state.

use crate::dbus::Published;
use crate::reconcile::{HeldWhy, ProblemKind, Reconciler, Report};
use std::path::PathBuf;

/// The counts `STATUS=` and `armorctl status` report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub loaded: usize,
    pub invalid: usize,
    pub refused: usize,
    pub deferred: usize,
    /// Removals held as a mass removal.
    pub held: usize,
    pub unavailable: Vec<PathBuf>,
    /// Owned profiles removed again and again behind armord's back, whose
    /// repairs back off.
    pub drift_held: Vec<String>,
    /// Profiles in trial (complain mode, not promoted yet).
    pub in_trial: usize,
}

impl Status {
    pub fn from_report(r: &Reconciler, report: &Report) -> Self {
        let count = |kinds: &[ProblemKind]| report.problems.iter().filter(|p| kinds.contains(&p.kind)).count();
        Status {
            loaded: r.manifest.profiles.len(),
            invalid: count(&[ProblemKind::Invalid, ProblemKind::LoadFailed]),
            refused: count(&[ProblemKind::Refused, ProblemKind::Conflict]),
            deferred: report.deferred.len(),
            held: report.held_for(HeldWhy::MassRemoval),
            unavailable: report
                .problems
                .iter()
                .filter(|p| p.kind == ProblemKind::Unavailable)
                .map(|p| p.file.clone())
                .collect(),
            drift_held: Vec::new(),
            in_trial: r.book.trials.values().filter(|t| t.promoted.is_none()).count(),
        }
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "{} loaded, {} invalid, {} refused, {} deferred",
            self.loaded, self.invalid, self.refused, self.deferred
        );
        if self.in_trial > 0 {
            s.push_str(&format!("; {} in trial", self.in_trial));
        }
        if self.held > 0 {
            s.push_str(&format!(
                "; {} removals held as a mass removal (`armorctl sync --allow-mass-removal` removes them now)",
                self.held
            ));
        }
        if !self.drift_held.is_empty() {
            let names: Vec<String> = self
                .drift_held
                .iter()
                .map(|n| crate::escape::text(n).into_owned())
                .collect();
            s.push_str(&format!(
                "; something keeps removing {}: armord puts it back less often",
                names.join(", ")
            ));
        }
        for u in &self.unavailable {
            s.push_str(&format!(
                "; source {} unavailable, last-good policy kept",
                crate::escape::path(u)
            ));
        }
        s
    }
}

/// What D-Bus publishes for a reconcile's outcome, but the profile rows
/// (`rows::RowIndex`) and the lints, kept a name at a time.
pub fn publish_into(published: &mut Published, report: &Report, status: &Status) {
    let counts = [
        ("loaded", status.loaded),
        ("invalid", status.invalid),
        ("refused", status.refused),
        ("deferred", status.deferred),
        ("held", status.held),
        ("unavailable", status.unavailable.len()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v as u32))
    .collect();
    published.state = if report.is_clean() && status.held == 0 {
        "ready"
    } else {
        "degraded"
    }
    .into();
    published.counts = counts;
    published.last_sync_usec = crate::trial::now_us();
    published.last_sync_summary = report.summary();
    published.problems = report.problems.iter().map(|p| p.to_string()).collect();
    published.trials = report
        .trial_refused
        .iter()
        .map(|t| (t.name.clone(), t.reason.clone()))
        .collect();
}
