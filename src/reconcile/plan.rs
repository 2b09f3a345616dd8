//! `plan`: a pure function from what the sources want, what armord owns, what
//! the kernel holds and which profiles confine processes, to the actions that
//! bring the kernel in step. Every rule that never bends lives here.

use super::hash::{FxMap, FxSet};
use crate::apparmor::Diagnostic;
use crate::config::RemoveInUse;
use crate::source::Unavailable;
use crate::state::{Manifest, Owned};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Names no source may define.
pub const RESERVED_NAMES: &[&str] = &["unconfined"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// Compiles; defines these top-level profiles.
    Valid { names: Vec<String> },
    /// The parser rejected it.
    Invalid { diagnostics: Vec<Diagnostic> },
    /// armord refused it before the parser (size, encoding, symlink, mode, …).
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredFile {
    pub path: PathBuf,
    pub source: PathBuf,
    pub sha256: String,
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
    pub file: PathBuf,
    pub source: PathBuf,
    pub sha256: String,
    pub names: Vec<String>,
    pub kind: LoadKind,
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub loads: Vec<LoadAction>,
    pub removes: Vec<String>,
    pub defers: Vec<(String, Vec<u32>)>,
    /// Owned, unchanged and loaded.
    pub keeps: Vec<String>,
    /// Owned, not defined by a good file right now, but kept loaded.
    pub held: Vec<Held>,
    /// Owned and wanted gone, but already gone from the kernel.
    pub forgets: Vec<String>,
    /// Unchanged profiles whose file or source moved: manifest updates only.
    pub relocations: Vec<(String, PathBuf, PathBuf)>,
    pub problems: Vec<Problem>,
    /// Removals are held until a source settles: plan again after this long.
    pub recheck_in: Option<Duration>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.loads.is_empty() && self.removes.is_empty() && self.forgets.is_empty() && self.relocations.is_empty()
    }
}

/// Profiles the container runtimes load themselves: a source must not
/// define them (the runtime would replace armord's version, and armord would
/// put its own back) unless `takeover = true`.
pub const RUNTIME_NAMES: &[&str] = &["docker-default", "cri-containerd.apparmor.d", "crio-default"];
/// Podman/CRI-O's versioned default profiles.
pub const RUNTIME_PREFIXES: &[&str] = &["containers-default-"];

/// The longest profile name armord loads, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Why a name cannot be a profile armord loads, whatever the prefix.
pub fn bad_name(name: &str) -> Option<String> {
    let shown = || -> String { name.chars().take(64).flat_map(char::escape_debug).collect() };
    if name.is_empty() {
        return Some("a profile has an empty name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!(
            "profile `{}…` has a name of {} bytes, over the limit of {MAX_NAME_BYTES}",
            shown(),
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Some(format!(
            "profile `{}` has a control character (newline, tab, …) in its name",
            shown()
        ));
    }
    if name.starts_with(':') {
        return Some(format!(
            "profile `{}` names a policy namespace; armord loads into the root namespace only",
            shown()
        ));
    }
    None
}

fn refusal(policy: &Policy, name: &str) -> Option<String> {
    if let Some(why) = bad_name(name) {
        return Some(why);
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!("profile `{name}` uses a reserved name"));
    }
    if !policy.takeover && (RUNTIME_NAMES.contains(&name) || RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))) {
        return Some(format!(
            "profile `{name}` belongs to a container runtime, which loads it itself (set takeover = true to manage it)"
        ));
    }
    if !name.starts_with(policy.prefix) {
        return Some(format!(
            "profile `{name}` does not start with the required prefix `{}`",
            policy.prefix
        ));
    }
    None
}

/// Compute the actions. Pure: no I/O.
pub fn plan(
    desired: &Desired,
    manifest: &Manifest,
    kernel: &BTreeMap<String, String>,
    in_use: &BTreeMap<String, Vec<u32>>,
    policy: &Policy,
) -> Plan {
    let mut out = Plan::default();
    // Hashed views of the kernel's and the manifest's names: a plan looks
    // each name up several times, and a search of a thousand-entry ordered
    // map compares dozens of names that share their prefix.
    let in_kernel: FxSet<&str> = kernel.keys().map(String::as_str).collect();
    let owner: FxMap<&str, &Owned> = manifest.profiles.iter().map(|(n, o)| (n.as_str(), o)).collect();

    // Which valid files define each name: the first two are enough to tell
    // a conflict and name the other file.
    let mut definers: FxMap<&str, [usize; 2]> =
        FxMap::with_capacity_and_hasher(desired.files.len(), Default::default());
    for (i, f) in desired.files.iter().enumerate() {
        if let Verdict::Valid { names } = &f.verdict {
            for n in names {
                definers
                    .entry(n.as_str())
                    .and_modify(|d| {
                        if d[1] == usize::MAX {
                            d[1] = i;
                        }
                    })
                    .or_insert([i, usize::MAX]);
            }
        }
    }

    // Files that will not be loaded; what they owned stays as it is.
    // Paths by their bytes: a `Path` compares and hashes component by
    // component.
    let mut blocked: FxSet<&[u8]> = FxSet::default();
    let mut accepted: Vec<usize> = Vec::new();
    for (i, f) in desired.files.iter().enumerate() {
        let names = match &f.verdict {
            Verdict::Valid { names } => names,
            Verdict::Invalid { diagnostics } => {
                blocked.insert(bytes(&f.path));
                if diagnostics.is_empty() {
                    out.problems.push(Problem::new(
                        ProblemKind::Invalid,
                        f.path.clone(),
                        "rejected by apparmor_parser",
                    ));
                }
                for d in diagnostics {
                    out.problems
                        .push(Problem::from_diagnostic(ProblemKind::Invalid, &f.path, d));
                }
                continue;
            }
            Verdict::Refused { reason } => {
                blocked.insert(bytes(&f.path));
                out.problems
                    .push(Problem::new(ProblemKind::Refused, f.path.clone(), reason.clone()));
                continue;
            }
        };
        let mut problem = None;
        if names.is_empty() {
            problem = Some((ProblemKind::Refused, "holds no profile".to_owned()));
        }
        for n in names {
            if problem.is_some() {
                break;
            }
            if let Some(reason) = refusal(policy, n) {
                problem = Some((ProblemKind::Refused, reason));
            } else if let Some(others) = definers.get(n.as_str()).filter(|d| d[1] != usize::MAX) {
                let other = others
                    .iter()
                    .find(|&&j| j != i)
                    .map(|&j| crate::escape::path(&desired.files[j].path))
                    .unwrap_or_default();
                problem = Some((
                    ProblemKind::Conflict,
                    format!("profile `{n}` is also defined in {other}"),
                ));
            } else if in_kernel.contains(n.as_str()) && !owner.contains_key(n.as_str()) && !policy.takeover {
                problem = Some((
                    ProblemKind::Conflict,
                    format!(
                        "profile `{n}` is already loaded and armord does not own it (set takeover = true to manage it)"
                    ),
                ));
            }
        }
        match problem {
            Some((kind, message)) => {
                blocked.insert(bytes(&f.path));
                out.problems.push(Problem::new(kind, f.path.clone(), message));
            }
            None => accepted.push(i),
        }
    }

    let mut wanted: FxSet<&str> = FxSet::with_capacity_and_hasher(desired.files.len(), Default::default());
    for &i in &accepted {
        let f = &desired.files[i];
        let Verdict::Valid { names } = &f.verdict else {
            continue;
        };
        wanted.extend(names.iter().map(String::as_str));
        let owned = || names.iter().map(|n| owner.get(n.as_str()).copied());
        let unchanged = owned().all(|o| o.is_some_and(|o| o.sha256 == f.sha256 && o.complain == policy.complain));
        let kind = if unchanged {
            if names.iter().all(|n| in_kernel.contains(n.as_str())) {
                for (n, o) in names.iter().zip(owned()) {
                    out.keeps.push(n.clone());
                    if let Some(o) = o
                        && (bytes(&o.file) != bytes(&f.path) || bytes(&o.source) != bytes(&f.source))
                    {
                        out.relocations.push((n.clone(), f.path.clone(), f.source.clone()));
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
            names: names.clone(),
            kind,
        });
    }

    // Names that files which will not be loaded may define: a file whose
    // names cannot be read still protects them. A blocked valid file
    // defines its names; an invalid or refused one what a lexical scan
    // finds; one where the scan finds nothing may define anything.
    let mut protected: FxSet<&str> = FxSet::default();
    let mut protects_all: BTreeSet<&PathBuf> = BTreeSet::new();
    for f in desired.files.iter().filter(|f| blocked.contains(bytes(&f.path))) {
        match (&f.verdict, desired.may_define.get(&f.path)) {
            (Verdict::Valid { names }, _) => protected.extend(names.iter().map(String::as_str)),
            (_, Some(names)) if !names.is_empty() => protected.extend(names.iter().map(String::as_str)),
            _ => {
                protects_all.insert(&f.source);
            }
        }
    }
    let mut candidates: BTreeMap<&PathBuf, Vec<(&str, &Owned)>> = BTreeMap::new();
    let mut owned_in: FxMap<&[u8], usize> = FxMap::default();
    for o in manifest.profiles.values() {
        *owned_in.entry(bytes(&o.source)).or_default() += 1;
    }
    let unavailable: BTreeSet<&PathBuf> = desired.unavailable.iter().map(|u| &u.path).collect();
    for u in &desired.unavailable {
        out.problems.push(Problem::new(
            ProblemKind::Unavailable,
            u.path.clone(),
            format!("source {}", u.reason),
        ));
    }
    let mut restores: BTreeMap<&str, (&Owned, Vec<String>)> = BTreeMap::new();
    for (name, o) in &manifest.profiles {
        if wanted.contains(name.as_str()) {
            continue;
        }
        let hold = if blocked.contains(bytes(&o.file)) {
            Some((
                "its file is not valid; the last good version stays loaded",
                HeldWhy::Protected,
            ))
        } else if protected.contains(name.as_str()) {
            Some((
                "a file that is not valid may define it; the last good version stays loaded",
                HeldWhy::Protected,
            ))
        } else if protects_all.contains(&o.source) {
            Some((
                "a file of its source cannot be read for names and may define it; the last good version stays loaded",
                HeldWhy::Protected,
            ))
        } else if unavailable.contains(&o.source) {
            Some(("its source is unavailable; missing is not empty", HeldWhy::Source))
        } else if !desired.configured.contains(&o.source) {
            Some(("its source is no longer configured", HeldWhy::Source))
        } else {
            None
        };
        if let Some((reason, why)) = hold {
            if in_kernel.contains(name.as_str()) {
                out.held.push(Held {
                    name: name.clone(),
                    file: o.file.clone(),
                    reason: reason.to_owned(),
                    why,
                });
            } else if !o.sha256.is_empty() {
                // Drift on a held profile: bring back the last good version.
                restores
                    .entry(o.sha256.as_str())
                    .or_insert_with(|| (o, Vec::new()))
                    .1
                    .push(name.clone());
            }
            continue;
        }
        if !in_kernel.contains(name.as_str()) {
            out.forgets.push(name.clone());
        } else {
            candidates.entry(&o.source).or_default().push((name.as_str(), o));
        }
    }
    // Removals, per source: only after two reads agreed and the source stood
    // still for the settling time; a mass removal after the longer one.
    let rules = policy.removal;
    let mut recheck: Option<Duration> = None;
    let mut wait = |d: Duration| recheck = Some(recheck.map_or(d, |r| r.min(d)));
    for (src, names) in candidates {
        let q = desired.quiet.get(src).copied().unwrap_or(Quiet {
            quiet: Duration::ZERO,
            confirmed: false,
        });
        let owned = owned_in.get(bytes(src)).copied().unwrap_or(0);
        let mass = names.len() * 100 > owned * usize::from(rules.mass_percent);
        let held = if !q.confirmed || q.quiet < rules.settle {
            wait(rules.settle.saturating_sub(q.quiet));
            Some((
                format!(
                    "removal waits until the source has stood still for {} and two reads agree",
                    human(rules.settle)
                ),
                HeldWhy::Settling,
            ))
        } else if mass && !desired.allow_mass.contains(src) && q.quiet < rules.mass_settle {
            wait(rules.mass_settle.saturating_sub(q.quiet));
            Some((
                format!(
                    "mass removal held: {} of the {owned} profiles of {} would go; held until the source has stood still for {} (`armorctl sync --allow-mass-removal` removes them now)",
                    names.len(),
                    crate::escape::path(src),
                    human(rules.mass_settle)
                ),
                HeldWhy::MassRemoval,
            ))
        } else {
            None
        };
        for (name, o) in names {
            if let Some((reason, why)) = &held {
                out.held.push(Held {
                    name: name.to_owned(),
                    file: o.file.clone(),
                    reason: reason.clone(),
                    why: *why,
                });
            } else if let Some(pids) = in_use
                .get(name)
                .filter(|p| !p.is_empty() && policy.remove_in_use == RemoveInUse::Defer)
            {
                out.defers.push((name.to_owned(), pids.clone()));
            } else {
                out.removes.push(name.to_owned());
            }
        }
    }
    out.recheck_in = recheck;
    for (sha, (o, names)) in restores {
        out.loads.push(LoadAction {
            file: o.file.clone(),
            source: o.source.clone(),
            sha256: sha.to_owned(),
            names,
            kind: LoadKind::Restore,
        });
    }
    out
}

fn bytes(p: &std::path::Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

/// `2s`, `1.5s`, `5m`, as people read a duration.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
