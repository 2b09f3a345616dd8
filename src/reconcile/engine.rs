//! `apply`: a plan carried out through the `Parser` and `Kernel` traits,
//! every step recorded in the manifest and store.

use super::*;
use crate::apparmor::Mode;

/// What to do with each plan, and with what.
pub struct Engine<'a> {
    pub parser: &'a dyn Parser,
    pub kernel: &'a dyn Kernel,
    pub state: &'a StateDir,
    pub opts: LoadOptions,
    /// Set when armord is stopping: finish the current step, start no other.
    pub cancel: &'a AtomicBool,
    /// Told each batch's profiles just before the kernel loads them.
    pub on_load: Option<&'a LoadHook>,
    /// The kernel's list, read afresh after each batch of loads.
    pub listed: &'a crate::apparmor::listed::Listed,
}

/// A profile about to be loaded: its name, version, and whether it loads
/// in complain mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loading {
    pub name: String,
    pub sha256: crate::sha::Sha,
    pub complain: bool,
}

/// What is told of each batch of loads before it starts (the denial
/// follower, so that no record of a new version is judged by the old).
pub type LoadHook = std::sync::Arc<dyn Fn(&[Loading]) + Send + Sync>;

/// Map diagnostics that name a store path back to the source file.
pub(super) fn rename_diagnostics(diags: Vec<Diagnostic>, store_path: &Path, file: &Path) -> Vec<Diagnostic> {
    diags
        .into_iter()
        .map(|mut d| {
            if d.file.as_deref().is_none_or(|f| f == store_path) {
                d.file = Some(file.to_owned());
            }
            d.message = d
                .message
                .replace(&*store_path.to_string_lossy(), &file.to_string_lossy());
            d
        })
        .collect()
}

pub(super) fn error_diagnostics(e: &ParserError, file: &Path) -> Vec<Diagnostic> {
    match e {
        ParserError::Failed { diagnostics, .. } => diagnostics
            .iter()
            .filter(|d| d.file.as_deref().is_none_or(|f| f == file))
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .chain(diagnostics.is_empty().then(|| Diagnostic {
                file: None,
                line: None,
                message: e.to_string(),
            }))
            .collect(),
        other => vec![Diagnostic {
            file: None,
            line: None,
            message: other.to_string(),
        }],
    }
}

impl Engine<'_> {
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Run `op` over all files at once; when that fails, over each file alone
    /// to isolate the failure. Returns the per-file errors (empty: all good).
    pub(super) fn batched(
        &self,
        files: &[PathBuf],
        op: impl Fn(&[PathBuf]) -> Result<(), ParserError>,
    ) -> Result<BTreeMap<PathBuf, ParserError>, ApplyError> {
        let mut failed = BTreeMap::new();
        if files.is_empty() {
            return Ok(failed);
        }
        let first = match op(files) {
            Ok(()) => return Ok(failed),
            Err(e) if e.is_fatal() => return Err(ApplyError::Parser(e)),
            Err(e) => e,
        };
        if files.len() == 1 {
            failed.insert(files[0].clone(), first);
            return Ok(failed);
        }
        // Files the parser named are set aside; if the rest passes in one run,
        // we are done. Otherwise, one run per file.
        let named: Vec<&PathBuf> = files
            .iter()
            .filter(|f| first.diagnostics().iter().any(|d| d.file.as_ref() == Some(*f)))
            .collect();
        let rest: Vec<PathBuf> = files.iter().filter(|f| !named.contains(f)).cloned().collect();
        let named_only = !named.is_empty() && (rest.is_empty() || op(&rest).is_ok());
        let retry_each: Vec<PathBuf> = if named_only {
            named.into_iter().cloned().collect()
        } else {
            files.to_vec()
        };
        for f in retry_each {
            if self.cancelled() {
                break;
            }
            match op(std::slice::from_ref(&f)) {
                Ok(()) => {}
                Err(e) if e.is_fatal() => return Err(ApplyError::Parser(e)),
                Err(e) => {
                    failed.insert(f, e);
                }
            }
        }
        Ok(failed)
    }

    /// Carry out a plan. The manifest is written before each kernel change
    /// (intent) and after (result), so a crash at any point converges.
    pub fn apply(&self, plan: &Plan, manifest: &mut Manifest) -> Result<Report, ApplyError> {
        let mut report = Report {
            unchanged: plan.keeps.len() + plan.carried_keeps,
            held: plan.held.clone(),
            problems: plan.problems.clone(),
            recheck_in: plan.recheck_in,
            ..Default::default()
        };
        for r in &plan.relocations {
            if let Some(o) = manifest.owned_mut(&r.name) {
                o.file = r.file.clone();
                o.source = r.source.clone();
            }
        }

        if self.cancelled() {
            report.cancelled = true;
            return Ok(report);
        }
        self.load(&plan.loads, manifest, &mut report)?;
        self.remove(&plan.removes, manifest, &mut report)?;
        for name in &plan.forgets {
            manifest.disown(name);
        }
        manifest.pack_if_grown();
        report.deferred = plan.defers.clone();
        report.trial_refused = plan.trial_refused.clone();
        for v in [
            &mut report.loaded,
            &mut report.replaced,
            &mut report.restored,
            &mut report.removed,
        ] {
            v.sort();
        }
        if !plan.removes.is_empty() || !plan.forgets.is_empty() || !plan.relocations.is_empty() {
            forget_unrun_unchecked(manifest);
            self.state.save_manifest(manifest)?;
        }
        Ok(report)
    }

    /// Loads: one batch for each mode (enforce as written, complain).
    fn load(&self, loads: &[LoadAction], manifest: &mut Manifest, report: &mut Report) -> Result<(), ApplyError> {
        let mut again = Vec::new();
        self.load_modes(loads, manifest, report, &mut again)?;
        if again.is_empty() {
            return Ok(());
        }
        // Once: a sibling's own copy that rolled back another is logged.
        let mut still = Vec::new();
        self.load_modes(&again, manifest, report, &mut still)?;
        for a in still {
            log::warn!(
                "{}: profiles {} were put back to an older version by a restored copy that also defines them; \
                 the next change to their file loads them again",
                crate::escape::path(&a.file),
                a.names
                    .iter()
                    .map(|n| crate::escape::text(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }

    /// [`Engine::load`]'s batches, one for each mode; the profiles a
    /// restore put back at another version than they own go in `again`.
    fn load_modes(
        &self,
        loads: &[LoadAction],
        manifest: &mut Manifest,
        report: &mut Report,
        again: &mut Vec<LoadAction>,
    ) -> Result<(), ApplyError> {
        let (complain, as_written): (Vec<&LoadAction>, Vec<&LoadAction>) =
            loads.iter().partition(|a| a.complain || self.opts.complain);
        self.load_batch(&as_written, LoadOptions { complain: false }, manifest, report, again)?;
        self.load_batch(&complain, LoadOptions { complain: true }, manifest, report, again)
    }

    /// One batch of loads: record intent, load, isolate failures.
    fn load_batch(
        &self,
        loads: &[&LoadAction],
        opts: LoadOptions,
        manifest: &mut Manifest,
        report: &mut Report,
        again: &mut Vec<LoadAction>,
    ) -> Result<(), ApplyError> {
        let (by_path, siblings) = self.intend(loads, opts, manifest, report);
        if by_path.is_empty() {
            return Ok(());
        }
        self.state.save_pending(manifest)?;
        let paths: Vec<PathBuf> = by_path.keys().cloned().collect();
        if let Some(hook) = self.on_load {
            let loading: Vec<Loading> = by_path
                .values()
                .flat_map(|a| {
                    a.names.iter().map(|n| Loading {
                        name: n.clone(),
                        sha256: a.sha256.clone(),
                        complain: opts.complain,
                    })
                })
                .collect();
            hook(&loading);
        }
        let began = crate::trial::now_us();
        let failed = self.batched(&paths, |fs| self.parser.load(fs, opts))?;
        let ended = crate::trial::now_us();
        report.load_window_us = Some(report.load_window_us.map_or((began, ended), |(b, _)| (b, ended)));
        let _ = crate::failpoint::hit("after-load");
        let kernel = self.listed.refresh(self.kernel)?;
        for (path, a) in &by_path {
            if let Some(e) = failed.get(path) {
                report.transient |= !e.is_rejection();
                for d in rename_diagnostics(error_diagnostics(e, path), path, &a.file) {
                    report
                        .problems
                        .push(Problem::from_diagnostic(ProblemKind::LoadFailed, &a.file, &d));
                }
                continue;
            }
            self.record_loaded(a, opts, &kernel, manifest, report);
        }
        // Failed loads: whatever the kernel holds now is still ours.
        report.adopted = manifest.recover(&kernel);
        // Durable now: boot restore reads these stored files.
        self.state.store_sync(by_path.values().map(|a| a.sha256.as_str()))?;
        forget_unrun_unchecked(manifest);
        self.state.save_manifest(manifest)?;
        rolled_back(&by_path, &siblings, &failed, manifest, again);
        Ok(())
    }

    /// The loads whose stored copy is intact, by store path, each name
    /// recorded as a pending load; the others are problems.
    fn intend<'p>(
        &self,
        loads: &[&'p LoadAction],
        opts: LoadOptions,
        manifest: &mut Manifest,
        report: &mut Report,
    ) -> (BTreeMap<PathBuf, &'p LoadAction>, Siblings) {
        let mut by_path = BTreeMap::new();
        let mut siblings = Siblings::new();
        for &a in loads {
            let path = self.state.store_entry(&a.sha256);
            let Some(content) = self.state.store_load(&a.sha256) else {
                report.problems.push(Problem::new(
                    ProblemKind::LoadFailed,
                    a.file.to_path_buf(),
                    format!("stored copy {} is missing or damaged", path.display()),
                ));
                continue;
            };
            // A restore loads the whole copy, and may name only some of
            // the profiles it defines (the others are owned elsewhere now).
            if a.kind == LoadKind::Restore {
                let others: Vec<String> = crate::apparmor::declared_profiles(&String::from_utf8_lossy(&content))
                    .into_iter()
                    .map(|d| d.name)
                    .filter(|n| !a.names.contains(n))
                    .collect();
                if !others.is_empty() {
                    siblings.insert(path.clone(), others);
                }
            }
            for n in &a.names {
                manifest.pending.insert(
                    n.clone(),
                    PendingLoad {
                        file: a.file.clone(),
                        source: a.source.clone(),
                        sha256: a.sha256.clone(),
                        complain: opts.complain,
                    },
                );
            }
            by_path.insert(path, a);
        }
        (by_path, siblings)
    }

    /// A load the parser did: each name the kernel now lists is owned.
    fn record_loaded(
        &self,
        a: &LoadAction,
        opts: LoadOptions,
        kernel: &BTreeMap<String, Mode>,
        manifest: &mut Manifest,
        report: &mut Report,
    ) {
        for n in &a.names {
            manifest.pending.remove(n);
            let Some(mode) = kernel.get(n) else {
                report.problems.push(Problem::new(
                    ProblemKind::LoadFailed,
                    a.file.to_path_buf(),
                    format!("the parser loaded the file but the kernel does not list profile `{n}`"),
                ));
                continue;
            };
            manifest.own(
                n.clone(),
                Owned {
                    file: a.file.clone(),
                    source: a.source.clone(),
                    sha256: a.sha256.clone(),
                    complain: opts.complain,
                    mode: mode.clone(),
                },
            );
            if !self.parser.checks() {
                manifest.unchecked.insert(a.sha256.to_string());
                log::warn!(
                    "{}: profile `{}` loaded unchecked (no apparmor_parser); it is checked once a parser is installed",
                    crate::escape::path(&a.file),
                    crate::escape::text(n)
                );
            }
            match a.kind {
                LoadKind::New => report.loaded.push(n.clone()),
                LoadKind::Replace => report.replaced.push(n.clone()),
                LoadKind::Restore => report.restored.push(n.clone()),
            }
        }
    }

    /// Removals: mark, remove, forget.
    fn remove(&self, removes: &[String], manifest: &mut Manifest, report: &mut Report) -> Result<(), ApplyError> {
        if removes.is_empty() {
            return Ok(());
        }
        manifest.removing.extend(removes.iter().cloned());
        self.state.save_manifest(manifest)?;
        for name in removes {
            manifest.removing.remove(name);
            if self.cancelled() {
                report.cancelled = true;
                continue;
            }
            match self.kernel.remove(name) {
                Ok(()) => {
                    // The kept list still shows it, whatever the revision.
                    self.listed.forget();
                    let _ = crate::failpoint::hit("between-removes");
                    manifest.disown(name);
                    report.removed.push(name.clone());
                }
                Err(e) => {
                    let file = manifest
                        .profiles
                        .get(name)
                        .map(|o| o.file.to_path_buf())
                        .unwrap_or_default();
                    report.problems.push(Problem::new(
                        ProblemKind::RemoveFailed,
                        file,
                        format!("cannot remove profile `{name}`: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A version loaded unchecked that no owned profile runs any more (replaced
/// by a fixed file, or removed) is no longer waiting to be checked.
fn forget_unrun_unchecked(manifest: &mut Manifest) {
    let profiles = &manifest.profiles;
    manifest
        .unchecked
        .retain(|sha| profiles.values().any(|o| &o.sha256 == sha));
}

/// Profiles a restored copy defines besides those it was loaded for, by
/// store path.
type Siblings = BTreeMap<PathBuf, Vec<String>>;

/// The owned versions to load again: each profile a restored copy also
/// defines that armord owns at another version (the parser loaded the
/// copy's older one over it), by that version's stored copy.
fn rolled_back(
    by_path: &BTreeMap<PathBuf, &LoadAction>,
    siblings: &Siblings,
    failed: &BTreeMap<PathBuf, crate::apparmor::ParserError>,
    manifest: &Manifest,
    again: &mut Vec<LoadAction>,
) {
    for (path, others) in siblings {
        let Some(a) = by_path.get(path) else { continue };
        if failed.contains_key(path) {
            continue;
        }
        for n in others {
            let Some(o) = manifest.profiles.get(n) else { continue };
            if o.sha256.is_empty() || o.sha256 == a.sha256 {
                continue;
            }
            match again.iter_mut().find(|l| l.sha256 == o.sha256) {
                Some(l) if !l.names.contains(n) => l.names.push(n.clone()),
                Some(_) => {}
                None => again.push(LoadAction {
                    file: o.file.clone(),
                    source: o.source.clone(),
                    sha256: o.sha256.clone(),
                    names: vec![n.clone()],
                    kind: LoadKind::Restore,
                    complain: o.complain,
                }),
            }
        }
    }
}
