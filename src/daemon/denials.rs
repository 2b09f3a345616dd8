//! The denial follower's thread: journal records handed to the re-logger,
//! the counters and the D-Bus `Denial` signal.

use crate::config::{Config, DenialScope};
use crate::journal::{Counters, Follower, FollowerConfig, RateLimit, Stopper, relog};
use crate::trial::learned::At;
use crate::trial::lesson::{Loaded, lesson, load_of};
use crate::trial::store::Store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Is journald reading the audit transport? Asked of systemd when armord
/// runs as a systemd service; `None` when that cannot be told.
fn audit_transport_active() -> Option<bool> {
    std::env::var_os("INVOCATION_ID")?;
    let out = std::process::Command::new("systemctl")
        .args(["is-active", "systemd-journald-audit.socket"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim() == "active")
}

/// Raise the kernel's audit backlog limit (`[denials] audit_backlog_limit`),
/// so that a burst of denials waits in the kernel's queue instead of being
/// dropped before journald reads it. Never on a simulation, nor where
/// armord drives a stand-in for the kernel's AppArmor (a `securityfs` other
/// than the real one): the kernel's audit settings are the host's. A kernel
/// or a container that refuses is told in one warning, and armord goes on.
pub fn raise_audit_backlog(cfg: &Config) {
    let want = cfg.denials.audit_backlog_limit;
    let real_kernel = cfg.securityfs == Path::new(crate::config::DEFAULT_SECURITYFS);
    if !cfg.denials.enabled || want == 0 || !real_kernel {
        return;
    }
    match crate::kaudit::raise_backlog_limit(want) {
        Ok(crate::kaudit::Raised::From(old, new)) => log::info!(
            "raised the kernel's audit backlog limit from {old} to {new} records, \
             so that a burst of denials is queued rather than dropped ([denials] audit_backlog_limit)"
        ),
        Ok(crate::kaudit::Raised::Already(n)) => {
            log::debug!("the kernel's audit backlog limit is {n} records already (wanted at least {want})");
        }
        Err(e) => log::warn!(
            "cannot raise the kernel's audit backlog limit to {want}: {e}; a burst of more denials than the \
             kernel queues (64 by default without auditd) may be dropped before journald reads it"
        ),
    }
}

/// A record older than this is not attributed: its process ID may name
/// another process by now.
const ATTRIBUTION_AGE_SECS: u64 = 30;

/// The container and pod of a fresh record's process; nothing for an old
/// record (read back after a restart) or a process that is gone.
fn origin_of(proc_root: &Path, ev: &crate::journal::Event) -> crate::container::Origin {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let fresh = ev
        .record
        .audit_id
        .is_some_and(|a| a.epoch + ATTRIBUTION_AGE_SECS >= now);
    match ev.record.str("pid").and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) if fresh && pid > 0 => crate::container::of_pid(proc_root, pid),
        _ => Default::default(),
    }
}
use tokio::sync::mpsc;

/// The profiles armord owns, with the version and mode it loaded.
pub type OwnedVersions = Arc<RwLock<HashMap<String, Loaded>>>;

/// How often the loop writes the learned counts (a new rule is written at
/// once; see `trial::store`): what a kill -9 can lose is the counts and
/// last-seen times of known rules of this long.
pub const LEARNED_FLUSH: Duration = Duration::from_secs(2);

/// The denial follower's thread and what it shares with the loop.
pub struct Denials {
    pub owned: OwnedVersions,
    /// What each owned profile's loaded version would have denied.
    pub learned: Arc<Mutex<Store>>,
    /// Whether the follower has read all journalctl gave it (see
    /// [`CAUGHT_UP`]): the gate asks only then.
    pub progress: Arc<AtomicU8>,
    pub counters: Arc<Mutex<Counters>>,
    stopper: Stopper,
    thread: std::thread::JoinHandle<()>,
}

impl Denials {
    /// `signals`: whether the loop emits a D-Bus signal per denial (it has a
    /// bus); without, the loop is told only that the counters moved.
    pub fn start(
        cfg: &Config,
        counters: Arc<Mutex<Counters>>,
        events: mpsc::Sender<Vec<DenialEvent>>,
        signals: bool,
        writer: crate::journal::Writer,
        owned_now: HashMap<String, Loaded>,
    ) -> Option<Denials> {
        if !cfg.denials.enabled {
            return None;
        }
        // Known before the first record is read: none is judged without it.
        let owned: OwnedVersions = Arc::new(RwLock::new(owned_now));
        let learned = Arc::new(Mutex::new(Store::open(
            &crate::state::StateDir::new(cfg.state_dir.clone()),
            crate::trial::Bounds::from(&cfg.trial),
        )));
        let mut follower = Follower::new(FollowerConfig {
            journalctl: cfg.denials.journalctl.clone(),
            cursor_path: crate::state::StateDir::new(cfg.state_dir.clone()).cursor(),
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            commit_every: Duration::from_millis(200),
            writer,
        });
        let stopper = follower.stopper();
        let audit = audit_transport_active();
        if audit == Some(false) {
            log::warn!(
                "journald does not read the audit transport (systemd-journald-audit.socket is not active): \
                 AppArmor records reach the journal only through the kernel's rate-limited console copy, \
                 and a burst of denials is mostly lost; fix: systemctl enable systemd-journald-audit.socket, \
                 then reboot, or restart journald with it (systemctl stop systemd-journald; \
                 systemctl start systemd-journald-audit.socket systemd-journald) and armord"
            );
        }
        follower
            .audit_transport
            .store(audit == Some(true), std::sync::atomic::Ordering::Relaxed);
        {
            let (c, events) = (counters.clone(), events.clone());
            follower.on_loss = Some(Box::new(move |lost, since| {
                let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                c.lost = lost;
                c.lost_since_us = Some(since);
                // Tell the loop, so the exports show it at once.
                let _ = events.try_send(Vec::new());
            }));
        }
        let progress = Arc::new(AtomicU8::new(NOT_YET));
        let mut handler = Handler {
            progress: progress.clone(),
            owned: owned.clone(),
            counters: counters.clone(),
            learned: learned.clone(),
            events,
            signals,
            scope_all: cfg.denials.scope == DenialScope::All,
            rate: RateLimit::new(
                cfg.denials.rate_limit_burst,
                Duration::from_secs(cfg.denials.rate_limit_interval_secs),
            ),
            proc_root: cfg.proc.clone(),
            stats: follower.stats.clone(),
            batch: Vec::new(),
            moved: false,
            loads: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("denials".into())
            .spawn(move || {
                follower.run_notify(|ev| handler.on(ev));
                flush_learned(&handler.learned);
            })
            .ok()?;
        Some(Denials {
            owned,
            learned,
            progress,
            counters,
            stopper,
            thread,
        })
    }

    pub fn stop(self) {
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

/// The follower has not caught up with the journal since it started.
pub const NOT_YET: u8 = 0;
/// It is reading records.
pub const READING: u8 = 1;
/// It has read all journalctl wrote so far, and waits for more.
pub const CAUGHT_UP: u8 = 2;

/// What the follower's thread does with each record.
struct Handler {
    progress: Arc<AtomicU8>,
    owned: OwnedVersions,
    counters: Arc<Mutex<Counters>>,
    learned: Arc<Mutex<Store>>,
    events: mpsc::Sender<Vec<DenialEvent>>,
    /// The loop emits a D-Bus signal per denial.
    signals: bool,
    /// Re-log every profile's records, not only owned ones.
    scope_all: bool,
    rate: RateLimit,
    proc_root: std::path::PathBuf,
    stats: Arc<Mutex<crate::journal::FollowerStats>>,
    /// Denial events for the loop, passed on in batches: one wakeup of
    /// the loop per batch, not per record.
    batch: Vec<DenialEvent>,
    moved: bool,
    /// The kernel's last record of loading each owned profile.
    loads: HashMap<String, At>,
}

impl Handler {
    /// A record (`None`: the journal went quiet for a moment).
    fn on(&mut self, ev: Option<&crate::journal::Event>) {
        let Some(ev) = ev else {
            self.progress.store(CAUGHT_UP, Ordering::SeqCst);
            if self.moved {
                let _ = self.events.try_send(std::mem::take(&mut self.batch));
                self.moved = false;
            }
            return;
        };
        self.progress.store(READING, Ordering::SeqCst);
        let profile = ev.record.profile().map(|p| p.into_owned()).unwrap_or_default();
        let top = crate::apparmor::top_level(&profile).to_owned();
        {
            let owned_now = self.owned.read().unwrap_or_else(|p| p.into_inner());
            learn(&self.learned, &owned_now, &mut self.loads, ev);
            if !self.scope_all && !owned_now.contains_key(&top) {
                return;
            }
        }
        let origin = origin_of(&self.proc_root, ev);
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        relog(ev, &origin, &mut self.rate, &mut c);
        let _ = crate::failpoint::hit("after-relog");
        self.moved = true;
        if self.signals {
            let r = &ev.record;
            let s = |k: &str| r.str(k).map(|v| v.into_owned()).unwrap_or_default();
            self.batch.push(DenialEvent {
                profile,
                kind: r.kind.to_string(),
                operation: s("operation"),
                name: s("name"),
            });
        }
        // Best effort: a full queue drops the signals, never the records
        // (counted and re-logged above).
        if self.batch.len() >= 256 {
            let _ = self.events.try_send(std::mem::take(&mut self.batch));
            self.moved = false;
        }
        c.lost = self.stats.lock().map(|s| s.lost).unwrap_or(0);
    }
}

/// Learn from one record, if it teaches an owned profile's loaded version
/// anything. A rule that cannot be written down is logged, never fatal.
/// `loads`: the kernel's last record of loading each profile (a record
/// written before it is of the version before).
fn learn(
    store: &Mutex<Store>,
    owned: &HashMap<String, Loaded>,
    loads: &mut HashMap<String, At>,
    ev: &crate::journal::Event,
) {
    if let Some((name, at)) = load_of(&ev.record) {
        // Only owned profiles: a bound on what any load can add.
        if owned.contains_key(&name) {
            loads.insert(name, at);
        }
        return;
    }
    // The record's own time and serial: read again after a restart, it
    // counts nothing twice.
    let Ok((profile, loaded, one, at)) = lesson(&ev.record, owned, loads) else {
        return;
    };
    let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = s.observe(profile, &loaded.sha256, &one, at) {
        log::warn!("cannot record a learned rule of {}: {e}", crate::escape::text(profile));
    }
}

pub fn flush_learned(store: &Mutex<Store>) {
    if let Err(e) = store.lock().unwrap_or_else(|p| p.into_inner()).flush() {
        log::warn!("cannot write the learned rules: {e}");
    }
}

/// A denial for the D-Bus `Denial` signal (all empty: only counters moved).
#[derive(Debug, Default)]
pub struct DenialEvent {
    pub profile: String,
    pub kind: String,
    pub operation: String,
    pub name: String,
}
