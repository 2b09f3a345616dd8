//! Reconcile: snapshot the sources, validate changed files with the parser,
//! `plan` (pure), then `apply` through the `Parser` and `Kernel` traits,
//! recording every step in the manifest and store.

/// The engine over a reconciler's parser, kernel, state and cancel flag. A
/// macro, so that it borrows those fields only and the manifest stays free.
macro_rules! engine {
    ($r:expr) => {
        Engine {
            parser: $r.parser.as_ref(),
            kernel: $r.kernel.as_ref(),
            state: &$r.state,
            opts: $r.opts(),
            cancel: &$r.cancel,
            on_load: $r.on_load.as_ref(),
            listed: &$r.listed,
        }
    };
}

mod bounds;
mod carry;
mod delta;
mod desired;
mod engine;
mod hash;
mod names;
mod plan;
mod signed;
mod still;
mod trial;
mod validate;

pub use names::{RESERVED_NAMES, RUNTIME_NAMES, RUNTIME_PREFIXES, bad_name};
pub use plan::{
    Deferred, Desired, DesiredFile, Held, HeldWhy, LoadAction, LoadKind, Plan, Policy, Problem, ProblemKind, Quiet,
    Relocation, RemovalRules, TrialRefused, Trials, Verdict, plan,
};

use crate::apparmor::Mode;
use crate::apparmor::listed::List;
use crate::apparmor::{
    Diagnostic, Kernel, KernelError, LoadOptions, Parser, ParserError, declared_profiles, names_a_file_may_define,
    policy_violation,
};
use crate::config::{Config, ForcedMode};
use crate::source::{self, Limits, SnapshotResult};
use crate::state::{Loaded, Manifest, Owned, PendingLoad, StateDir, StateError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use bounds::Bounds;
use carry::*;
pub use desired::render_specs;
use desired::*;
use engine::*;
pub use engine::{Engine, LoadHook, Loading};
use still::*;
pub use trial::TrialStatus;
pub use validate::Validator;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error("parser: {0}")]
    Parser(ParserError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The outcome of one reconcile (or boot restore).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub loaded: Vec<String>,
    pub replaced: Vec<String>,
    pub restored: Vec<String>,
    pub removed: Vec<String>,
    pub deferred: Vec<Deferred>,
    /// Trial declarations not honoured, and why.
    pub trial_refused: Vec<TrialRefused>,
    pub unchanged: usize,
    pub held: Vec<Held>,
    pub problems: Vec<Problem>,
    /// Profiles a crash left unconfirmed that the kernel holds: adopted.
    pub adopted: Vec<String>,
    /// When the kernel loads of this apply began and ended (µs since the
    /// epoch): a record of a profile loaded here written before the start
    /// is of the version before.
    pub load_window_us: Option<(u64, u64)>,
    /// A parser run timed out or crashed: worth a retry later, with backoff.
    pub transient: bool,
    /// Stopped early because armord is shutting down.
    pub cancelled: bool,
    /// Removals wait for a source to settle: reconcile again after this long.
    pub recheck_in: Option<Duration>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Profiles kept loaded although no source defines them, by cause.
    pub fn held_for(&self, why: HeldWhy) -> usize {
        self.held.iter().filter(|h| h.why == why).count()
    }

    pub fn changed(&self) -> bool {
        !(self.loaded.is_empty() && self.replaced.is_empty() && self.restored.is_empty() && self.removed.is_empty())
    }

    /// One line: `3 loaded, 1 replaced, 0 removed, 0 deferred, 12 unchanged, 1 invalid`.
    pub fn summary(&self) -> String {
        let count = |k: &[ProblemKind]| self.problems.iter().filter(|p| k.contains(&p.kind)).count();
        let mut s = format!(
            "{} loaded, {} replaced, {} restored, {} removed, {} deferred, {} unchanged, {} invalid, {} refused, {} unavailable",
            self.loaded.len(),
            self.replaced.len(),
            self.restored.len(),
            self.removed.len(),
            self.deferred.len(),
            self.unchanged,
            count(&[ProblemKind::Invalid, ProblemKind::LoadFailed]),
            count(&[ProblemKind::Refused, ProblemKind::Conflict]),
            count(&[ProblemKind::Unavailable]),
        );
        let settling = self.held_for(HeldWhy::Settling);
        if settling > 0 {
            s.push_str(&format!(", {settling} removals settling"));
        }
        let mass = self.held_for(HeldWhy::MassRemoval);
        if mass > 0 {
            s.push_str(&format!(", {mass} removals held (mass removal)"));
        }
        s
    }
}

/// Everything one node's reconcile needs, for `--once` and the daemon.
pub struct Reconciler {
    pub config: Config,
    pub parser: Arc<dyn Parser>,
    pub kernel: Arc<dyn Kernel>,
    /// The kernel's list, kept while its revision has not moved.
    listed: crate::apparmor::listed::Listed,
    pub state: StateDir,
    pub manifest: Manifest,
    pub validator: Validator,
    /// Said once at open: a missing or corrupt manifest that was rebuilt.
    pub notes: Vec<String>,
    /// Set to stop an apply in flight after its current step.
    pub cancel: Arc<AtomicBool>,
    /// What the sources wanted at the last reconcile: `replan` works from it
    /// without reading a single file.
    pub last: Option<Desired>,
    /// Each source's files as last read: unchanged files are not read again.
    pub read_caches: HashMap<PathBuf, source::ReadCache>,
    /// How long each source has stood still, from its reads.
    stillness: HashMap<PathBuf, Still>,
    /// The last change the watcher reported (any source).
    last_event: Option<Instant>,
    /// The next reconcile lets a mass removal of what it reads through.
    allow_mass_next: bool,
    /// Sources and the revision (fingerprint) whose mass removal was allowed.
    allow_mass: HashMap<PathBuf, u64>,
    /// The serial of each source's last applied signed revision: a lower
    /// one is a rollback.
    serials: BTreeMap<PathBuf, u64>,
    /// Serials of the revisions verified in this reconcile.
    pending_serials: BTreeMap<PathBuf, u64>,
    /// The next reconcile applies a signed revision of a source whose
    /// floor was lost (an operator's `--accept-signed-serial`).
    accept_serial_next: bool,
    /// Trials running and versions promoted (see `trial`).
    pub book: crate::trial::book::Book,
    /// This node's machine ID, for the fleet spread; `None`: no spread.
    machine_id: Option<String>,
    /// The trials' clock (µs since the epoch): the wall clock, or a test's.
    pub clock: fn() -> u64,
    /// Told of each batch of loads before the kernel gets it.
    pub on_load: Option<LoadHook>,
    /// `last` holds exactly what a read of every source would give now,
    /// bar what inotify reported since: a change reconcile may carry it
    /// forward (see `carry`).
    carry_ok: bool,
    /// Change reconciles that carried the last one forward.
    pub carried_reads: u64,
    /// Of those, the ones whose plan, made while the parser ran, was kept.
    pub plans_ahead_kept: u64,
    /// What the last plan left (see `delta`), and the paths where `last`
    /// differs from what it was made from (`None`: not known; the next
    /// plan is made in full).
    memo: Option<delta::Memo>,
    looked: Option<delta::Looked>,
    /// Plans made over part of the files.
    pub plans_by_reach: u64,
}

/// A plan made ahead: the kernel's list it was made against, and what it
/// reached when made over part of the files.
type Planned = (List, Plan, Option<delta::Reach>);

/// The plan for `desired`: over what the change at `looked` reaches when
/// `memo` can tell, else in full.
fn plan_now(
    memo: Option<&delta::Memo>,
    looked: Option<&delta::Looked>,
    desired: &Desired,
    manifest: &Manifest,
    kernel: &List,
    policy: &Policy,
) -> (Plan, Option<delta::Reach>) {
    if let (Some(memo), Some(looked)) = (memo, looked)
        && let Some((plan, reach)) = memo.plan(desired, manifest, kernel, looked, policy)
    {
        return (plan, Some(reach));
    }
    (plan(desired, manifest, kernel, &BTreeMap::new(), policy), None)
}

impl Reconciler {
    /// Open the state: read the manifest, or rebuild it from the store and
    /// the kernel when it is missing or corrupt (nothing is unloaded).
    pub fn open(config: Config, parser: Arc<dyn Parser>, kernel: Arc<dyn Kernel>) -> Result<Self, ApplyError> {
        let state = StateDir::new(config.state_dir.clone());
        state.prepare()?;
        let bounds = Bounds::new(config.mode, config.allowed_attachments.clone());
        let mut notes = Vec::new();
        let loaded = kernel.loaded()?;
        let mut manifest = match state.load_manifest() {
            Loaded::Found(m) => m,
            Loaded::Missing if state.store_entries().is_empty() => Manifest::new(),
            found => {
                let why = match &found {
                    // The file that is corrupt, the manifest or the
                    // pending-load log, is set aside.
                    Loaded::Corrupt(e) => format!("{e}; {}", crate::state::set_aside(e.path())),
                    _ => format!("{}: missing", state.manifest().display()),
                };
                let m = rebuild(&state, parser.as_ref(), &loaded);
                notes.push(format!(
                    "{why}; rebuilt from the store and the kernel: {} profiles owned",
                    m.profiles.len()
                ));
                m
            }
        };
        for s in &config.sources {
            if let Some(advice) = source::swapping_link_advice(s) {
                notes.push(advice);
            }
        }
        let adopted = manifest.recover(&loaded);
        if !adopted.is_empty() {
            notes.push(format!(
                "adopted {} profiles an interrupted run had loaded: {}",
                adopted.len(),
                adopted.join(", ")
            ));
        }
        state.save_manifest(&mut manifest)?;
        let serials = signed::load_serials(&state, &manifest.serials, &mut notes);
        let book = crate::trial::book::Book::load(&state.trial_book());
        let machine_id = trial::machine_id(&config, &mut notes);
        Ok(Reconciler {
            book,
            machine_id,
            clock: crate::trial::now_us,
            on_load: None,
            config,
            parser,
            kernel,
            state,
            manifest,
            validator: Validator::new(bounds),
            notes,
            cancel: Arc::new(AtomicBool::new(false)),
            last: None,
            read_caches: HashMap::new(),
            stillness: HashMap::new(),
            last_event: None,
            allow_mass_next: false,
            allow_mass: HashMap::new(),
            serials,
            accept_serial_next: false,
            pending_serials: BTreeMap::new(),
            carry_ok: false,
            carried_reads: 0,
            plans_ahead_kept: 0,
            memo: None,
            looked: None,
            listed: Default::default(),
            plans_by_reach: 0,
        })
    }

    /// The watcher saw a change: whatever is read next has not stood still
    /// since `at`.
    pub fn note_change(&mut self, at: Instant) {
        self.last_event = Some(self.last_event.map_or(at, |e| e.max(at)));
    }

    /// Let the next reconcile remove more than the mass-removal share of a
    /// source, for the revision it reads (an operator's `--allow-mass-removal`).
    pub fn allow_mass_removal(&mut self) {
        self.allow_mass_next = true;
    }

    /// Let the next reconcile apply a signed revision of a source whose
    /// last applied serial is unknown (its record lost), and take its
    /// serial as the floor (an operator's `--accept-signed-serial`).
    pub fn accept_signed_serials(&mut self) {
        self.accept_serial_next = true;
    }

    /// Record a read of `src`: it stood still since its newest change time,
    /// since the last watch event, and, when it differs from the last read,
    /// since that read.
    fn note_read(&mut self, src: &Path, snap: &source::SourceSnapshot) {
        let (fp, parts) = fingerprint(snap);
        self.record_read(src, fp, parts, snap.newest_change);
    }

    /// [`Reconciler::note_read`], of a read that found `fingerprint`
    /// (made of `parts`) and saw a change as late as `newest_change`.
    fn record_read(&mut self, src: &Path, fingerprint: u64, parts: still::Parts, newest_change: Duration) {
        let now = Instant::now();
        let mut since = instant_of(newest_change, now);
        if let Some(e) = self.last_event {
            since = since.max(e);
        }
        let prev = self.stillness.get(src);
        let confirmed = prev.is_some_and(|p| p.fingerprint == fingerprint);
        match prev {
            Some(p) if confirmed => since = since.max(p.since),
            Some(p) => since = since.max(p.read_at),
            None => {}
        }
        self.stillness.insert(
            src.to_owned(),
            Still {
                fingerprint,
                parts,
                since: since.min(now),
                confirmed,
                read_at: now,
            },
        );
        if self.allow_mass_next {
            self.allow_mass.insert(src.to_owned(), fingerprint);
        }
    }

    /// How long each source has stood still now, and which ones the
    /// operator let a mass removal through for.
    fn quiet_now(&self, desired: &mut Desired) {
        let now = Instant::now();
        desired.quiet.clear();
        desired.allow_mass.clear();
        for (src, st) in &self.stillness {
            let since = self.last_event.map_or(st.since, |e| st.since.max(e));
            desired.quiet.insert(
                src.clone(),
                Quiet {
                    quiet: now.saturating_duration_since(since),
                    confirmed: st.confirmed,
                },
            );
            if self.allow_mass.get(src) == Some(&st.fingerprint) {
                desired.allow_mass.insert(src.clone());
            }
        }
    }

    pub fn opts(&self) -> LoadOptions {
        LoadOptions {
            complain: self.config.mode == ForcedMode::Complain,
        }
    }

    /// Boot restore: load every owned profile the kernel lacks from the
    /// store, before any source is read.
    pub fn restore(&mut self) -> Result<Report, ApplyError> {
        let kernel = self.kernel.loaded()?;
        let mut groups: BTreeMap<crate::sha::Sha, (Owned, Vec<String>)> = BTreeMap::new();
        for (name, o) in &self.manifest.profiles {
            if !kernel.contains_key(name) && !self.manifest.removing.contains(name) && !o.sha256.is_empty() {
                groups
                    .entry(o.sha256.clone())
                    .or_insert_with(|| (o.clone(), Vec::new()))
                    .1
                    .push(name.clone());
            }
        }
        // An interrupted removal is finished by the next reconcile, not undone.
        self.manifest.removing.clear();
        let plan = Plan {
            loads: groups
                .into_iter()
                .map(|(sha, (o, names))| LoadAction {
                    file: o.file,
                    source: o.source,
                    sha256: sha,
                    names,
                    kind: LoadKind::Restore,
                    complain: o.complain,
                })
                .collect(),
            ..Default::default()
        };
        let engine = engine!(self);
        engine.apply(&plan, &mut self.manifest)
    }

    /// Read every source, validate what changed, plan and apply.
    pub fn reconcile(&mut self) -> Result<Report, ApplyError> {
        self.reconcile_named(None)
    }

    /// [`Reconciler::reconcile`], told the paths inotify reported since the
    /// last reconcile (`None`: unknown, or the queue overflowed). A plain
    /// directory is then read by those names only, every other file taken
    /// from the read cache; a path that belongs to no source, like any
    /// doubt, makes it a full read of every source.
    pub fn reconcile_named(
        &mut self,
        named: Option<std::collections::BTreeSet<PathBuf>>,
    ) -> Result<Report, ApplyError> {
        let _ = crate::failpoint::hit("reconcile");
        let named = named.filter(|n| {
            !n.is_empty()
                && n.iter()
                    .all(|p| self.config.sources.iter().any(|s| source::concerns(&s.path, p)))
        });
        if let Some(named) = &named
            && let Some(report) = self.carried(named)
        {
            return report;
        }
        // Until this read is validated, the last one's files are not what
        // the sources hold (the read caches are ahead of them).
        self.carry_ok = false;
        let limits = self.config.limits();
        let mut desired = Desired {
            configured: self.config.sources.iter().map(|s| s.path.clone()).collect(),
            ..Default::default()
        };
        let mut files = Vec::new();
        self.read_caches
            .retain(|path, _| self.config.sources.iter().any(|s| &s.path == path));
        self.stillness
            .retain(|path, _| self.config.sources.iter().any(|s| &s.path == path));
        let sources = self.config.sources.clone();
        for src in &sources {
            let cache = self.read_caches.entry(src.path.clone()).or_default();
            match source::snapshot_named(src, &limits, cache, named.as_ref()) {
                SnapshotResult::Ok(mut snap) => {
                    if src.signatures == crate::config::Signatures::Required
                        && let Err(e) = self.check_signed(&src.path, &mut snap)
                    {
                        log::warn!(
                            "{}: revision refused, the last good policy stays: {e}",
                            crate::escape::path(&src.path)
                        );
                        self.stillness.remove(&src.path);
                        desired.unavailable.push(source::Unavailable {
                            path: src.path.clone(),
                            reason: format!("revision refused (signed policy): {e}; the last good policy stays"),
                        });
                        continue;
                    }
                    self.note_read(&src.path, &snap);
                    // One copy of the source's path, shared by its files.
                    let shared: Arc<Path> = src.path.as_path().into();
                    push_refusals(snap.refused, &shared, &mut desired.files, &mut desired.may_define);
                    files.extend(snap.files.into_iter().map(|f| (f, shared.clone())));
                }
                SnapshotResult::Unavailable(u) => {
                    self.stillness.remove(&src.path);
                    desired.unavailable.push(u);
                }
            }
        }
        self.allow_mass_next = false;
        self.accept_serial_next = false;
        let files = render_specs(files, &mut desired.files, &mut desired.may_define);
        let engine = engine!(self);
        let validated = self
            .validator
            .validate(files, &self.manifest, &engine, &mut desired.may_define)?;
        self.note_checked(&validated)?;
        desired.files.extend(validated);
        sort_files(&mut desired.files);
        // Kept until the next full read: without the room its growth left
        // (a change takes out as many files as it puts in at the same paths).
        desired.files.shrink_to_fit();
        let transient = self.validator.transient > 0;
        self.plan_and_apply(desired, None, transient, true)
    }

    /// Plan and apply what the sources want now (`planned`: a plan made
    /// already for exactly that), then collect the stored copies nothing
    /// wants. A verdict a timeout or a crash gave (`transient`) is not
    /// carried forward.
    /// Plan and apply `desired`; `full_read`: every source was read (not
    /// a change reconcile carried forward).
    fn plan_and_apply(
        &mut self,
        desired: Desired,
        planned: Option<Planned>,
        transient: bool,
        full_read: bool,
    ) -> Result<Report, ApplyError> {
        self.carry_ok = !transient;
        if full_read {
            self.looked = None;
        }
        // The last reconcile's files are let go after the loads, not before.
        let previous = self.last.replace(desired);
        let mut report = self.replan_with(planned)?;
        drop(previous);
        report.transient |= transient;
        // The store's garbage goes after a full read (start, resync, a
        // queue overflow): a change reconcile leaves the versions it
        // replaced to the next one, and costs what changed, not a walk of
        // the store and of every owned profile. Keeping a stored copy
        // longer never unloads or loads anything.
        if full_read {
            let _ = self.state.store_gc(&keep_stored(&self.manifest, self.last.as_ref()));
            share_versions(&mut self.manifest, self.last.as_ref());
        }
        self.save_serials()?;
        Ok(report)
    }

    /// Versions loaded unchecked that a parser has now found valid are
    /// checked; one it rejects stays marked, and reported invalid.
    fn note_checked(&mut self, validated: &[DesiredFile]) -> Result<(), ApplyError> {
        let now_checked: Vec<crate::sha::Sha> = std::mem::take(&mut self.validator.checked)
            .into_iter()
            .filter(|sha| {
                validated
                    .iter()
                    .any(|f| &f.sha256 == sha && matches!(f.verdict, Verdict::Valid { .. }))
            })
            .collect();
        if !now_checked.is_empty() {
            for sha in &now_checked {
                self.manifest.unchecked.remove(sha.as_str());
            }
            self.state.save_manifest(&mut self.manifest)?;
        }
        Ok(())
    }

    /// Plan and apply against what the sources wanted at the last reconcile,
    /// with a fresh look at the kernel and at confinement: drift repair and
    /// deferred removals, without reading any profile file.
    pub fn replan(&mut self) -> Result<Report, ApplyError> {
        let report = self.replan_with(None)?;
        if report.changed() {
            let _ = self.state.store_gc(&keep_stored(&self.manifest, self.last.as_ref()));
        }
        Ok(report)
    }

    /// The kernel's list now, and the policy revision it is kept under:
    /// the list this reconciler's own reads left, while the revision has
    /// not moved since. `None` for a kernel with no revision (nothing to
    /// keep a list under: the list is not read) or an unreadable list.
    pub fn listed_now(&self) -> Option<(u64, List)> {
        self.kernel.revision()?;
        match self.listed.read_kept(self.kernel.as_ref()) {
            Ok((Some(rev), list)) => Some((rev, list)),
            _ => None,
        }
    }

    /// The rules a plan follows, from the configuration.
    fn policy(config: &Config) -> Policy<'_> {
        Policy {
            prefix: &config.profile_prefix,
            takeover: config.takeover,
            remove_in_use: config.remove_in_use,
            complain: config.mode == ForcedMode::Complain,
            removal: RemovalRules {
                settle: config.removal_settle(),
                mass_percent: config.mass_removal_percent,
                mass_settle: config.mass_removal_settle(),
            },
        }
    }

    /// [`Reconciler::replan`], given `planned`: the kernel's list and the
    /// plan made from it for exactly what `last` holds, its quiet times
    /// included (no process list: one is read when the plan removes).
    fn replan_with(&mut self, planned: Option<Planned>) -> Result<Report, ApplyError> {
        let Some(mut desired) = self.last.take() else {
            return self.reconcile();
        };
        if planned.is_none() {
            self.quiet_now(&mut desired);
        }
        desired.trials = self.trials_now(&desired);
        let engine = engine!(self);
        let looked = self.looked.take();
        let memo = self.memo.take();
        // The kernel list the memo held: let go of after the loads.
        let mut before = List::default();
        let result = (|| {
            let policy = Self::policy(&self.config);
            let (kernel, mut plan, reach) = match planned {
                Some(p) => p,
                None => {
                    // A full read (start, resync, overflow) reads the
                    // list afresh too: the safety net trusts no copy.
                    let kernel = match looked {
                        Some(_) => self.listed.read(self.kernel.as_ref())?,
                        None => self.listed.refresh(self.kernel.as_ref())?,
                    };
                    let (plan, reach) = plan_now(
                        memo.as_ref(),
                        looked.as_ref(),
                        &desired,
                        &self.manifest,
                        &kernel,
                        &policy,
                    );
                    (kernel, plan, reach)
                }
            };
            // Which processes a profile confines matters only for removals:
            // scan /proc only when something is to be removed.
            if !plan.removes.is_empty() {
                let in_use = self.kernel.confined()?;
                plan = self::plan(&desired, &self.manifest, &kernel, &in_use, &policy);
            }
            // What the next plan starts from: this one, taken in.
            self.plans_by_reach += u64::from(reach.is_some());
            self.memo = match (memo, reach, looked.as_ref()) {
                (Some(mut m), Some(r), Some(noted)) => {
                    before = m.absorb(&desired, &self.manifest, kernel, &plan, &r, noted);
                    Some(m)
                }
                _ => Some(delta::Memo::of_full(&desired, &self.manifest, kernel, &plan, &policy)),
            };
            // Removals go last, after one more look at their sources: loads
            // run the parser, and a file may have come back meanwhile.
            let removes = std::mem::take(&mut plan.removes);
            let mut report = engine.apply(&plan, &mut self.manifest)?;
            if !removes.is_empty() && !report.cancelled {
                let limits = self.config.limits();
                // Only the sources something is removed from are read again.
                let of = removes
                    .iter()
                    .filter_map(|n| self.manifest.profiles.get(n).map(|o| &*o.source))
                    .collect();
                let moved = moved_sources(&self.config, &of, &limits, &mut self.read_caches, &self.stillness);
                let (go, stay): (Vec<String>, Vec<String>) = removes.into_iter().partition(|n| {
                    self.manifest
                        .profiles
                        .get(n)
                        .is_some_and(|o| !moved.contains(&*o.source))
                });
                for name in stay {
                    let file = self
                        .manifest
                        .profiles
                        .get(&name)
                        .map(|o| o.file.to_path_buf())
                        .unwrap_or_default();
                    report.held.push(Held {
                        name,
                        file,
                        reason: "its source changed just before the removal; read again first".into(),
                        why: HeldWhy::Settling,
                    });
                    report.recheck_in = Some(Duration::ZERO);
                }
                let removal = Plan {
                    removes: go,
                    ..Default::default()
                };
                let removed = engine.apply(&removal, &mut self.manifest)?;
                report.removed = removed.removed;
                report.problems.extend(removed.problems);
                report.cancelled |= removed.cancelled;
            }
            // The list the loads left, as the kernel lists it now (kept
            // since the read after the loads unless the revision moved
            // since): a next change under the same revision reads and
            // compares no list. Off the path to this change's load, which
            // is done.
            if let Some(m) = self.memo.as_mut()
                && let Ok(list) = self.listed.read(self.kernel.as_ref())
            {
                m.advance(list, &desired);
            }
            Ok(report)
        })();
        drop(before);
        self.last = Some(desired);
        if result.is_ok() {
            // `last` is what the memo was made from.
            self.looked = Some(delta::Looked::default());
            self.book_follows()?;
        } else {
            self.memo = None;
        }
        result
    }
}

/// Rebuild a manifest from the store: every stored file whose profiles the
/// kernel holds is taken as owned. The file path is unknown until the next
/// reconcile finds the same content in a source.
fn rebuild(state: &StateDir, parser: &dyn Parser, kernel: &BTreeMap<String, Mode>) -> Manifest {
    let mut m = Manifest::new();
    // Only intact copies: a damaged one is set aside, not read for names.
    let shas: Vec<String> = state
        .store_entries()
        .into_iter()
        .filter(|s| state.store_load(s).is_some())
        .collect();
    let paths: Vec<PathBuf> = shas.iter().map(|s| state.store_entry(s)).collect();
    let Ok(names) = parser.names(&paths) else {
        return m;
    };
    for (sha, names) in shas.iter().zip(names) {
        for n in names.unwrap_or_default() {
            if n.contains("//") {
                continue;
            }
            if let Some(mode) = kernel.get(&n) {
                m.profiles.insert(
                    n,
                    Owned {
                        file: state.store_entry(sha).into(),
                        source: Path::new("").into(),
                        sha256: sha.clone().into(),
                        complain: *mode == Mode::Complain,
                        mode: mode.clone(),
                    },
                );
            }
        }
    }
    m
}

#[cfg(test)]
mod carry_tests;
#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trial_tests;
