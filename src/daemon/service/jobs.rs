//! Running reconciles on the blocking pool and publishing what they did:
//! the log, sd_notify's status, D-Bus, the exports and the retry timers.

use super::{Job, Service, Trigger};
use crate::config::Config;
use crate::daemon::status::{Status, publish_into};
use crate::daemon::{DaemonError, log_report, open};
use crate::dbus::{Armord, OBJECT_PATH};
use crate::notify;
use crate::reconcile::{ApplyError, Problem, ProblemKind, Report};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use zbus::object_server::SignalEmitter;

type OwnedMap = std::collections::BTreeMap<String, crate::trial::lesson::Loaded>;

/// Tell the follower of the versions about to be loaded, before the kernel
/// has them: a record written after this is judged against the new
/// version (or held until the kernel's record of the load says). The
/// names go to `announced` too: the loop settles each after the reconcile.
fn load_hook(
    owned: crate::daemon::denials::OwnedVersions,
    announced: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> crate::reconcile::LoadHook {
    std::sync::Arc::new(move |loading: &[crate::reconcile::Loading]| {
        let now = crate::trial::now_us();
        announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(loading.iter().map(|l| l.name.clone()));
        let mut o = owned.write().unwrap_or_else(|p| p.into_inner());
        for l in loading {
            let next = crate::trial::lesson::Loaded {
                sha256: l.sha256.clone(),
                complain: l.complain,
                since_us: now,
                loaded_us: None,
            };
            o.insert(l.name.clone(), next);
        }
    })
}

impl Service {
    /// Run a job on the blocking pool, still answering SIGTERM: a stop
    /// request lets the job finish its current step, then it ends.
    pub(super) async fn job(&mut self, job: Job) -> Result<Report, DaemonError> {
        let Some(mut rec) = self.rec.take() else {
            return Ok(Report::default());
        };
        let cancel = rec.cancel.clone();
        let config = rec.config.clone();
        let mut handle = tokio::task::spawn_blocking(move || {
            let r = match job {
                Job::Restore => rec.restore(),
                Job::Reconcile(named) => rec.reconcile_named(named),
                Job::Replan => rec.replan(),
            };
            // Whether every owned profile is in the list the job's own
            // reads left (off the loop, which must not spend a look at
            // 10,000 names after every change).
            let seen = rec
                .listed_now()
                .and_then(|(rev, list)| crate::daemon::drift::Drift::all_there(&rec.manifest, rev, &list));
            ((rec, seen), r)
        });
        let ((rec, seen), result) = loop {
            tokio::select! {
                done = &mut handle => match done {
                    Ok(pair) => break pair,
                    Err(e) if e.is_panic() => return self.recover(config, e.to_string()).await,
                    Err(e) => return Err(DaemonError::Task(e.to_string())),
                },
                _ = self.signals.stop.recv() => self.begin_stop(&cancel),
            }
        };
        self.rec = Some(rec);
        // armord's own loads are not drift; what the job's list showed is
        // not either.
        self.drift.settled_at(seen);
        Ok(result?)
    }

    /// A job panicked (a bug): the reconciler it held is gone. Open it
    /// again from the state directory, as at start, and report the job as
    /// failed, so it is retried with backoff: armord keeps serving D-Bus,
    /// denials and the watch instead of exiting into a restart loop.
    pub(super) async fn recover(&mut self, config: Config, why: String) -> Result<Report, DaemonError> {
        log::error!("internal error in a reconcile ({why}); opening the state again and retrying");
        let simulate = self.simulate;
        let opened = tokio::task::spawn_blocking(move || open(config, simulate))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?;
        self.rec = Some(opened?);
        Err(DaemonError::Apply(ApplyError::Internal(why)))
    }

    pub(super) fn begin_stop(&mut self, cancel: &std::sync::atomic::AtomicBool) {
        if !self.stopping {
            log::info!("stopping: finishing the current step; loaded profiles stay loaded");
            notify::stopping();
        }
        self.stopping = true;
        cancel.store(true, Ordering::SeqCst);
    }

    pub(super) fn note_change(&mut self) {
        if let Some(rec) = self.rec.as_mut() {
            rec.note_change(Instant::now().into_std());
        }
    }

    pub(super) fn rearm(&mut self) {
        let sources = self.rec().config.sources.clone();
        self.watcher.arm(&sources);
    }

    pub(super) async fn reconcile(&mut self, trigger: Trigger, full: bool) -> Result<Report, DaemonError> {
        // Re-arm first: changes made while we read are then seen again.
        self.rearm();
        let started = Instant::now();
        self.applying_since_us = crate::trial::now_us();
        let job = if full {
            // What is reported from now on is for the next reconcile; only a
            // change reconcile reads by name, every other one in full.
            let named = self.named.replace(BTreeSet::new());
            Job::Reconcile(named.filter(|_| trigger == Trigger::Change))
        } else {
            Job::Replan
        };
        let report = match self.job(job).await {
            Ok(r) => r,
            // The state dir full or read-only, the parser gone, securityfs
            // unreadable: nothing was changed that the manifest does not
            // record. Say so, keep running, and try again with backoff.
            Err(DaemonError::Apply(e)) => {
                log::error!(
                    "reconcile ({}) failed: {e}; the kernel keeps the profiles it has",
                    trigger.as_str()
                );
                Report {
                    transient: true,
                    problems: vec![Problem::new(ProblemKind::LoadFailed, PathBuf::new(), e.to_string())],
                    ..Default::default()
                }
            }
            Err(e) => return Err(e),
        };
        if full {
            self.metrics.reconciles += 1;
            self.metrics.last_duration_secs = started.elapsed().as_secs_f64();
            self.metrics.parser_failures += report
                .problems
                .iter()
                .filter(|p| matches!(p.kind, ProblemKind::Invalid | ProblemKind::LoadFailed))
                .count() as u64;
        }
        if (full && trigger != Trigger::Resync) || report.changed() || !report.deferred.is_empty() {
            log_report(
                &format!("reconcile ({})", trigger.as_str()),
                &report,
                &mut self.logged_problems,
            );
        } else {
            log::debug!("recheck: {}", report.summary());
        }
        self.after(&report, trigger);
        // What a full read or a replan that changed the kernel (a drift
        // repair of every profile) freed goes back now; what a burst of
        // changes freed, once the burst is over (`on_exports`). A replan
        // that changed nothing (deferred removals looked at every 2 s)
        // freed next to nothing.
        if trigger == Trigger::Change {
            self.trim_due = true;
        } else if full || report.changed() {
            crate::daemon::memory::give_back_freed();
        }
        if full || report.changed() {
            self.signal_report(&report).await;
        }
        Ok(report)
    }

    /// Tell the denial follower which profiles armord owns now: the
    /// names `touched` and those the load hook announced (`None`: every
    /// name, made again from the manifest).
    pub(super) fn share_owned(&self, window: Option<(u64, u64)>, touched: Option<&BTreeSet<String>>) {
        let Some(d) = &self.denials else { return };
        let announced = std::mem::take(&mut *self.announced.lock().unwrap_or_else(|p| p.into_inner()));
        let mut owned = d.owned.write().unwrap_or_else(|p| p.into_inner());
        match (touched, &self.rec) {
            (Some(names), Some(rec)) if !owned.is_empty() => {
                for n in names.iter().chain(&announced) {
                    match rec.manifest.profiles.get(n) {
                        Some(o) => {
                            let now = self.loaded_now(o, owned.get(n), false, window);
                            owned.insert(n.clone(), now);
                        }
                        None => {
                            owned.remove(n);
                        }
                    }
                }
            }
            _ => *owned = self.owned_versions(&owned, window),
        }
    }

    /// Each owned profile's loaded version, whether it complains, and
    /// when it was loaded (see [`Service::loaded_now`]).
    pub(super) fn owned_versions(&self, before: &OwnedMap, window: Option<(u64, u64)>) -> OwnedMap {
        let Some(rec) = &self.rec else {
            return Default::default();
        };
        rec.manifest
            .profiles
            .iter()
            .map(|(n, o)| (n.clone(), self.loaded_now(o, before.get(n), before.is_empty(), window)))
            .collect()
    }

    /// One owned profile's loaded version, whether it complains, and when
    /// it was loaded: as the load hook announced it (now done), or for a
    /// change the hook did not see, within `window` (the kernel loads of
    /// the apply, or else the whole reconcile); with nothing before
    /// (armord's start), at the start of time.
    fn loaded_now(
        &self,
        o: &crate::state::Owned,
        before: Option<&crate::trial::lesson::Loaded>,
        nothing_before: bool,
        window: Option<(u64, u64)>,
    ) -> crate::trial::lesson::Loaded {
        let complain = o.mode == crate::apparmor::Mode::Complain;
        let done = window.map_or_else(crate::trial::now_us, |(_, end)| end);
        let (since_us, loaded_us) = match before {
            // As the load hook told the follower, now done.
            Some(b) if b.sha256 == o.sha256 && b.complain == complain => {
                (b.since_us, Some(b.loaded_us.unwrap_or(done)))
            }
            _ if nothing_before => (0, Some(0)),
            // A load the hook announced did not take: the version
            // before is still loaded, every record its own.
            Some(b) if b.loaded_us.is_none() => (0, Some(0)),
            _ => window.map_or((self.applying_since_us, Some(done)), |(s, e)| (s, Some(e))),
        };
        crate::trial::lesson::Loaded {
            sha256: o.sha256.clone(),
            complain,
            since_us,
            loaded_us,
        }
    }

    /// After a reconcile, publish what it did. What follows each owned
    /// profile (the follower's versions, the lints, the rows) is brought in
    /// step for the names the manifest says changed, not for every one.
    pub(super) fn after(&mut self, report: &Report, trigger: Trigger) {
        // From now on the follower hears of each load before it starts.
        if let (Some(d), Some(rec)) = (&self.denials, self.rec.as_mut())
            && rec.on_load.is_none()
        {
            rec.on_load = Some(load_hook(d.owned.clone(), self.announced.clone()));
        }
        let touched = self.rec.as_mut().and_then(|r| r.manifest.take_touched());
        self.share_owned(report.load_window_us, touched.as_ref());
        if report.transient {
            self.retry_at = Some(Instant::now() + self.backoff);
            log::warn!(
                "a transient failure (parser timeout or crash, or the error above); retrying in {}s",
                self.backoff.as_secs_f64()
            );
            self.backoff = (self.backoff * 2).min(self.rec().config.resync_interval());
        } else {
            self.retry_at = None;
            self.backoff = super::BACKOFF_FIRST;
        }
        self.settle_at = report.recheck_in.map(|d| Instant::now() + d);
        let mut status = Status::from_report(self.rec(), report);
        status.drift_held = self
            .drift
            .held(Instant::now().into_std())
            .into_iter()
            .map(str::to_owned)
            .collect();
        if status != self.status {
            notify::status(&status.text());
        }
        self.status = status;
        let linted = self.lint(touched.as_ref());
        self.publish(report, touched.as_ref(), linted);
        // A change's exports wait a moment: a burst of changes rewrites
        // the file once, not once per change.
        if trigger == Trigger::Change {
            self.exports_stale = true;
            self.timers
                .exports
                .get_or_insert(Instant::now() + super::EXPORTS_AFTER_CHANGE);
        } else {
            self.write_exports();
        }
    }

    /// Lint the versions the names `touched` now have (`None`: every
    /// owned profile), against the kernel as it is now; each new warning
    /// is logged once, with the profile. A version not changed is not
    /// linted again. Returns the lints that changed: each profile's lines,
    /// `None` for one no longer owned.
    ///
    /// The version last linted is the one its published row shows: each
    /// publish lints the names it makes rows for whose version moved
    /// (rows made again for another reason keep their version).
    fn lint(&mut self, touched: Option<&BTreeSet<String>>) -> Vec<(String, Option<Vec<String>>)> {
        let Some(rec) = &self.rec else { return Vec::new() };
        let published = self.published.read().unwrap_or_else(|p| p.into_inner());
        let names: Vec<String> = match touched {
            Some(names) => names.iter().cloned().collect(),
            None => rec
                .manifest
                .profiles
                .keys()
                .chain(
                    published
                        .lints
                        .keys()
                        .filter(|n| !rec.manifest.profiles.contains_key(*n)),
                )
                .cloned()
                .collect(),
        };
        let mut host = None;
        let forced = rec.config.mode == crate::config::ForcedMode::Complain;
        let mut changed = Vec::new();
        for name in names {
            let Some(o) = rec.manifest.profiles.get(&name) else {
                changed.push((name, None));
                continue;
            };
            if published
                .profiles
                .owned
                .get(&name)
                .is_some_and(|r| r.sha256 == o.sha256)
            {
                continue;
            }
            let host = host.get_or_insert_with(|| crate::lint::Host::of(&rec.config));
            let text = std::fs::read_to_string(rec.state.store_entry(&o.sha256)).unwrap_or_default();
            let complain = forced || o.mode == crate::apparmor::Mode::Complain;
            let file = crate::escape::path(&o.file);
            let lines: Vec<String> = crate::lint::file(&o.file, &text, complain, host, &rec.config.lint.off)
                .iter()
                .map(|l| {
                    let at = l.line.map(|n| format!(":{n}")).unwrap_or_default();
                    let line = format!("{file}{at}: {}", crate::escape::text(&l.to_string()));
                    log::warn!(profile = name.as_str(), lint = l.name; "lint: {line}");
                    line
                })
                .collect();
            changed.push((name, Some(lines)));
        }
        changed
    }

    /// Update what D-Bus callers read, and the exports.
    /// How many rules each owned profile's loaded version learned.
    fn learned_counts(&self) -> std::collections::BTreeMap<String, usize> {
        let (Some(d), Some(rec)) = (&self.denials, &self.rec) else {
            return Default::default();
        };
        let store = d.learned.lock().unwrap_or_else(|p| p.into_inner());
        rec.manifest
            .profiles
            .iter()
            .map(|(n, o)| (n.clone(), store.learned.pending(n, &o.sha256)))
            .collect()
    }

    /// Every trial as status shows it.
    fn trial_status(&self) -> Vec<crate::reconcile::TrialStatus> {
        let (Some(rec), Some(d)) = (&self.rec, &self.denials) else {
            return self.rec.as_ref().map(|r| r.trial_status(|_, _| 0)).unwrap_or_default();
        };
        let store = d.learned.lock().unwrap_or_else(|p| p.into_inner());
        rec.trial_status(|n, sha| store.learned.pending(n, sha))
    }

    /// Update what D-Bus callers read: the rows and lints of the names
    /// `touched` and `linted`, the rest from the report.
    pub(super) fn publish(
        &mut self,
        report: &Report,
        touched: Option<&BTreeSet<String>>,
        linted: Vec<(String, Option<Vec<String>>)>,
    ) {
        let trials = self.trial_status();
        let Some(rec) = &self.rec else { return };
        {
            let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
            publish_into(&mut published, report, &self.status);
            for t in &trials {
                published.trials.insert(t.name.clone(), t.text.clone());
            }
            self.rows
                .update(&mut published.profiles, &rec.manifest, report, touched);
            for (n, lines) in linted {
                match lines {
                    Some(lines) if !lines.is_empty() => {
                        published.lints.insert(n, lines);
                    }
                    _ => {
                        published.lints.remove(&n);
                    }
                }
            }
        }
        self.metrics.trials = trials;
    }

    /// Write the exports from what is published now.
    pub(super) fn write_exports(&mut self) {
        let Some(rec) = &self.rec else { return };
        if rec.config.exports.prometheus_textfile.is_some() {
            self.metrics.learned = self.learned_counts();
        }
        let Some(rec) = &self.rec else { return };
        let published = self.published.read().unwrap_or_else(|p| p.into_inner());
        crate::daemon::exports::write(&rec.config, &published, &self.counters, &self.metrics);
        drop(published);
        self.exported_at = tokio::time::Instant::now();
        self.exported = self.counter_marks();
        self.exports_stale = false;
    }

    /// Trial lines as they stand now (the clock and the gate's evidence
    /// move them between reconciles): what D-Bus callers read follows at
    /// each gate tick, and the exports when a trial's state moved.
    pub(super) fn refresh_trials(&mut self) {
        let trials = self.trial_status();
        let same = |a: &crate::reconcile::TrialStatus, b: &crate::reconcile::TrialStatus| {
            (a.name.as_str(), a.state, a.learned, a.gate_us) == (b.name.as_str(), b.state, b.learned, b.gate_us)
        };
        let moved = trials.len() != self.metrics.trials.len()
            || trials.iter().zip(&self.metrics.trials).any(|(a, b)| !same(a, b));
        {
            let mut p = self.published.write().unwrap_or_else(|p| p.into_inner());
            p.trials = trials.iter().map(|t| (t.name.clone(), t.text.clone())).collect();
        }
        self.metrics.trials = trials;
        if moved {
            self.write_exports();
        }
    }

    pub(super) fn counter_marks(&self) -> (u64, u64, u64) {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        (c.total(), c.suppressed, c.lost)
    }

    /// Rewrite the exports when a denial counter moved since they were
    /// written, so they are never more than one tick behind.
    pub(super) fn refresh_exports(&mut self) {
        let marks = self.counter_marks();
        // Unchanged, but rewritten every EXPORT_HEARTBEAT all the same: its
        // timestamp is how a fleet tells armord down from armord idle.
        if marks == self.exported && !self.exports_stale && self.exported_at.elapsed() < super::EXPORT_HEARTBEAT {
            return;
        }
        self.metrics.trials = self.trial_status();
        self.write_exports();
    }

    /// Reconcile, and while removals wait only for the source to settle,
    /// wait and reconcile again: what `armorctl sync` answers is the
    /// converged result.
    pub(super) async fn converge(&mut self, trigger: Trigger) -> Result<Report, DaemonError> {
        let mut r = self.reconcile(trigger, true).await?;
        let settle = self.rec().config.removal_settle();
        for _ in 0..5 {
            match r.recheck_in {
                Some(wait) if wait <= settle && !self.stopping => {
                    tokio::time::sleep(wait).await;
                    r = self.reconcile(Trigger::Settle, true).await?;
                }
                _ => break,
            }
        }
        Ok(r)
    }

    pub(super) fn set_state(&self, state: &str) {
        self.published.write().unwrap_or_else(|p| p.into_inner()).state = state.to_owned();
    }

    /// Emit SyncFinished and ProfileChanged for a report.
    pub(super) async fn signal_report(&self, report: &Report) {
        let Some(conn) = &self.bus else { return };
        let Ok(e) = SignalEmitter::new(conn, OBJECT_PATH) else {
            return;
        };
        let _ = Armord::sync_finished(&e, report.is_clean(), &report.summary()).await;
        let changes = report
            .loaded
            .iter()
            .chain(&report.replaced)
            .chain(&report.restored)
            .map(|n| (n.as_str(), "loaded"))
            .chain(report.removed.iter().map(|n| (n.as_str(), "removed")))
            .chain(report.deferred.iter().map(|d| (d.name.as_str(), "deferred")));
        for (name, state) in changes {
            let _ = Armord::profile_changed(&e, name, state).await;
        }
    }
}
