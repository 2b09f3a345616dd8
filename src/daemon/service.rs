//! The one event loop: watch events, timers, signals.

use super::denials::{DenialEvent, Denials};
use super::status::{Status, published_from};
use super::{DaemonError, log_report, open};
use crate::config::{Config, ConfigError};
use crate::dbus::{self, Armord, Bus, Command, OBJECT_PATH, Published, SyncResult};
use crate::journal::Counters;
use crate::notify;
use crate::reconcile::{ApplyError, Problem, ProblemKind, Reconciler, Report};
use crate::watch::{Change, Debounce, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use zbus::object_server::SignalEmitter;

/// How often deferred removals are looked at while any exist.
const DEFERRED_RETRY: Duration = Duration::from_secs(2);
/// How soon the exports are rewritten after a denial counter moved.
const EXPORTS_REFRESH: Duration = Duration::from_secs(1);
/// Backoff after a parser timeout or crash: first and largest delay.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Sync,
    Change,
    Resync,
    Reload,
    Retry,
    Settle,
    Drift,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Sync => "sync",
            Trigger::Change => "change",
            Trigger::Resync => "resync",
            Trigger::Reload => "reload",
            Trigger::Retry => "retry",
            Trigger::Settle => "settle",
            Trigger::Drift => "drift",
        }
    }
}

struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

pub struct Service {
    rec: Option<Reconciler>,
    simulate: bool,
    reload: Box<dyn Fn() -> Result<Config, ConfigError>>,
    watcher: Watcher,
    debounce: Debounce,
    signals: Signals,
    status: Status,
    denials: Option<Denials>,
    stopping: bool,
    /// What D-Bus callers read; updated after each reconcile.
    published: Arc<RwLock<Published>>,
    commands: mpsc::Receiver<Command>,
    /// Batches of denial events from the follower (an empty batch: only
    /// the counters moved).
    denial_events: mpsc::Receiver<Vec<DenialEvent>>,
    denial_tx: mpsc::Sender<Vec<DenialEvent>>,
    counters: Arc<Mutex<Counters>>,
    bus: Option<zbus::Connection>,
    metrics: super::exports::Metrics,
    retry_at: Option<Instant>,
    /// Removals wait for a source to settle: read again then.
    settle_at: Option<Instant>,
    /// The denial counters as last exported (total, suppressed, lost).
    exported: (u64, u64, u64),
    /// Problems already logged: a standing problem is logged once.
    logged_problems: HashSet<String>,
    backoff: Duration,
    /// The paths inotify reported since the last reconcile started; `None`
    /// when that is not known (at start, after an overflow or a watcher
    /// error, or when too many came): the next reconcile reads in full.
    named: Option<BTreeSet<PathBuf>>,
    /// Owned profiles removed behind armord's back, put back.
    drift: super::drift::Drift,
}

/// Past this many reported paths, a full read is as cheap.
const NAMED_MAX: usize = 4096;

enum Job {
    Restore,
    /// A reconcile, with the paths inotify reported since the last one
    /// (`None`: read every source in full).
    Reconcile(Option<BTreeSet<PathBuf>>),
    Replan,
}

impl Service {
    fn rec(&self) -> &Reconciler {
        self.rec
            .as_ref()
            .expect("the reconciler is only absent while a job runs")
    }

    /// Run a job on the blocking pool, still answering SIGTERM: a stop
    /// request lets the job finish its current step, then it ends.
    async fn job(&mut self, job: Job) -> Result<Report, DaemonError> {
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
            (rec, r)
        });
        let (rec, result) = loop {
            tokio::select! {
                done = &mut handle => match done {
                    Ok(pair) => break pair,
                    Err(e) if e.is_panic() => return self.recover(config, e.to_string()).await,
                    Err(e) => return Err(DaemonError::Task(e.to_string())),
                },
                _ = self.signals.term.recv() => self.begin_stop(&cancel),
                _ = self.signals.int.recv() => self.begin_stop(&cancel),
            }
        };
        self.rec = Some(rec);
        // armord's own loads are not drift.
        self.drift.settled();
        Ok(result?)
    }

    /// Put back owned profiles the kernel lost since the last look (a
    /// removal behind armord's back), unless one keeps being removed.
    async fn check_drift(&mut self) -> Result<(), DaemonError> {
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
        let missing = super::drift::Drift::missing(&rec.manifest, &loaded);
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

    /// A job panicked (a bug): the reconciler it held is gone. Open it
    /// again from the state directory, as at start, and report the job as
    /// failed, so it is retried with backoff: armord keeps serving D-Bus,
    /// denials and the watch instead of exiting into a restart loop.
    async fn recover(&mut self, config: Config, why: String) -> Result<Report, DaemonError> {
        log::error!("internal error in a reconcile ({why}); opening the state again and retrying");
        let simulate = self.simulate;
        let opened = tokio::task::spawn_blocking(move || open(config, simulate))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))?;
        self.rec = Some(opened?);
        Err(DaemonError::Apply(ApplyError::Internal(why)))
    }

    fn begin_stop(&mut self, cancel: &std::sync::atomic::AtomicBool) {
        if !self.stopping {
            log::info!("stopping: finishing the current step; loaded profiles stay loaded");
            notify::stopping();
        }
        self.stopping = true;
        cancel.store(true, Ordering::SeqCst);
    }

    fn note_change(&mut self) {
        if let Some(rec) = self.rec.as_mut() {
            rec.note_change(Instant::now().into_std());
        }
    }

    fn rearm(&mut self) {
        let sources = self.rec().config.sources.clone();
        self.watcher.arm(&sources);
    }

    async fn reconcile(&mut self, trigger: Trigger, full: bool) -> Result<Report, DaemonError> {
        // Re-arm first: changes made while we read are then seen again.
        self.rearm();
        let started = Instant::now();
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
        self.after(&report);
        if full || report.changed() {
            self.signal_report(&report).await;
        }
        Ok(report)
    }

    /// Tell the denial follower which profiles armord owns now.
    fn share_owned(&self) {
        if let (Some(d), Some(rec)) = (&self.denials, &self.rec) {
            let names = rec.manifest.profiles.keys().cloned().collect();
            *d.owned.write().unwrap_or_else(|p| p.into_inner()) = names;
        }
    }

    fn after(&mut self, report: &Report) {
        self.share_owned();
        if report.transient {
            self.retry_at = Some(Instant::now() + self.backoff);
            log::warn!(
                "a transient failure (parser timeout or crash, or the error above); retrying in {}s",
                self.backoff.as_secs_f64()
            );
            self.backoff = (self.backoff * 2).min(self.rec().config.resync_interval());
        } else {
            self.retry_at = None;
            self.backoff = BACKOFF_FIRST;
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
        self.publish(report);
    }

    /// Update what D-Bus callers read, and the exports.
    fn publish(&mut self, report: &Report) {
        let Some(rec) = &self.rec else { return };
        let published = published_from(rec, report, &self.status);
        super::exports::write(&rec.config, &published, &self.counters, &self.metrics);
        self.exported = self.counter_marks();
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = published;
    }

    fn counter_marks(&self) -> (u64, u64, u64) {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        (c.total(), c.suppressed, c.lost)
    }

    /// Rewrite the exports when a denial counter moved since they were
    /// written, so they are never more than one tick behind.
    fn refresh_exports(&mut self) {
        let marks = self.counter_marks();
        if marks == self.exported {
            return;
        }
        if let Some(rec) = &self.rec {
            let published = self.published.read().unwrap_or_else(|p| p.into_inner()).clone();
            super::exports::write(&rec.config, &published, &self.counters, &self.metrics);
        }
        self.exported = marks;
    }

    /// Reconcile, and while removals wait only for the source to settle,
    /// wait and reconcile again: what `armorctl sync` answers is the
    /// converged result.
    async fn converge(&mut self, trigger: Trigger) -> Result<Report, DaemonError> {
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

    fn set_state(&self, state: &str) {
        self.published.write().unwrap_or_else(|p| p.into_inner()).state = state.to_owned();
    }

    /// Emit SyncFinished and ProfileChanged for a report.
    async fn signal_report(&self, report: &Report) {
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

    async fn reload_config(&mut self) -> Result<(), DaemonError> {
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

    async fn serve(&mut self) -> Result<i32, DaemonError> {
        if !self.simulate {
            super::denials::raise_audit_backlog(&self.rec().config);
        }
        let restored = self.job(Job::Restore).await?;
        if !restored.restored.is_empty() || !restored.problems.is_empty() {
            log_report("boot restore", &restored, &mut HashSet::new());
        }
        if self.stopping {
            return Ok(0);
        }
        self.reconcile(Trigger::Start, true).await?;
        if self.stopping {
            return Ok(0);
        }
        notify::ready(&self.status.text());
        log::info!("ready: {}", self.status.text());
        self.denials = Denials::start(
            &self.rec().config,
            self.counters.clone(),
            self.denial_tx.clone(),
            self.bus.is_some(),
            crate::journal::Writer::of(self.simulate),
        );
        self.share_owned();

        let resync = self.rec().config.resync_interval();
        let mut next_resync = Instant::now() + resync;
        let watchdog = notify::watchdog_interval();
        let mut next_watchdog = watchdog.map(|w| Instant::now() + w);
        let mut next_drift = Instant::now() + super::drift::POLL;
        let far = || Instant::now() + Duration::from_secs(86400 * 365);
        // One-shot timers, kept across iterations so that no other wakeup
        // pushes them back.
        let mut exports_at: Option<Instant> = None;
        let mut deferred_at: Option<Instant> = None;
        loop {
            if self.status.deferred == 0 {
                deferred_at = None;
            } else if deferred_at.is_none() {
                deferred_at = Some(Instant::now() + DEFERRED_RETRY);
            }
            tokio::select! {
                change = self.watcher.next() => match change {
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
                        // With no quiet period, go now rather than at the
                        // timer's next tick.
                        if self.debounce.fire(Instant::now()) {
                            self.reconcile(Trigger::Change, true).await?;
                        }
                    }
                    Err(e) => {
                        self.named = None;
                        log::error!("{e}; falling back to the resync timer");
                        self.watcher = Watcher::new()?;
                        self.rearm();
                    }
                },
                _ = sleep_until(self.debounce.deadline().unwrap_or_else(far)), if self.debounce.deadline().is_some() => {
                    if self.debounce.fire(Instant::now()) {
                        self.reconcile(Trigger::Change, true).await?;
                    }
                }
                _ = sleep_until(self.settle_at.unwrap_or_else(far)), if self.settle_at.is_some() => {
                    self.settle_at = None;
                    self.reconcile(Trigger::Settle, true).await?;
                }
                _ = sleep_until(exports_at.unwrap_or_else(far)), if exports_at.is_some() => {
                    exports_at = None;
                    self.refresh_exports();
                }
                _ = sleep_until(self.retry_at.unwrap_or_else(far)), if self.retry_at.is_some() => {
                    // A timed-out file is not remembered as bad: read again.
                    self.reconcile(Trigger::Retry, true).await?;
                }
                _ = sleep_until(next_resync) => {
                    next_resync = Instant::now() + resync;
                    // A full read: the safety net under reads by reported
                    // names, for a change inotify does not report (a write
                    // through a descriptor still open). Through the read
                    // cache it lists the sources and compares metadata; it
                    // reads only files whose metadata moved.
                    self.reconcile(Trigger::Resync, true).await?;
                }
                _ = sleep_until(deferred_at.unwrap_or_else(far)), if deferred_at.is_some() => {
                    deferred_at = None;
                    self.reconcile(Trigger::Resync, false).await?;
                }
                _ = sleep_until(next_drift) => {
                    next_drift = Instant::now() + super::drift::POLL;
                    self.check_drift().await?;
                }
                _ = sleep_until(next_watchdog.unwrap_or_else(far)), if next_watchdog.is_some() => {
                    notify::watchdog();
                    next_watchdog = watchdog.map(|w| Instant::now() + w);
                }
                _ = self.signals.hup.recv() => self.reload_config().await?,
                Some(cmd) = self.commands.recv() => match cmd {
                    Command::Sync { reply, allow_mass_removal, accept_signed_serial } => {
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
                },
                Some(first) = self.denial_events.recv() => {
                    // The counters moved: the exports follow within a second.
                    exports_at.get_or_insert_with(|| Instant::now() + EXPORTS_REFRESH);
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
                _ = self.signals.term.recv() => {
                    let c = self.rec().cancel.clone();
                    self.begin_stop(&c);
                }
                _ = self.signals.int.recv() => {
                    let c = self.rec().cancel.clone();
                    self.begin_stop(&c);
                }
            }
            if self.stopping {
                log::info!("stopped");
                return Ok(0);
            }
        }
    }
}

/// Run the service until SIGTERM or SIGINT.
pub fn run(
    cfg: Config,
    simulate: bool,
    bus: Option<Bus>,
    reload: Box<dyn Fn() -> Result<Config, ConfigError>>,
) -> Result<i32, DaemonError> {
    // A simulation serves on a socket of its own unless a bus is named.
    let socket = (simulate && bus.is_none()).then(|| dbus::simulation_socket(&cfg.state_dir));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Task(e.to_string()))?;
    rt.block_on(async move {
        let sig = |k: SignalKind| signal(k).map_err(|e| DaemonError::Task(format!("signal handler: {e}")));
        let signals = Signals {
            hup: sig(SignalKind::hangup())?,
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
        };
        notify::status("starting: restoring the last-good policy");
        let debounce = Debounce::new(cfg.debounce(), cfg.debounce_max());
        let rec = tokio::task::spawn_blocking(move || open(cfg, simulate))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))??;
        let published = Arc::new(RwLock::new(Published {
            state: "starting".into(),
            ..Default::default()
        }));
        let counters: Arc<Mutex<Counters>> = Arc::default();
        let (cmd_tx, commands) = mpsc::channel(8);
        let (denial_tx, denial_events) = mpsc::channel(1024);
        let object = Armord {
            published: published.clone(),
            commands: cmd_tx,
            denials: counters.clone(),
            peer_uid: None,
        };
        let (conn, _socket_server) = match &socket {
            Some(path) => (None, dbus::serve_socket(path, object).await),
            None => (dbus::serve(bus.unwrap_or(Bus::System), object).await, None),
        };
        let mut service = Service {
            rec: Some(rec),
            simulate,
            reload,
            watcher: Watcher::new()?,
            debounce,
            signals,
            status: Status::default(),
            denials: None,
            stopping: false,
            retry_at: None,
            settle_at: None,
            exported: (0, 0, 0),
            logged_problems: HashSet::new(),
            backoff: BACKOFF_FIRST,
            named: None,
            drift: Default::default(),
            published,
            commands,
            denial_events,
            denial_tx,
            counters,
            bus: conn,
            metrics: Default::default(),
        };
        let code = service.serve().await;
        if let Some(d) = service.denials.take() {
            d.stop();
        }
        if let Some(path) = &socket {
            let _ = std::fs::remove_file(path);
        }
        code
    })
}
