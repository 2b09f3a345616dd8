//! `plan`: a pure function from what the sources want, what armord owns, what
//! the kernel holds and which profiles confine processes, to the actions that
//! bring the kernel in step. Every rule that never bends lives here.

use super::hash::{FxMap, FxSet};
use super::names::refusal;
use crate::apparmor::Diagnostic;
use crate::apparmor::Mode;
use crate::config::RemoveInUse;
use crate::human;
use crate::source::Unavailable;
use crate::state::{Manifest, Owned};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// Compiles; defines these top-level profiles.
    /// The names are shared by the memo and every plan that holds the verdict.
    Valid { names: Arc<[String]> },
    /// The parser rejected it.
    Invalid { diagnostics: Vec<Diagnostic> },
    /// armord refused it before the parser (size, encoding, symlink, mode, …).
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredFile {
    /// Shared with the manifest's entry of each profile loaded from it.
    pub path: Arc<Path>,
    pub source: Arc<Path>,
    pub sha256: crate::sha::Sha,
    pub verdict: Verdict,
}

/// What the sources want.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub files: Vec<DesiredFile>,
    /// Sources that are missing or unreadable: what they held stays loaded.
    pub unavailable: Vec<Unavailable>,
    /// Every configured source path.
    pub configured: Vec<PathBuf>,
    /// For each file that will not be loaded (invalid, refused), the names a
    /// lexical scan finds in it: it protects them. A blocked file with none
    /// here may define any name, and protects every profile of its source.
    #[serde(skip)]
    pub may_define: BTreeMap<PathBuf, Vec<String>>,
    /// How long each readable source has stood still. A source missing here
    /// was not read twice alike yet: nothing of it is removed.
    #[serde(skip)]
    pub quiet: BTreeMap<PathBuf, Quiet>,
    /// Sources whose current revision the operator allowed to remove more
    /// than the mass-removal share at once.
    #[serde(skip)]
    pub allow_mass: BTreeSet<PathBuf>,
    /// Which contents declare trial, and what the trial book says.
    #[serde(skip)]
    pub trials: Trials,
}

/// What decides a trial's mode (see `trial`): a content that declares
/// trial loads in complain mode until its profiles are promoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trials {
    /// Contents (sha256) that declare trial.
    pub declared: std::collections::HashSet<crate::sha::Sha>,
    /// Profiles and the version of each that was promoted.
    pub promoted: BTreeMap<String, String>,
    /// Profiles whose loaded version was promoted from a trial: a new
    /// version of one may start a new trial although it is enforced.
    pub known: BTreeSet<String>,
    /// A trial may put a profile enforced by other means into complain.
    pub allow_demotion: bool,
    /// Why no trial is honoured at all (`mode = "enforce"`).
    pub refused: Option<String>,
}

/// A trial declaration not honoured: the profile loads in enforce mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialRefused {
    pub name: String,
    pub reason: String,
}

/// How long a source has had no change, and whether two reads agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub quiet: Duration,
    /// The last two reads of the source found the same files.
    pub confirmed: bool,
}

/// When removals may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovalRules {
    /// A removal waits until the source has stood still this long.
    pub settle: Duration,
    /// More than this percentage of a source's owned profiles in one
    /// reconcile is a mass removal…
    pub mass_percent: u8,
    /// …which waits until the source has stood still this long.
    pub mass_settle: Duration,
}

impl RemovalRules {
    /// No waiting beyond two agreeing reads, and no mass-removal hold.
    pub const IMMEDIATE: RemovalRules = RemovalRules {
        settle: Duration::ZERO,
        mass_percent: 100,
        mass_settle: Duration::ZERO,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy<'a> {
    pub prefix: &'a str,
    pub takeover: bool,
    pub remove_in_use: RemoveInUse,
    /// Profiles are loaded with `-C`.
    pub complain: bool,
    pub removal: RemovalRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKind {
    New,
    Replace,
    /// Unchanged, but missing from the kernel (drift).
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadAction {
    pub file: Arc<Path>,
    pub source: Arc<Path>,
    pub sha256: crate::sha::Sha,
    pub names: Vec<String>,
    pub kind: LoadKind,
    /// Loaded in complain mode (forced, or in trial).
    pub complain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    Invalid,
    Refused,
    Conflict,
    Unavailable,
    LoadFailed,
    RemoveFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Escaped: a file name or a message that quotes one never forges a line.
        let message = crate::escape::text(&self.message);
        let file = crate::escape::path(&self.file);
        match self.line {
            _ if self.file.as_os_str().is_empty() => f.write_str(&message),
            Some(l) => write!(f, "{file}:{l}: {message}"),
            None => write!(f, "{file}: {message}"),
        }
    }
}

impl Problem {
    pub fn new(kind: ProblemKind, file: PathBuf, message: impl Into<String>) -> Self {
        Problem {
            kind,
            file,
            line: None,
            message: message.into(),
        }
    }
    pub fn from_diagnostic(kind: ProblemKind, file: &std::path::Path, d: &Diagnostic) -> Self {
        Problem {
            kind,
            file: d.file.clone().unwrap_or_else(|| file.to_owned()),
            line: d.line,
            message: d.message.clone(),
        }
    }
}

/// Why an owned profile that no source defines stays loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub name: String,
    pub file: PathBuf,
    pub reason: String,
    pub why: HeldWhy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldWhy {
    /// A file that is not valid may define it.
    Protected,
    /// Its source is unavailable or no longer configured.
    Source,
    /// The source has not stood still for the settling time yet.
    Settling,
    /// Part of a mass removal, held for the longer settling time.
    MassRemoval,
}

/// A removal put off while a profile confines processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deferred {
    pub name: String,
    /// The processes it still confines.
    pub pids: Vec<u32>,
}

/// An unchanged profile whose file or source moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relocation {
    pub name: String,
    pub file: Arc<Path>,
    pub source: Arc<Path>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub loads: Vec<LoadAction>,
    pub removes: Vec<String>,
    /// Wanted gone, but still confining processes (`remove_in_use = "defer"`).
    pub defers: Vec<Deferred>,
    /// Owned, unchanged and loaded.
    pub keeps: Vec<String>,
    /// Owned, not defined by a good file right now, but kept loaded.
    pub held: Vec<Held>,
    /// Owned and wanted gone, but already gone from the kernel.
    pub forgets: Vec<String>,
    /// Unchanged profiles whose file or source moved: manifest updates only.
    pub relocations: Vec<Relocation>,
    /// Trial declarations not honoured, and why.
    pub trial_refused: Vec<TrialRefused>,
    pub problems: Vec<Problem>,
    /// Removals are held until a source settles: plan again after this long.
    pub recheck_in: Option<Duration>,
    /// Unchanged profiles a plan made over part of the files (`delta`)
    /// did not look at: counted with `keeps`.
    pub carried_keeps: usize,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.loads.is_empty() && self.removes.is_empty() && self.forgets.is_empty() && self.relocations.is_empty()
    }
}

/// Compute the actions. Pure: no I/O.
///
/// One function per phase, in order; each says which rule of the design it
/// keeps.
pub fn plan(
    desired: &Desired,
    manifest: &Manifest,
    kernel: &BTreeMap<String, Mode>,
    in_use: &BTreeMap<String, Vec<u32>>,
    policy: &Policy,
) -> Plan {
    let mut out = Plan::default();
    let view = View::new(desired, manifest, kernel);
    let definers = index_definers(desired);
    let (blocked, accepted) = classify(&view, &definers, policy, &mut out.problems);
    let wanted = loads_and_keeps(&view, &accepted, policy, &mut out);
    let protection = protected_names(desired, &blocked);
    report_unavailable(desired, &mut out.problems);
    let (candidates, restores) = holds(&view, &wanted, &blocked, &protection, &mut out);
    out.recheck_in = gate_removals(&view, candidates, in_use, policy, &mut out);
    push_restores(restores, &mut out);
    out
}

/// Hashed views of the inputs: a plan looks each name up several times,
/// and a search of a thousand-entry ordered map compares dozens of names
/// that share their prefix.
struct View<'a> {
    desired: &'a Desired,
    manifest: &'a Manifest,
    kernel: &'a BTreeMap<String, Mode>,
    in_kernel: FxSet<&'a str>,
    owner: FxMap<&'a str, &'a Owned>,
}

impl<'a> View<'a> {
    fn new(desired: &'a Desired, manifest: &'a Manifest, kernel: &'a BTreeMap<String, Mode>) -> Self {
        View {
            desired,
            manifest,
            kernel,
            in_kernel: kernel.keys().map(String::as_str).collect(),
            owner: manifest.profiles.iter().map(|(n, o)| (n.as_str(), o)).collect(),
        }
    }

    fn loaded(&self, name: &str) -> bool {
        self.in_kernel.contains(name)
    }
}

/// The first two valid files that define a name: enough to tell a conflict
/// and name the other file.
#[derive(Debug, Clone, Copy)]
struct Definers {
    first: usize,
    second: Option<usize>,
}

impl Definers {
    /// The other file than `i`, when two define the name.
    fn other_than(self, i: usize) -> Option<usize> {
        let second = self.second?;
        Some(if self.first == i { second } else { self.first })
    }
}

/// Phase 1, who defines what: index each name to the valid files defining
/// it (rule: one name, one file; a conflict loads neither).
fn index_definers(desired: &Desired) -> FxMap<&str, Definers> {
    let mut definers: FxMap<&str, Definers> = FxMap::with_capacity_and_hasher(desired.files.len(), Default::default());
    for (i, f) in desired.files.iter().enumerate() {
        let Verdict::Valid { names } = &f.verdict else {
            continue;
        };
        for n in names.iter() {
            definers
                .entry(n.as_str())
                .and_modify(|d| {
                    d.second.get_or_insert(i);
                })
                .or_insert(Definers { first: i, second: None });
        }
    }
    definers
}

/// Files that will not be loaded, by the bytes of their path (a `Path`
/// compares and hashes component by component): what they owned stays as
/// it is.
type Blocked<'a> = FxSet<&'a [u8]>;

/// Phase 2, classify each file: invalid and refused files, and valid files
/// that break a name rule, conflict with another file or would take over a
/// profile armord does not own, are blocked with a problem naming the file;
/// the rest are accepted, by index (rule: a bad file never unloads or
/// downgrades anything).
fn classify<'a>(
    view: &View<'a>,
    definers: &FxMap<&str, Definers>,
    policy: &Policy,
    problems: &mut Vec<Problem>,
) -> (Blocked<'a>, Vec<usize>) {
    let mut blocked = Blocked::default();
    let mut accepted = Vec::new();
    for (i, f) in view.desired.files.iter().enumerate() {
        let found = match &f.verdict {
            Verdict::Valid { names } => valid_file_problem(view, definers, policy, i, names),
            Verdict::Invalid { diagnostics } if diagnostics.is_empty() => {
                Some((ProblemKind::Invalid, "rejected by apparmor_parser".to_owned()))
            }
            Verdict::Invalid { diagnostics } => {
                problems.extend(
                    diagnostics
                        .iter()
                        .map(|d| Problem::from_diagnostic(ProblemKind::Invalid, &f.path, d)),
                );
                blocked.insert(bytes(&f.path));
                continue;
            }
            Verdict::Refused { reason } => Some((ProblemKind::Refused, reason.clone())),
        };
        match found {
            Some((kind, message)) => {
                blocked.insert(bytes(&f.path));
                problems.push(Problem::new(kind, f.path.to_path_buf(), message));
            }
            None => accepted.push(i),
        }
    }
    (blocked, accepted)
}

/// Why valid file `i` with these names is not loaded, if it is not.
fn valid_file_problem(
    view: &View,
    definers: &FxMap<&str, Definers>,
    policy: &Policy,
    i: usize,
    names: &[String],
) -> Option<(ProblemKind, String)> {
    if names.is_empty() {
        return Some((ProblemKind::Refused, "holds no profile".to_owned()));
    }
    names.iter().find_map(|n| {
        if let Some(reason) = refusal(n, policy.prefix, policy.takeover) {
            Some((ProblemKind::Refused, reason))
        } else if let Some(j) = definers.get(n.as_str()).and_then(|d| d.other_than(i)) {
            let other = crate::escape::path(&view.desired.files[j].path);
            Some((
                ProblemKind::Conflict,
                format!("profile `{n}` is also defined in {other}"),
            ))
        } else if view.loaded(n) && !view.owner.contains_key(n.as_str()) && !policy.takeover {
            Some((
                ProblemKind::Conflict,
                format!(
                    "profile `{n}` is already loaded and armord does not own it (set takeover = true to manage it)"
                ),
            ))
        } else {
            None
        }
    })
}

/// Phase 3, loads, keeps and relocations: every accepted file is loaded
/// when new, changed or forced into another mode, restored when it is
/// unchanged but missing from the kernel (drift), and kept otherwise, with
/// the manifest following a file or source that moved (rule: an unchanged
/// profile is never reloaded). Returns the names the accepted files want.
fn loads_and_keeps<'a>(view: &View<'a>, accepted: &[usize], policy: &Policy, out: &mut Plan) -> FxSet<&'a str> {
    let desired = view.desired;
    let mut wanted: FxSet<&str> = FxSet::with_capacity_and_hasher(desired.files.len(), Default::default());
    for &i in accepted {
        let f = &desired.files[i];
        let Verdict::Valid { names } = &f.verdict else {
            continue;
        };
        wanted.extend(names.iter().map(String::as_str));
        let owned = || names.iter().map(|n| view.owner.get(n.as_str()).copied());
        let complain = wants_complain(view, f, names, policy, &mut out.trial_refused);
        let unchanged = owned().all(|o| o.is_some_and(|o| o.sha256 == f.sha256 && o.complain == complain));
        let kind = if unchanged {
            if names.iter().all(|n| view.loaded(n)) {
                for (n, o) in names.iter().zip(owned()) {
                    out.keeps.push(n.clone());
                    if let Some(o) = o
                        && (bytes(&o.file) != bytes(&f.path) || bytes(&o.source) != bytes(&f.source))
                    {
                        out.relocations.push(Relocation {
                            name: n.clone(),
                            file: f.path.clone(),
                            source: f.source.clone(),
                        });
                    }
                }
                continue;
            }
            LoadKind::Restore
        } else if owned().any(|o| o.is_some()) {
            LoadKind::Replace
        } else {
            LoadKind::New
        };
        out.loads.push(LoadAction {
            file: f.path.clone(),
            source: f.source.clone(),
            sha256: f.sha256.clone(),
            names: names.to_vec(),
            kind,
            complain,
        });
    }
    wanted
}

/// Whether accepted file `f` loads in complain mode: when the
/// configuration forces it, or when it declares trial and its profiles are
/// not promoted. A trial never weakens what is enforced: a profile loaded
/// in enforce mode that the trial book does not know (it was not promoted
/// from a trial) stays enforced unless `allow_demotion`; under
/// `mode = "enforce"` no trial is honoured. What is not honoured is said.
fn wants_complain(
    view: &View,
    f: &DesiredFile,
    names: &[String],
    policy: &Policy,
    refused: &mut Vec<TrialRefused>,
) -> bool {
    let t = &view.desired.trials;
    if policy.complain {
        return true;
    }
    if !t.declared.contains(f.sha256.as_str()) {
        return false;
    }
    let mut refuse = |reason: &str| {
        refused.extend(names.iter().map(|n| TrialRefused {
            name: n.clone(),
            reason: reason.to_owned(),
        }));
        false
    };
    if let Some(why) = &t.refused {
        return refuse(why);
    }
    if names.iter().all(|n| t.promoted.get(n).is_some_and(|p| *p == f.sha256)) {
        return false;
    }
    // Enforcing: any mode but complain and unconfined (kill and prompt
    // confine at least as much). A profile armord does not own (taken over)
    // is judged by the kernel's mode.
    let enforcing = |m: &Mode| !matches!(m, Mode::Complain | Mode::Unconfined);
    let enforced_elsewhere = names.iter().any(|n| match view.owner.get(n.as_str()) {
        Some(o) => !o.complain && enforcing(&o.mode) && !t.known.contains(n),
        None => view.kernel.get(n).is_some_and(enforcing),
    });
    if enforced_elsewhere && !t.allow_demotion {
        return refuse("trial refused: already enforced");
    }
    true
}

/// What blocked files may define.
struct Protection<'a> {
    /// Names some blocked file may define.
    names: FxSet<&'a str>,
    /// Sources with a blocked file whose names cannot be read: it may define
    /// any profile of its source.
    whole_sources: BTreeSet<&'a Path>,
}

/// Phase 4, protected names: a blocked valid file protects its names, an
/// invalid or refused one what a lexical scan finds, and one where the scan
/// finds nothing every profile of its source (rule: a file whose names
/// cannot be read still protects them).
fn protected_names<'a>(desired: &'a Desired, blocked: &Blocked) -> Protection<'a> {
    let mut p = Protection {
        names: FxSet::default(),
        whole_sources: BTreeSet::new(),
    };
    for f in desired.files.iter().filter(|f| blocked.contains(bytes(&f.path))) {
        match (&f.verdict, desired.may_define.get(&*f.path)) {
            (Verdict::Valid { names }, _) => p.names.extend(names.iter().map(String::as_str)),
            (_, Some(names)) if !names.is_empty() => p.names.extend(names.iter().map(String::as_str)),
            _ => {
                p.whole_sources.insert(&*f.source);
            }
        }
    }
    p
}

/// A problem for each unavailable source (rule: missing is not empty).
fn report_unavailable(desired: &Desired, problems: &mut Vec<Problem>) {
    problems.extend(
        desired
            .unavailable
            .iter()
            .map(|u| Problem::new(ProblemKind::Unavailable, u.path.clone(), format!("source {}", u.reason))),
    );
}

/// Owned profiles that may go, by source.
type Candidates<'a> = BTreeMap<&'a Path, Vec<(&'a str, &'a Owned)>>;
/// Held profiles missing from the kernel, by content: restored as they were.
type Restores<'a> = BTreeMap<&'a str, (&'a Owned, Vec<String>)>;

/// Why an owned profile no accepted file defines must stay, before any
/// removal rule is asked.
fn hold_reason(
    view: &View,
    blocked: &Blocked,
    protection: &Protection,
    unavailable: &BTreeSet<&Path>,
    name: &str,
    o: &Owned,
) -> Option<(&'static str, HeldWhy)> {
    if blocked.contains(bytes(&o.file)) {
        Some((
            "its file is not valid; the last good version stays loaded",
            HeldWhy::Protected,
        ))
    } else if protection.names.contains(name) {
        Some((
            "a file that is not valid may define it; the last good version stays loaded",
            HeldWhy::Protected,
        ))
    } else if protection.whole_sources.contains(&*o.source) {
        Some((
            "a file of its source cannot be read for names and may define it; the last good version stays loaded",
            HeldWhy::Protected,
        ))
    } else if unavailable.contains(&*o.source) {
        Some(("its source is unavailable; missing is not empty", HeldWhy::Source))
    } else if !view.desired.configured.iter().any(|c| *c == *o.source) {
        Some(("its source is no longer configured", HeldWhy::Source))
    } else {
        None
    }
}

/// Phase 5, holds: an owned profile no accepted file defines stays loaded
/// while a blocked file may define it or its source is unavailable or no
/// longer configured; one of those gone from the kernel is restored; one
/// gone and not held is forgotten; the rest are removal candidates (rule:
/// never unload a good profile).
fn holds<'a>(
    view: &View<'a>,
    wanted: &FxSet<&str>,
    blocked: &Blocked,
    protection: &Protection,
    out: &mut Plan,
) -> (Candidates<'a>, Restores<'a>) {
    let unavailable: BTreeSet<&Path> = view.desired.unavailable.iter().map(|u| u.path.as_path()).collect();
    let mut candidates = Candidates::new();
    let mut restores = Restores::new();
    for (name, o) in &view.manifest.profiles {
        if wanted.contains(name.as_str()) {
            continue;
        }
        if let Some((reason, why)) = hold_reason(view, blocked, protection, &unavailable, name, o) {
            if view.loaded(name) {
                out.held.push(Held {
                    name: name.clone(),
                    file: o.file.to_path_buf(),
                    reason: reason.to_owned(),
                    why,
                });
            } else if !o.sha256.is_empty() {
                restores
                    .entry(o.sha256.as_str())
                    .or_insert_with(|| (o, Vec::new()))
                    .1
                    .push(name.clone());
            }
        } else if !view.loaded(name) {
            out.forgets.push(name.clone());
        } else {
            candidates.entry(&*o.source).or_default().push((name.as_str(), o));
        }
    }
    (candidates, restores)
}

/// Phase 6, removal gating, per source: a removal waits until two reads
/// agreed and the source stood still for the settling time, a mass removal
/// for the longer one unless the operator allowed it, and a profile that
/// confines processes is deferred when so configured (rules: an empty read
/// is not a deletion; a removal never kills a workload). Returns when to
/// plan again for the holds.
fn gate_removals(
    view: &View,
    candidates: Candidates,
    in_use: &BTreeMap<String, Vec<u32>>,
    policy: &Policy,
    out: &mut Plan,
) -> Option<Duration> {
    let mut owned_in: FxMap<&[u8], usize> = FxMap::default();
    for o in view.manifest.profiles.values() {
        *owned_in.entry(bytes(&o.source)).or_default() += 1;
    }
    let mut recheck: Option<Duration> = None;
    for (src, names) in candidates {
        let owned = owned_in.get(bytes(src)).copied().unwrap_or(0);
        let held = removal_hold(view.desired, policy.removal, src, names.len(), owned);
        if let Some((_, _, wait)) = &held {
            recheck = Some(recheck.map_or(*wait, |r| r.min(*wait)));
        }
        for (name, o) in names {
            if let Some((reason, why, _)) = &held {
                out.held.push(Held {
                    name: name.to_owned(),
                    file: o.file.to_path_buf(),
                    reason: reason.clone(),
                    why: *why,
                });
            } else if let Some(pids) = in_use
                .get(name)
                .filter(|p| !p.is_empty() && policy.remove_in_use == RemoveInUse::Defer)
            {
                out.defers.push(Deferred {
                    name: name.to_owned(),
                    pids: pids.clone(),
                });
            } else {
                out.removes.push(name.to_owned());
            }
        }
    }
    recheck
}

/// Why `going` of the `owned` profiles of `src` may not go yet, and how
/// long until they may.
fn removal_hold(
    desired: &Desired,
    rules: RemovalRules,
    src: &Path,
    going: usize,
    owned: usize,
) -> Option<(String, HeldWhy, Duration)> {
    let q = desired.quiet.get(src).copied().unwrap_or(Quiet {
        quiet: Duration::ZERO,
        confirmed: false,
    });
    let mass = going * 100 > owned * usize::from(rules.mass_percent);
    if !q.confirmed || q.quiet < rules.settle {
        Some((
            format!(
                "removal waits until the source has stood still for {} and two reads agree",
                human::duration(rules.settle)
            ),
            HeldWhy::Settling,
            rules.settle.saturating_sub(q.quiet),
        ))
    } else if mass && !desired.allow_mass.contains(src) && q.quiet < rules.mass_settle {
        Some((
            format!(
                "mass removal held: {going} of the {owned} profiles of {} would go; held until the source has stood still for {} (`armorctl sync --allow-mass-removal` removes them now)",
                crate::escape::path(src),
                human::duration(rules.mass_settle)
            ),
            HeldWhy::MassRemoval,
            rules.mass_settle.saturating_sub(q.quiet),
        ))
    } else {
        None
    }
}

/// Phase 7, restores: held profiles gone from the kernel (drift) come back
/// as their last good version, one load per content (rule: what was loaded
/// stays loaded).
fn push_restores(restores: Restores, out: &mut Plan) {
    for (sha, (o, names)) in restores {
        out.loads.push(LoadAction {
            file: o.file.clone(),
            source: o.source.clone(),
            sha256: if o.sha256 == *sha {
                o.sha256.clone()
            } else {
                (*sha).into()
            },
            names,
            kind: LoadKind::Restore,
            complain: o.complain,
        });
    }
}

fn bytes(p: &std::path::Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}
