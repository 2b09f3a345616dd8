//! The event loop's arms: one method each, called from `serve`'s `select!`.

use super::{NAMED_MAX, Service, Trigger};
use crate::daemon::DaemonError;
use crate::daemon::denials::DenialEvent;
use crate::daemon::open;
use crate::dbus::{Armord, Command, OBJECT_PATH, SyncResult};
use crate::notify;
use crate::watch::{Change, Debounce, WatchError, Watcher};
use tokio::time::Instant;
use zbus::object_server::SignalEmitter;

impl Service {
    /// A watch event: note what changed, and reconcile once the debounce
    /// lets it; a lost event or a broken watcher means a full read.
    pub(super) async fn on_watch(&mut self, change: Result<Change, WatchError>) -> Result<(), DaemonError> {
        match change {
            Ok(Change::Overflow) => {
                self.named = None;
                log::warn!("inotify queue overflowed: rereading every source");
                self.note_change();
                self.debounce.poke(Instant::now());
            }
            Ok(Change::Changed(path)) => {
                log::debug!("changed: {}", crate::escape::path(&path));
                if let Some(named) = self.named.as_mut() {
                    named.insert(path);
                    if named.len() > NAMED_MAX {
                        self.named = None;
                    }
                }
                self.note_change();
                self.debounce.poke(Instant::now());
                // With no quiet period, go now rather than at the timer's
                // next tick.
                self.on_debounce().await?;
            }
            Err(e) => {
                self.named = None;
                log::error!("{e}; falling back to the resync timer");
                self.watcher = Watcher::new()?;
                self.rearm();
            }
        }
        Ok(())
    }

    /// The debounce's quiet period (or its longest wait) ended.
    pub(super) async fn on_debounce(&mut self) -> Result<(), DaemonError> {
        if self.debounce.fire(Instant::now()) {
            self.reconcile(Trigger::Change, true).await?;
        }
        Ok(())
    }

    /// A source held removals until it settled: read it again.
    pub(super) async fn on_settle(&mut self) -> Result<(), DaemonError> {
        self.settle_at = None;
        self.reconcile(Trigger::Settle, true).await?;
        Ok(())
    }

    /// A transient failure's backoff ended. A timed-out file is not
    /// remembered as bad: read again.
    pub(super) async fn on_retry(&mut self) -> Result<(), DaemonError> {
        self.reconcile(Trigger::Retry, true).await?;
        Ok(())
    }

    /// The resync timer: a full read, the safety net under reads by
    /// reported names, for a change inotify does not report (a write
    /// through a descriptor still open). Through the read cache it lists
    /// the sources and compares metadata; it reads only files whose
    /// metadata moved.
    pub(super) async fn on_resync(&mut self) -> Result<(), DaemonError> {
        self.timers.resync = Instant::now() + self.rec().config.resync_interval();
        self.reconcile(Trigger::Resync, true).await?;
        Ok(())
    }

    /// Deferred removals are looked at again: a plan without reading.
    pub(super) async fn on_deferred(&mut self) -> Result<(), DaemonError> {
        self.timers.deferred = None;
        self.reconcile(Trigger::Resync, false).await?;
        Ok(())
    }

    /// A denial counter moved a while ago: rewrite the exports.
    pub(super) fn on_exports(&mut self) {
        self.timers.exports = None;
        self.refresh_exports();
        if std::mem::take(&mut self.trim_due) {
            crate::daemon::memory::give_back_freed();
        }
    }

    /// Write the learned rules' counts, when they moved.
    pub(super) fn on_learned_flush(&mut self) {
        self.timers.learned = Instant::now() + crate::daemon::denials::LEARNED_FLUSH;
        if let Some(d) = &self.denials {
            crate::daemon::denials::flush_learned(&d.learned);
        }
    }

    /// Tell systemd's watchdog armord is alive.
    pub(super) fn on_watchdog(&mut self) {
        notify::watchdog();
        self.timers.watchdog = self.timers.watchdog_every.map(|w| Instant::now() + w);
    }

    /// The drift poll: the kernel's policy revision is looked at.
    pub(super) async fn on_drift_poll(&mut self) -> Result<(), DaemonError> {
        self.timers.drift = Instant::now() + crate::daemon::drift::POLL;
        self.on_drift().await
    }

    /// Put back owned profiles the kernel lost since the last look (a
    /// removal behind armord's back), unless one keeps being removed.
    pub(super) async fn on_drift(&mut self) -> Result<(), DaemonError> {
        let Some(rec) = self.rec.as_ref() else { return Ok(()) };
        let kernel = rec.kernel.clone();
        if !self.drift.changed(kernel.as_ref()) {
            return Ok(());
        }
        let Ok(loaded) = kernel.loaded() else {
            // Look again next time.
            self.drift.settled();
            return Ok(());
        };
        let missing = crate::daemon::drift::Drift::missing(&rec.manifest, &loaded);
        let now = Instant::now().into_std();
        let repair = self.drift.repairs_due(&missing, now);
        let held: Vec<String> = self.drift.held(now).into_iter().map(str::to_owned).collect();
        if held != self.status.drift_held {
            self.status.drift_held = held;
            notify::status(&self.status.text());
        }
        if repair.is_empty() {
            return Ok(());
        }
        // The plan puts back what the sources still want (an unavailable
        // source wants all it had); what it did is what is reported.
        let report = self.reconcile(Trigger::Drift, false).await?;
        if !report.restored.is_empty() {
            let names: Vec<String> = report
                .restored
                .iter()
                .map(|n| crate::escape::text(n).into_owned())
                .collect();
            log::warn!(
                "drift: {} owned {} removed behind armord's back ({}); put back",
                report.restored.len(),
                if report.restored.len() == 1 {
                    "profile was"
                } else {
                    "profiles were"
                },
                names.join(", ")
            );
            self.drift.repairs_total += report.restored.len() as u64;
            self.metrics.drift_repairs = self.drift.repairs_total;
        }
        Ok(())
    }

    /// SIGHUP: read the configuration again; a bad one keeps the old.
    pub(super) async fn on_hup(&mut self) -> Result<(), DaemonError> {
        notify::reloading();
        self.set_state("reloading");
        log::info!("reloading configuration");
        match (self.reload)() {
            Ok(cfg) if cfg == self.rec().config => log::info!("configuration unchanged"),
            Ok(cfg) => {
                let simulate = self.simulate;
                let opened = tokio::task::spawn_blocking(move || open(cfg, simulate))
                    .await
                    .map_err(|e| DaemonError::Task(e.to_string()))?;
                match opened {
                    Ok(rec) => {
                        self.rec = Some(rec);
                        let cfg = &self.rec().config;
                        self.debounce = Debounce::new(cfg.debounce(), cfg.debounce_max());
                        log::info!("configuration reloaded");
                    }
                    Err(e) => log::error!("new configuration not applied, keeping the old one: {e}"),
                }
            }
            Err(e) => log::error!("new configuration not applied, keeping the old one: {e}"),
        }
        self.reconcile(Trigger::Reload, true).await?;
        notify::ready(&self.status.text());
        Ok(())
    }

    /// A D-Bus (or simulation socket) command.
    pub(super) async fn on_command(&mut self, cmd: Command) -> Result<(), DaemonError> {
        match cmd {
            Command::Sync {
                reply,
                allow_mass_removal,
                accept_signed_serial,
            } => {
                if accept_signed_serial {
                    log::info!("sync: a signed revision of a source whose last serial was lost is accepted now");
                    if let Some(rec) = self.rec.as_mut() {
                        rec.accept_signed_serials();
                    }
                }
                if allow_mass_removal {
                    log::info!("sync: a mass removal is allowed for the revision read now");
                    if let Some(rec) = self.rec.as_mut() {
                        rec.allow_mass_removal();
                    }
                }
                let r = self.converge(Trigger::Sync).await?;
                let _ = reply.send(SyncResult {
                    clean: r.is_clean(),
                    summary: r.summary(),
                    problems: r.problems.iter().map(|p| p.to_string()).collect(),
                });
            }
            Command::Trial {
                name,
                promote,
                uid,
                reply,
            } => {
                let Some(rec) = self.rec.as_mut() else {
                    let _ = reply.send(Err("armord is busy; try again".into()));
                    return Ok(());
                };
                let done = if promote {
                    rec.promote(&name, uid)
                } else {
                    rec.back_in_trial(&name)
                };
                let shown = crate::escape::text(&name).into_owned();
                match &done {
                    Ok(what) => log::info!(profile = shown.as_str(), uid = uid; "{what} (asked by uid {uid})"),
                    Err(why) => {
                        let verb = if promote { "promote" } else { "trial" };
                        log::warn!(profile = shown.as_str(), uid = uid; "{verb} {shown} refused (asked by uid {uid}): {why}");
                    }
                }
                if done.is_ok() {
                    self.reconcile(Trigger::Gate, false).await?;
                }
                let _ = reply.send(done);
            }
        }
        Ok(())
    }

    /// The promotion gate's tick: evidence in (processes confined, audit
    /// records lost), then every trial asked; a promotion is logged once
    /// with its evidence and loaded in enforce mode at once.
    pub(super) async fn on_gate(&mut self) -> Result<(), DaemonError> {
        self.timers.gate = Instant::now() + super::GATE_TICK;
        if self.exported_at.elapsed() >= super::EXPORT_HEARTBEAT {
            self.refresh_exports();
        }
        let Some(d) = &self.denials else {
            // Nothing can be learned without the follower: no promotion.
            return Ok(());
        };
        // Only once the follower has read what the journal holds: a record
        // not read yet may be a rule the trial would learn.
        let caught_up = d.progress.load(std::sync::atomic::Ordering::SeqCst) == crate::daemon::denials::CAUGHT_UP;
        let lost = self.counters.lock().unwrap_or_else(|p| p.into_inner()).lost;
        let delta = lost.saturating_sub(self.lost_seen);
        self.lost_seen = lost;
        let learned = d.learned.clone();
        let Some(rec) = self.rec.as_mut() else { return Ok(()) };
        let open = |t: &crate::trial::book::Trial| t.promoted.is_none();
        if !rec.book.trials.values().any(open) {
            return Ok(());
        }
        // A process list only while a trial has seen none, every fifth tick.
        self.gate_ticks = self.gate_ticks.wrapping_add(1);
        let look = self.gate_ticks % 5 == 1;
        let confined = if look && rec.book.trials.values().any(|t| open(t) && t.pids.is_empty()) {
            rec.kernel.confined().unwrap_or_default()
        } else {
            Default::default()
        };
        let gated = {
            let store = learned.lock().unwrap_or_else(|p| p.into_inner());
            let count = |n: &str, sha: &str| store.learned.pending(n, sha);
            rec.trial_evidence(&confined, delta).and_then(|()| {
                if caught_up {
                    rec.run_gate(count)
                } else {
                    Ok(Default::default())
                }
            })
        };
        let promoted = match gated {
            Ok((promoted, _)) => promoted,
            Err(e) => {
                log::error!("the promotion gate cannot record its evidence: {e}");
                return Ok(());
            }
        };
        if promoted.is_empty() {
            self.refresh_trials();
        }
        for (name, e) in &promoted {
            let shown = crate::escape::text(name).into_owned();
            let ran = std::time::Duration::from_micros(crate::trial::now_us().saturating_sub(e.since_us));
            log::info!(
                profile = shown.as_str();
                "trial of {shown} passed the gate: in trial {}, {} processes confined, no rule learned, no audit loss; promoted to enforce",
                crate::human::duration(std::time::Duration::from_secs(ran.as_secs())),
                e.confined
            );
        }
        if !promoted.is_empty() {
            self.reconcile(Trigger::Gate, false).await?;
        }
        Ok(())
    }

    /// Denial events from the follower: the exports follow within a
    /// second, and each event is signalled on D-Bus.
    pub(super) async fn on_denials(&mut self, first: Vec<DenialEvent>) {
        self.timers
            .exports
            .get_or_insert_with(|| Instant::now() + super::EXPORTS_REFRESH);
        // Everything queued now, in one wakeup.
        let mut batch = first;
        while batch.len() < 4096
            && let Ok(more) = self.denial_events.try_recv()
        {
            batch.extend(more);
        }
        if let Some(conn) = &self.bus
            && let Ok(e) = SignalEmitter::new(conn, OBJECT_PATH)
        {
            for ev in &batch {
                let _ = Armord::denial(&e, &ev.profile, &ev.kind, &ev.operation, &ev.name).await;
            }
        }
    }

    /// SIGTERM or SIGINT between jobs.
    pub(super) fn on_stop(&mut self) {
        let c = self.rec().cancel.clone();
        self.begin_stop(&c);
    }
}
