//! The one event loop: watch events, timers, signals.

use super::{DaemonError, log_report, open};
use crate::config::DenialScope;
use crate::config::{Config, ConfigError};
use crate::journal::{Counters, Follower, FollowerConfig, RateLimit, Stopper, relog};
use crate::notify;
use crate::reconcile::{ProblemKind, Reconciler, Report};
use crate::watch::{Change, Debounce, Watcher};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::{Instant, sleep_until};

/// How often deferred removals are looked at while any exist.
const DEFERRED_RETRY: Duration = Duration::from_secs(2);
/// Backoff after a parser timeout or crash: first and largest delay.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);

/// The counts `STATUS=` and `armorctl status` report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub loaded: usize,
    pub invalid: usize,
    pub refused: usize,
    pub deferred: usize,
    pub unavailable: Vec<PathBuf>,
}

impl Status {
    pub fn from_report(r: &Reconciler, report: &Report) -> Self {
        let count = |kinds: &[ProblemKind]| report.problems.iter().filter(|p| kinds.contains(&p.kind)).count();
        Status {
            loaded: r.manifest.profiles.len(),
            invalid: count(&[ProblemKind::Invalid, ProblemKind::LoadFailed]),
            refused: count(&[ProblemKind::Refused, ProblemKind::Conflict]),
            deferred: report.deferred.len(),
            unavailable: report
                .problems
                .iter()
                .filter(|p| p.kind == ProblemKind::Unavailable)
                .map(|p| p.file.clone())
                .collect(),
        }
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "{} loaded, {} invalid, {} refused, {} deferred",
            self.loaded, self.invalid, self.refused, self.deferred
        );
        for u in &self.unavailable {
            s.push_str(&format!("; source {} unavailable, last-good policy kept", u.display()));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Start,
    Change,
    Resync,
    Reload,
    Retry,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Change => "change",
            Trigger::Resync => "resync",
            Trigger::Reload => "reload",
            Trigger::Retry => "retry",
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
    retry_at: Option<Instant>,
    backoff: Duration,
}

enum Job {
    Restore,
    Reconcile,
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
        let mut handle = tokio::task::spawn_blocking(move || {
            let r = match job {
                Job::Restore => rec.restore(),
                Job::Reconcile => rec.reconcile(),
                Job::Replan => rec.replan(),
            };
            (rec, r)
        });
        let (rec, result) = loop {
            tokio::select! {
                done = &mut handle => match done {
                    Ok(pair) => break pair,
                    Err(e) => return Err(DaemonError::Task(e.to_string())),
                },
                _ = self.signals.term.recv() => self.begin_stop(&cancel),
                _ = self.signals.int.recv() => self.begin_stop(&cancel),
            }
        };
        self.rec = Some(rec);
        Ok(result?)
    }

    fn begin_stop(&mut self, cancel: &std::sync::atomic::AtomicBool) {
        if !self.stopping {
            log::info!("stopping: finishing the current step; loaded profiles stay loaded");
            notify::stopping();
        }
        self.stopping = true;
        cancel.store(true, Ordering::SeqCst);
    }

    fn rearm(&mut self) {
        let sources = self.rec().config.sources.clone();
        self.watcher.arm(&sources);
    }

    async fn reconcile(&mut self, trigger: Trigger, full: bool) -> Result<(), DaemonError> {
        // Re-arm first: changes made while we read are then seen again.
        self.rearm();
        let report = self.job(if full { Job::Reconcile } else { Job::Replan }).await?;
        if full || report.changed() || !report.deferred.is_empty() {
            log_report(&format!("reconcile ({})", trigger.as_str()), &report);
        } else {
            log::debug!("recheck: {}", report.summary());
        }
        self.after(&report);
        Ok(())
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
                "the parser timed out or crashed; retrying in {}s",
                self.backoff.as_secs()
            );
            self.backoff = (self.backoff * 2).min(self.rec().config.resync_interval());
        } else {
            self.retry_at = None;
            self.backoff = BACKOFF_FIRST;
        }
        let status = Status::from_report(self.rec(), report);
        if status != self.status {
            notify::status(&status.text());
        }
        self.status = status;
    }

    async fn reload_config(&mut self) -> Result<(), DaemonError> {
        notify::reloading();
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
        let restored = self.job(Job::Restore).await?;
        if !restored.restored.is_empty() || !restored.problems.is_empty() {
            log_report("boot restore", &restored);
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
        self.denials = Denials::start(&self.rec().config);
        self.share_owned();

        let resync = self.rec().config.resync_interval();
        let mut next_resync = Instant::now() + resync;
        let watchdog = notify::watchdog_interval();
        let mut next_watchdog = watchdog.map(|w| Instant::now() + w);
        let far = || Instant::now() + Duration::from_secs(86400 * 365);
        loop {
            let deferred_at = (self.status.deferred > 0).then(|| Instant::now() + DEFERRED_RETRY);
            tokio::select! {
                change = self.watcher.next() => match change {
                    Ok(Change::Overflow) => {
                        log::warn!("inotify queue overflowed: rereading every source");
                        self.debounce.poke(Instant::now());
                    }
                    Ok(Change::Changed(path)) => {
                        log::debug!("changed: {}", path.display());
                        self.debounce.poke(Instant::now());
                    }
                    Err(e) => {
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
                _ = sleep_until(self.retry_at.unwrap_or_else(far)), if self.retry_at.is_some() => {
                    // A timed-out file is not remembered as bad: read again.
                    self.reconcile(Trigger::Retry, true).await?;
                }
                _ = sleep_until(next_resync) => {
                    next_resync = Instant::now() + resync;
                    self.reconcile(Trigger::Resync, false).await?;
                }
                _ = sleep_until(deferred_at.unwrap_or_else(far)), if deferred_at.is_some() => {
                    self.reconcile(Trigger::Resync, false).await?;
                }
                _ = sleep_until(next_watchdog.unwrap_or_else(far)), if next_watchdog.is_some() => {
                    notify::watchdog();
                    next_watchdog = watchdog.map(|w| Instant::now() + w);
                }
                _ = self.signals.hup.recv() => self.reload_config().await?,
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

/// The denial follower's thread and what it shares with the loop.
pub struct Denials {
    pub owned: Arc<RwLock<HashSet<String>>>,
    pub counters: Arc<Mutex<Counters>>,
    stopper: Stopper,
    thread: std::thread::JoinHandle<()>,
}

impl Denials {
    fn start(cfg: &Config) -> Option<Denials> {
        if !cfg.denials.enabled {
            return None;
        }
        let owned: Arc<RwLock<HashSet<String>>> = Arc::default();
        let counters: Arc<Mutex<Counters>> = Arc::default();
        let mut follower = Follower::new(FollowerConfig {
            journalctl: cfg.denials.journalctl.clone(),
            cursor_path: cfg.cursor_path(),
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            commit_every: Duration::from_millis(200),
        });
        let stopper = follower.stopper();
        let scope_all = cfg.denials.scope == DenialScope::All;
        let mut rate = RateLimit::new(
            cfg.denials.rate_limit_burst,
            Duration::from_secs(cfg.denials.rate_limit_interval_secs),
        );
        let (o, c) = (owned.clone(), counters.clone());
        let stats = follower.stats.clone();
        let thread = std::thread::Builder::new()
            .name("denials".into())
            .spawn(move || {
                follower.run(|ev| {
                    let profile = ev.record.profile().map(|p| p.into_owned()).unwrap_or_default();
                    let top = crate::apparmor::top_level(&profile).to_owned();
                    if !scope_all && !o.read().unwrap_or_else(|p| p.into_inner()).contains(&top) {
                        return;
                    }
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    relog(ev, &mut rate, &mut c);
                    c.lost = stats.lock().map(|s| s.lost).unwrap_or(0);
                });
            })
            .ok()?;
        Some(Denials {
            owned,
            counters,
            stopper,
            thread,
        })
    }

    fn stop(self) {
        self.stopper.stop();
        let _ = self.thread.join();
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        log::info!(
            "denial follower stopped: {} records handled, {} suppressed, {} lost",
            c.total(),
            c.suppressed,
            c.lost
        );
    }
}

/// Run the service until SIGTERM or SIGINT.
pub fn run(
    cfg: Config,
    simulate: bool,
    reload: Box<dyn Fn() -> Result<Config, ConfigError>>,
) -> Result<i32, DaemonError> {
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
            backoff: BACKOFF_FIRST,
        };
        let code = service.serve().await;
        if let Some(d) = service.denials.take() {
            d.stop();
        }
        code
    })
}
