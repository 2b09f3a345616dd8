//! The one event loop: watch events, timers, signals, commands and
//! denials. `serve` waits on them all; each arm calls one handler in
//! `handlers.rs`; reconciles run through `jobs.rs`.

mod handlers;
mod jobs;

use super::denials::{DenialEvent, Denials};
use super::status::Status;
use super::{DaemonError, log_report, open};
use crate::config::{Config, ConfigError};
use crate::dbus::{self, Armord, Bus, Command, Published};
use crate::journal::Counters;
use crate::notify;
use crate::reconcile::Reconciler;
use crate::watch::{Debounce, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often deferred removals are looked at while any exist.
const DEFERRED_RETRY: Duration = Duration::from_secs(2);
/// How soon the exports are rewritten after a denial counter moved.
const EXPORTS_REFRESH: Duration = Duration::from_secs(1);
/// How soon the exports are rewritten after a change reconcile: a burst
/// of changes rewrites them once.
const EXPORTS_AFTER_CHANGE: Duration = Duration::from_millis(200);
/// How often the promotion gate is asked.
const GATE_TICK: Duration = Duration::from_secs(1);
/// The exports are rewritten at least this often, idle or not.
const EXPORT_HEARTBEAT: Duration = Duration::from_secs(60);
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
    Gate,
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
            Trigger::Gate => "gate",
        }
    }
}

struct Signals {
    hup: Signal,
    stop: StopSignals,
}

/// SIGTERM and SIGINT: both ask armord to stop.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Either of them.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
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
    /// When the exports were last written.
    exported_at: Instant,
    /// Problems already logged: a standing problem is logged once.
    logged_problems: HashSet<String>,
    backoff: Duration,
    /// The paths inotify reported since the last reconcile started; `None`
    /// when that is not known (at start, after an overflow or a watcher
    /// error, or when too many came): the next reconcile reads in full.
    named: Option<BTreeSet<PathBuf>>,
    /// Owned profiles removed behind armord's back, put back.
    drift: super::drift::Drift,
    timers: Timers,
    /// Audit records lost as the gate last counted them.
    lost_seen: u64,
    /// What the published profile rows are kept by.
    rows: super::rows::RowIndex,
    /// The names the load hook announced since the follower was last told.
    announced: Arc<Mutex<Vec<String>>>,
    /// The exports lag what is published (a change's, written shortly).
    exports_stale: bool,
    /// Change reconciles ran since the heap was last trimmed.
    trim_due: bool,
    /// Gate ticks since start (the process list is read every fifth).
    gate_ticks: u64,
    /// When the reconcile in flight began (µs since the epoch): a version
    /// it loads is taken to be loaded from then, so a record written
    /// before is not taught to it.
    applying_since_us: u64,
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
    #[allow(clippy::expect_used, reason = "an invariant of job(), not input")]
    fn rec(&self) -> &Reconciler {
        self.rec
            .as_ref()
            .expect("the reconciler is only absent while a job runs")
    }

    /// Restore the last good set, reconcile once, tell systemd the policy
    /// is ready and start following denials. False when a stop came first.
    async fn start(&mut self) -> Result<bool, DaemonError> {
        if !self.simulate {
            super::denials::raise_audit_backlog(&self.rec().config);
        }
        let restored = self.job(Job::Restore).await?;
        if !restored.restored.is_empty() || !restored.problems.is_empty() {
            log_report("boot restore", &restored, &mut HashSet::new());
        }
        if self.stopping {
            return Ok(false);
        }
        self.reconcile(Trigger::Start, true).await?;
        if self.stopping {
            return Ok(false);
        }
        notify::ready(&self.status.text());
        log::info!("ready: {}", self.status.text());
        self.denials = Denials::start(
            &self.rec().config,
            self.counters.clone(),
            self.denial_tx.clone(),
            self.bus.is_some(),
            crate::journal::Writer::of(self.simulate),
            self.owned_versions(&Default::default(), None),
        );
        if let Some(d) = &self.denials
            && d.learned.lock().unwrap_or_else(|p| p.into_inner()).lost
            && let Some(rec) = self.rec.as_mut()
        {
            // What the trials learned is not known: they start again.
            if let Err(e) = rec.restart_trials() {
                log::error!("cannot restart the trials: {e}");
            }
        }
        Ok(true)
    }

    /// The loop: each arm waits for one kind of event and calls its
    /// handler (see `handlers.rs`).
    async fn serve(&mut self) -> Result<i32, DaemonError> {
        if !self.start().await? {
            return Ok(0);
        }
        self.timers = Timers::new(self.rec().config.resync_interval());
        loop {
            self.timers.follow_deferred(self.status.deferred);
            tokio::select! {
                change = self.watcher.next() => self.on_watch(change).await?,
                _ = until(self.debounce.deadline()) => self.on_debounce().await?,
                _ = until(self.settle_at) => self.on_settle().await?,
                _ = until(self.timers.exports) => self.on_exports(),
                _ = until(self.retry_at) => self.on_retry().await?,
                _ = until(Some(self.timers.resync)) => self.on_resync().await?,
                _ = until(self.timers.deferred) => self.on_deferred().await?,
                _ = until(Some(self.timers.drift)) => self.on_drift_poll().await?,
                _ = until(Some(self.timers.learned)) => self.on_learned_flush(),
                _ = until(Some(self.timers.gate)) => self.on_gate().await?,
                _ = until(self.timers.watchdog) => self.on_watchdog(),
                _ = self.signals.hup.recv() => self.on_hup().await?,
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await?,
                Some(first) = self.denial_events.recv() => self.on_denials(first).await,
                _ = self.signals.stop.recv() => self.on_stop(),
            }
            if self.stopping {
                if self.exports_stale {
                    self.write_exports();
                }
                log::info!("stopped");
                return Ok(0);
            }
        }
    }
}

/// Sleep until `deadline`; with none, never wake (a disabled timer).
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The loop's own timers. One-shot ones are kept across iterations, so
/// that no other wakeup pushes them back.
struct Timers {
    /// The next full read.
    resync: Instant,
    /// The next look at the kernel's policy revision.
    drift: Instant,
    /// The next write of the learned counts.
    learned: Instant,
    /// The next time the promotion gate is asked.
    gate: Instant,
    /// The next watchdog ping, when systemd asked for them…
    watchdog: Option<Instant>,
    /// …every this long.
    watchdog_every: Option<Duration>,
    /// When the exports catch up with moved denial counters.
    exports: Option<Instant>,
    /// When deferred removals are looked at again.
    deferred: Option<Instant>,
}

impl Timers {
    fn new(resync: Duration) -> Self {
        let now = Instant::now();
        let watchdog_every = notify::watchdog_interval();
        Timers {
            resync: now + resync,
            drift: now + super::drift::POLL,
            learned: now + super::denials::LEARNED_FLUSH,
            gate: now + GATE_TICK,
            watchdog: watchdog_every.map(|w| now + w),
            watchdog_every,
            exports: None,
            deferred: None,
        }
    }

    /// While removals are deferred, look again every `DEFERRED_RETRY`.
    fn follow_deferred(&mut self, deferred: usize) {
        if deferred == 0 {
            self.deferred = None;
        } else if self.deferred.is_none() {
            self.deferred = Some(Instant::now() + DEFERRED_RETRY);
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
            stop: StopSignals {
                term: sig(SignalKind::terminate())?,
                int: sig(SignalKind::interrupt())?,
            },
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
            exported_at: Instant::now(),
            logged_problems: HashSet::new(),
            backoff: BACKOFF_FIRST,
            named: None,
            drift: Default::default(),
            timers: Timers::new(Duration::ZERO),
            lost_seen: 0,
            rows: Default::default(),
            announced: Default::default(),
            exports_stale: false,
            trim_due: false,
            gate_ticks: 0,
            applying_since_us: 0,
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
