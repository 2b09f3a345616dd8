//! A change's plan, made over what the change can reach: the files at the
//! paths looked at, every file and profile the last plan left anything
//! but a plain keep (blocked, loading, relocated, held, restored), and,
//! closed over, every file that defines a name any of those define. The
//! rest are files the last plan kept as they were, against a kernel list
//! that has not moved under them since: the full plan would keep them
//! again, so they are counted, not looked at.
//!
//! Whenever that cannot be told (another policy, configuration or trial
//! book, an unavailable source, the kernel changed beyond armord's own
//! loads) or the plan would remove anything (removal gating counts a whole
//! source), `None`: the full plan is made. A property test holds the two
//! equal over sequences of changes, thousands of files included.

use super::plan::{Desired, LoadKind, Plan, Policy, RemovalRules, Trials, Verdict, plan};
use crate::apparmor::listed::List;
use crate::apparmor::{Mode, top_level};
use crate::config::RemoveInUse;
use crate::state::Manifest;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a plan was made under, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    prefix: String,
    takeover: bool,
    remove_in_use: RemoveInUse,
    complain: bool,
    removal: RemovalRules,
}

impl Rules {
    fn of(p: &Policy) -> Self {
        Rules {
            prefix: p.prefix.to_owned(),
            takeover: p.takeover,
            remove_in_use: p.remove_in_use,
            complain: p.complain,
            removal: p.removal,
        }
    }
}

/// Past this many files, a reach of more than half of them is planned in
/// full.
pub const REACH_WHOLE_MIN: usize = 1024;

/// What the last plan left, for the next one to start from.
#[derive(Debug)]
pub struct Memo {
    rules: Rules,
    configured: Vec<PathBuf>,
    trials: Trials,
    /// The kernel's list the last plan was made against, or one found
    /// the same but for what it left unsettled ([`Memo::advance`]).
    kernel: List,
    /// The files that define (valid) or may define (blocked) each name.
    /// The names of each file are those `desired` holds at the paths no
    /// change looked at since, and those [`Looked`] kept for the others.
    /// Each path is the plan's own (shared); most names have one definer.
    definers: HashMap<String, Vec<Arc<Path>>>,
    /// Files the last plan did anything with but keep, or that are not
    /// valid: looked at again by the next.
    unsettled_files: HashSet<PathBuf>,
    /// Owned profiles no kept file defines (held, restored, relocated, a
    /// trial refused): looked at again by the next.
    unsettled_names: BTreeSet<String>,
    /// How many profiles the settled files keep.
    settled_keeps: usize,
}

/// The paths changes looked at since the memo was last brought in step,
/// with the names each file there defined, or may define, before: the
/// memo keeps no copy of what every file defines.
#[derive(Debug, Default, Clone)]
pub struct Looked {
    pub paths: Vec<PathBuf>,
    before: HashMap<PathBuf, Vec<String>>,
}

impl Looked {
    /// A look at `paths`, noted before `desired` (what the memo was made
    /// from, with the looks noted so far) is changed there.
    pub fn note(&mut self, desired: &Desired, paths: &[PathBuf]) {
        for p in paths {
            if !self.before.contains_key(p) {
                self.before.insert(p.clone(), names_now(desired, p));
            }
        }
        self.paths.extend(paths.iter().cloned());
    }

    /// The names the files at `path` defined when the memo was made, of
    /// `desired` as it is now.
    fn names_then(&self, desired: &Desired, path: &Path) -> Vec<String> {
        match self.before.get(path) {
            Some(names) => names.clone(),
            None => names_now(desired, path),
        }
    }
}

/// What a plan over part of the files reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The paths looked at, and what the change made of them.
    looked: Vec<PathBuf>,
    files: BTreeSet<PathBuf>,
    names: BTreeSet<String>,
}

/// The files of `desired` at `path`.
fn files_at<'a>(desired: &'a Desired, path: &Path) -> &'a [super::plan::DesiredFile] {
    &desired.files[super::carry::range_at(&desired.files, path)]
}

/// The names the files at `path` define, or may define when blocked.
fn names_now(desired: &Desired, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in files_at(desired, path) {
        match &f.verdict {
            Verdict::Valid { names } => out.extend(names.iter().cloned()),
            _ => out.extend(desired.may_define.get(&*f.path).into_iter().flatten().cloned()),
        }
    }
    out
}

/// What of `plan` leaves files and names unsettled.
fn unsettled_of(plan: &Plan, names_file: impl Fn(&str) -> Vec<Arc<Path>>) -> (HashSet<PathBuf>, BTreeSet<String>) {
    let mut files: HashSet<PathBuf> = HashSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    files.extend(plan.problems.iter().map(|p| p.file.clone()));
    for l in &plan.loads {
        files.insert(l.file.to_path_buf());
        if l.kind == LoadKind::Restore {
            names.extend(l.names.iter().cloned());
        }
    }
    for r in &plan.relocations {
        files.insert(r.file.to_path_buf());
        names.insert(r.name.clone());
    }
    for t in &plan.trial_refused {
        files.extend(names_file(&t.name).iter().map(|p| p.to_path_buf()));
        names.insert(t.name.clone());
    }
    names.extend(plan.held.iter().map(|h| h.name.clone()));
    names.extend(plan.forgets.iter().cloned());
    names.extend(plan.removes.iter().cloned());
    names.extend(plan.defers.iter().map(|d| d.name.clone()));
    (files, names)
}

/// Of `names`, those owned that the kernel does not list: a plan may say
/// nothing of one (held with no known hash to restore from), yet the next
/// may forget it, so each stays unsettled.
fn unloaded_owned<'a>(
    names: impl IntoIterator<Item = &'a String>,
    manifest: &Manifest,
    kernel: &BTreeMap<String, Mode>,
) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| manifest.profiles.contains_key(*n) && !kernel.contains_key(*n))
        .cloned()
        .collect()
}

/// `path` as the plan's files at it hold it (shared), or a copy where
/// none is.
fn shared_path(desired: &Desired, path: &Path) -> Arc<Path> {
    files_at(desired, path)
        .first()
        .map_or_else(|| path.into(), |f| f.path.clone())
}

/// Note `path` as a definer of `name`: one slot to start with, as most
/// names have one definer.
fn add_definer(definers: &mut HashMap<String, Vec<Arc<Path>>>, name: String, path: &Arc<Path>) {
    definers
        .entry(name)
        .or_insert_with(|| Vec::with_capacity(1))
        .push(path.clone());
}

/// Whether the files at `path` are settled: valid, defining profiles,
/// and nothing of the plan's but a keep.
fn settled(desired: &Desired, path: &Path, unsettled: &HashSet<PathBuf>) -> Option<usize> {
    let files = files_at(desired, path);
    if files.is_empty() || unsettled.contains(path) {
        return None;
    }
    let mut n = 0;
    for f in files {
        match &f.verdict {
            Verdict::Valid { names } if !names.is_empty() => n += names.len(),
            _ => return None,
        }
    }
    Some(n)
}

impl Memo {
    /// What a full plan of `desired` left.
    pub fn of_full(desired: &Desired, manifest: &Manifest, kernel: List, plan: &Plan, policy: &Policy) -> Memo {
        // The files are sorted by path: each path once.
        let mut paths: Vec<&Arc<Path>> = desired.files.iter().map(|f| &f.path).collect();
        paths.dedup();
        let mut definers: HashMap<String, Vec<Arc<Path>>> = HashMap::with_capacity(desired.files.len());
        for p in &paths {
            for n in names_now(desired, p) {
                add_definer(&mut definers, n, p);
            }
        }
        let (mut unsettled_files, mut unsettled_names) =
            unsettled_of(plan, |n| definers.get(n).cloned().unwrap_or_default());
        unsettled_names.extend(unloaded_owned(manifest.profiles.keys(), manifest, &kernel));
        unsettled_files.retain(|p| !files_at(desired, p).is_empty());
        let mut settled_keeps = 0;
        for p in paths {
            let p: &Path = p;
            match settled(desired, p, &unsettled_files) {
                Some(n) => settled_keeps += n,
                None => {
                    unsettled_files.insert(p.to_path_buf());
                }
            }
        }
        Memo {
            rules: Rules::of(policy),
            configured: desired.configured.clone(),
            trials: desired.trials.clone(),
            kernel,
            definers,
            unsettled_files,
            unsettled_names,
            settled_keeps,
        }
    }

    /// Whether the kernel's list is the one the last plan saw, but for
    /// profiles it left unsettled (armord's own loads since).
    fn kernel_as_left(&self, kernel: &List, desired: &Desired, looked: &Looked) -> bool {
        // The very list (the revision has not moved since).
        if std::sync::Arc::ptr_eq(&self.kernel, kernel) {
            return true;
        }
        let of_files: Vec<String> = self
            .unsettled_files
            .iter()
            .flat_map(|p| looked.names_then(desired, p))
            .collect();
        let exempt: HashSet<&str> = self
            .unsettled_names
            .iter()
            .chain(&of_files)
            .map(String::as_str)
            .collect();
        let mut a = self.kernel.iter().peekable();
        let mut b = kernel.iter().peekable();
        loop {
            let differs = match (a.peek(), b.peek()) {
                (None, None) => return true,
                (Some((n, _)), None) => {
                    let n = *n;
                    a.next();
                    n
                }
                (None, Some((n, _))) => {
                    let n = *n;
                    b.next();
                    n
                }
                (Some((na, ma)), Some((nb, mb))) => match na.cmp(nb) {
                    std::cmp::Ordering::Equal => {
                        let same = ma == mb;
                        let n = *na;
                        a.next();
                        b.next();
                        if same {
                            continue;
                        }
                        n
                    }
                    std::cmp::Ordering::Less => {
                        let n = *na;
                        a.next();
                        n
                    }
                    std::cmp::Ordering::Greater => {
                        let n = *nb;
                        b.next();
                        n
                    }
                },
            };
            if !exempt.contains(top_level(differs)) {
                return false;
            }
        }
    }

    /// The plan for `desired`, which differs from what this memo was made
    /// from only at the paths `looked`; `None` when only a full plan can
    /// say.
    pub fn plan(
        &self,
        desired: &Desired,
        manifest: &Manifest,
        kernel: &List,
        noted: &Looked,
        policy: &Policy,
    ) -> Option<(Plan, Reach)> {
        if self.rules != Rules::of(policy)
            || self.configured != desired.configured
            || !desired.unavailable.is_empty()
            || self.trials != desired.trials
            || !self.kernel_as_left(kernel, desired, noted)
        {
            return None;
        }
        let looked = noted.paths.as_slice();
        let looked_set: HashSet<&Path> = looked.iter().map(PathBuf::as_path).collect();
        // The files and names reached, closed over who defines what.
        let mut files: BTreeSet<PathBuf> = BTreeSet::new();
        let mut names: BTreeSet<String> = self.unsettled_names.clone();
        let mut queue: Vec<String> = self.unsettled_names.iter().cloned().collect();
        let reach_file = |p: &Path, files: &mut BTreeSet<PathBuf>, queue: &mut Vec<String>| {
            if files.insert(p.to_owned()) {
                queue.extend(noted.names_then(desired, p));
                if looked_set.contains(p) {
                    queue.extend(names_now(desired, p));
                }
            }
        };
        for p in looked.iter().chain(&self.unsettled_files) {
            reach_file(p, &mut files, &mut queue);
        }
        // Who defines each name at the paths looked at, now: made once (a
        // source read whole looks at every path of it).
        let mut looked_definers: HashMap<String, Vec<Arc<Path>>> = HashMap::new();
        for p in looked {
            let shared = shared_path(desired, p);
            for n in names_now(desired, p) {
                add_definer(&mut looked_definers, n, &shared);
            }
        }
        let mut expanded: HashSet<String> = HashSet::new();
        while let Some(n) = queue.pop() {
            if !expanded.insert(n.clone()) {
                continue;
            }
            let definers_now = self
                .definers
                .get(&n)
                .into_iter()
                .flatten()
                .filter(|p| !looked_set.contains(&***p))
                .chain(looked_definers.get(&n).into_iter().flatten())
                .cloned()
                .collect::<Vec<_>>();
            for p in definers_now {
                reach_file(&p, &mut files, &mut queue);
            }
            names.insert(n);
        }
        // A reach of most of many files (the first change after a start
        // that loaded them all) would copy each file and owned profile into
        // the part: megabytes at 10,000, which spread the heap for good.
        // The full plan reads them in place.
        if files.len() > REACH_WHOLE_MIN && files.len() * 2 > desired.files.len() {
            return None;
        }
        // The part of each input the reach holds, in the full plan's order.
        let mut part = Desired {
            configured: desired.configured.clone(),
            unavailable: Vec::new(),
            quiet: desired.quiet.clone(),
            allow_mass: desired.allow_mass.clone(),
            trials: desired.trials.clone(),
            ..Default::default()
        };
        for p in &files {
            part.files.extend(files_at(desired, p).iter().cloned());
            if let Some(m) = desired.may_define.get(p) {
                part.may_define.insert(p.clone(), m.clone());
            }
        }
        super::carry::sort_files(&mut part.files);
        let mut owned = Manifest::new();
        let mut listed = BTreeMap::new();
        for n in &names {
            if let Some(o) = manifest.profiles.get(n) {
                owned.profiles.insert(n.clone(), o.clone());
            }
            if let Some(m) = kernel.get(n) {
                listed.insert(n.clone(), m.clone());
            }
        }
        let mut out = plan(&part, &owned, &listed, &BTreeMap::new(), policy);
        // Removal gating counts a source's owned profiles: the full plan.
        if !out.removes.is_empty() || !out.defers.is_empty() || !out.forgets.is_empty() || out.recheck_in.is_some() {
            return None;
        }
        let reached_settled: usize = files
            .iter()
            .filter(|p| !self.unsettled_files.contains(*p))
            .map(|p| noted.names_then(desired, p).len())
            .sum();
        out.carried_keeps = self.settled_keeps - reached_settled.min(self.settled_keeps);
        let reach = Reach {
            looked: looked.to_vec(),
            files,
            names,
        };
        Some((out, reach))
    }

    /// Take in the plan made over `reach` for `desired`, against `kernel`;
    /// returns the kernel list it held before, for the caller to let go
    /// of off the path to the load.
    pub fn absorb(
        &mut self,
        desired: &Desired,
        manifest: &Manifest,
        kernel: List,
        plan: &Plan,
        reach: &Reach,
        noted: &Looked,
    ) -> List {
        // Every file reached is counted again: uncount those settled.
        for p in &reach.files {
            if !self.unsettled_files.remove(p) {
                let n = noted.names_then(desired, p).len();
                self.settled_keeps -= n.min(self.settled_keeps);
            }
        }
        // Who defines what, at the paths looked at (each once).
        for p in noted.before.keys() {
            for n in noted.before.get(p).into_iter().flatten() {
                if let Some(d) = self.definers.get_mut(n) {
                    d.retain(|q| **q != **p);
                    if d.is_empty() {
                        self.definers.remove(n);
                    }
                }
            }
            let shared = shared_path(desired, p);
            for n in names_now(desired, p) {
                add_definer(&mut self.definers, n, &shared);
            }
        }
        let definers = &self.definers;
        let (files, mut names) = unsettled_of(plan, |n| definers.get(n).cloned().unwrap_or_default());
        names.extend(unloaded_owned(&reach.names, manifest, &kernel));
        for p in &reach.files {
            if files_at(desired, p).is_empty() {
                continue;
            }
            match settled(desired, p, &files) {
                Some(n) => self.settled_keeps += n,
                None => {
                    self.unsettled_files.insert(p.clone());
                }
            }
        }
        self.unsettled_names = names;
        self.trials = desired.trials.clone();
        std::mem::replace(&mut self.kernel, kernel)
    }

    /// After the plan taken in was applied: the kernel's list now, which
    /// differs from the one the plan saw by armord's own loads, all of
    /// profiles the plan left unsettled. When it is the same but for those,
    /// it is kept in its place, and a next plan under the same revision
    /// compares no list at all; else the next plan finds the kernel moved.
    /// The memo must be what `desired` was planned from, with no look
    /// since.
    pub fn advance(&mut self, kernel: List, desired: &Desired) {
        if self.kernel_as_left(&kernel, desired, &Looked::default()) {
            self.kernel = kernel;
        }
    }
}
