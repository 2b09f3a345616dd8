//! The denial follower's thread: journal records handed to the re-logger,
//! the counters and the D-Bus `Denial` signal.

use crate::config::{Config, DenialScope};
use crate::journal::{Counters, Follower, FollowerConfig, RateLimit, Stopper, relog};
use crate::trial::learned::At;
use crate::trial::lesson::{Loaded, Unlearned, lesson, load_of};
use crate::trial::store::Store;
use std::collections::{BTreeMap, HashMap};
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
pub type OwnedVersions = Arc<RwLock<BTreeMap<String, Loaded>>>;

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
        owned_now: BTreeMap<String, Loaded>,
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
        {
            let learned = learned.clone();
            follower.before_commit = Some(Box::new(move || {
                match learned.lock().unwrap_or_else(|p| p.into_inner()).sync() {
                    Ok(()) => true,
                    Err(e) => {
                        log::error!("cannot sync the learned rules; the journal cursor stays: {e}");
                        false
                    }
                }
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
            learner: Learner::default(),
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
    learner: Learner,
}

impl Handler {
    /// A record (`None`: the journal went quiet for a moment).
    fn on(&mut self, ev: Option<&crate::journal::Event>) {
        let Some(ev) = ev else {
            if !self.learner.waiting.is_empty() {
                let owned_now = self.owned.read().unwrap_or_else(|p| p.into_inner());
                self.learner.settle(&self.learned, &owned_now);
            }
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
            self.learner.on(&self.learned, &owned_now, &ev.record);
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

/// Records held while their profile is being loaded, at most this many a
/// profile: past it, a record counts for the version being loaded.
const MAX_WAITING: usize = 4096;

/// What the learner keeps between records: the kernel's last record of
/// loading each owned profile, and the records held until one says which
/// version wrote them.
#[derive(Default)]
struct Learner {
    loads: HashMap<String, At>,
    waiting: HashMap<String, Vec<crate::audit::Record<'static>>>,
}

impl Learner {
    /// Learn from one record, if it teaches an owned profile's version
    /// anything. A rule that cannot be written down is logged, never fatal.
    fn on(&mut self, store: &Mutex<Store>, owned: &BTreeMap<String, Loaded>, r: &crate::audit::Record<'static>) {
        if let Some((name, at)) = load_of(r) {
            // Only owned profiles: a bound on what any load can add.
            if owned.contains_key(&name) {
                self.loads.insert(name.clone(), at);
                // What waited on this load is told apart now.
                for w in self.waiting.remove(&name).unwrap_or_default() {
                    self.learn(store, owned, &w, true);
                }
            }
            return;
        }
        self.learn(store, owned, r, false);
    }

    fn learn(
        &mut self,
        store: &Mutex<Store>,
        owned: &BTreeMap<String, Loaded>,
        r: &crate::audit::Record<'static>,
        settle: bool,
    ) {
        // The record's own time and serial: read again after a restart, it
        // counts nothing twice.
        let (profile, loaded, one, at) = match lesson(r, owned, &self.loads, settle) {
            Ok(l) => l,
            Err(Unlearned::Wait) => {
                let top = r
                    .profile()
                    .map(|p| crate::apparmor::top_level(&p).to_owned())
                    .unwrap_or_default();
                let held = self.waiting.entry(top).or_default();
                if held.len() < MAX_WAITING {
                    held.push(r.clone());
                    return;
                }
                match lesson(r, owned, &self.loads, true) {
                    Ok(l) => l,
                    Err(_) => return,
                }
            }
            Err(_) => return,
        };
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = s.observe(profile, &loaded.sha256, &one, at) {
            log::warn!("cannot record a learned rule of {}: {e}", crate::escape::text(profile));
        }
    }

    /// The journal read to its end: records held for a load that ended
    /// over a second ago get no load record (the kernel writes none, or it
    /// was lost), and count for the version loaded.
    fn settle(&mut self, store: &Mutex<Store>, owned: &BTreeMap<String, Loaded>) {
        let now = crate::trial::now_us();
        let done: Vec<String> = self
            .waiting
            .keys()
            .filter(|n| {
                owned
                    .get(*n)
                    .is_none_or(|l| l.loaded_us.is_some_and(|t| now.saturating_sub(t) > 1_000_000))
            })
            .cloned()
            .collect();
        for n in done {
            for w in self.waiting.remove(&n).unwrap_or_default() {
                self.learn(store, owned, &w, true);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::learned::Bounds;

    fn rec(line: &str) -> crate::audit::Record<'static> {
        crate::audit::parse(line).unwrap().into_owned()
    }

    fn allowed(secs: u64, serial: u64, name: &str) -> crate::audit::Record<'static> {
        rec(&format!(
            r#"audit({secs}.000:{serial}): apparmor="ALLOWED" operation="open" profile="custom.t" name="{name}" requested_mask="r" denied_mask="r" comm="app""#
        ))
    }

    fn loaded(sha: &str, since_us: u64, loaded_us: Option<u64>) -> BTreeMap<String, Loaded> {
        let l = Loaded {
            sha256: sha.into(),
            complain: true,
            since_us,
            loaded_us,
        };
        [("custom.t".to_owned(), l)].into()
    }

    /// A learned store in a state directory of its own.
    fn store() -> (tempfile::TempDir, Mutex<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDir::new(dir.path().to_owned());
        state.prepare().unwrap();
        let bounds = Bounds {
            max_rules: 10,
            max_profiles: 10,
        };
        let store = Mutex::new(Store::open(&state, bounds));
        (dir, store)
    }

    fn rules(store: &Mutex<Store>, sha: &str) -> Vec<String> {
        let s = store.lock().unwrap();
        s.learned
            .version("custom.t", sha)
            .map(|v| v.render())
            .unwrap_or_default()
    }

    #[test]
    fn a_record_of_the_version_being_loaded_waits_for_the_kernels_word() {
        let (_dir, store) = store();
        let mut l = Learner::default();
        // v2's load was announced at t=100 s; the kernel's record of it is
        // serial 10 at t=100.
        let owned = loaded("v2", 100_000_000, None);
        // v1's last record, before the announcement: the version before.
        l.on(&store, &owned, &allowed(99, 8, "/etc/v1-early"));
        // Written after it, before the load record was read: held.
        l.on(&store, &owned, &allowed(100, 9, "/etc/v1-late"));
        assert!(rules(&store, "v2").is_empty());
        assert_eq!(l.waiting["custom.t"].len(), 1);
        // The load record, then v2's own record.
        let status = rec(
            r#"audit(100.000:10): apparmor="STATUS" operation="profile_replace" profile="unconfined" name="custom.t" pid=1 comm="armord""#,
        );
        l.on(&store, &owned, &status);
        l.on(&store, &owned, &allowed(100, 11, "/etc/v2"));
        assert_eq!(rules(&store, "v2"), ["/etc/v2 r,"]);
        assert!(l.waiting.is_empty());
    }

    #[test]
    fn with_no_load_record_a_held_record_counts_for_the_new_version() {
        let (_dir, store) = store();
        let mut l = Learner::default();
        let now = crate::trial::now_us();
        let owned = loaded("v2", now - 5_000_000, None);
        l.on(&store, &owned, &allowed(now / 1_000_000 - 1, 9, "/etc/doubt"));
        // The load is under way: nothing settles yet.
        l.settle(&store, &owned);
        assert!(rules(&store, "v2").is_empty());
        // Done over a second ago, and the journal read to its end.
        let owned = loaded("v2", now - 5_000_000, Some(now - 2_000_000));
        l.settle(&store, &owned);
        assert_eq!(rules(&store, "v2"), ["/etc/doubt r,"]);
    }
}
