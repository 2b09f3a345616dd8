//! Validation of changed files by the real parser, remembered by content.

use super::bounds::Bounds;
use super::*;
use crate::apparmor::{NamesResult, read_policy};

/// Remembers verdicts by content, so an unchanged file is never compiled
/// twice and a broken one is not retried until it changes.
#[derive(Debug, Default)]
pub struct Validator {
    /// By content, one map per mode (`[enforce, complain]`): a lookup
    /// needs no key of its own.
    /// Each verdict with the file it was given for: the diagnostics of a
    /// rejected one name that file, and another file of the same content
    /// is named in its place.
    memo: [Memo; 2],
    /// Parser runs in the last validation that timed out or crashed.
    pub transient: usize,
    /// The writer's bounds: mode and attachments.
    pub bounds: Bounds,
    /// Contents loaded unchecked that the last validation checked (valid
    /// or not): no longer unchecked.
    pub checked: Vec<crate::sha::Sha>,
    /// Told (then dropped) as the parser is started, or dropped when the
    /// validation needs no parser: whoever waits on its receiver works
    /// beside the parser, not beside the validation's own steps.
    pub parser_starts: Option<std::sync::mpsc::Sender<()>>,
    /// Contents (sha256) that declare trial, from every file validated;
    /// kept to what the sources hold by the reconciler.
    pub trial: std::collections::HashSet<crate::sha::Sha>,
}

pub(super) const MEMO_LIMIT: usize = 20_000;

/// Verdicts by content, each with the file a rejected one was given for.
type Memo = HashMap<crate::sha::Sha, (Option<Box<Path>>, Verdict)>;

impl Validator {
    /// A validator that judges by `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Validator {
            bounds,
            ..Default::default()
        }
    }

    pub fn forget(&mut self) {
        self.memo.iter_mut().for_each(HashMap::clear);
    }

    fn remember(&mut self, file: &DesiredFile, complain: bool) {
        self.remember_verdict(file.sha256.clone(), &file.path, file.verdict.clone(), complain);
    }

    /// Validate every file of the snapshots. Files whose content armord
    /// already loaded, or already judged, need no parser call.
    pub fn validate(
        &mut self,
        files: Vec<(source::SourceFile, Arc<Path>)>,
        manifest: &Manifest,
        engine: &Engine,
        may_define: &mut BTreeMap<PathBuf, Vec<String>>,
    ) -> Result<Vec<DesiredFile>, ApplyError> {
        let complain = engine.opts.complain;
        self.transient = 0;
        let can_check = engine.parser.checks();
        self.checked.clear();
        if can_check && !manifest.unchecked.is_empty() {
            for o in manifest.profiles.values() {
                // A version loaded unchecked is checked once a parser is here.
                if manifest.unchecked.contains(o.sha256.as_str()) && !self.checked.contains(&o.sha256) {
                    self.checked.push(o.sha256.clone());
                }
            }
        }
        let owned = Owners::new(manifest, engine.state, complain, can_check, files.len());
        let memo = &self.memo[usize::from(complain)];
        let mut out = Vec::with_capacity(files.len());
        let mut check: Vec<(usize, PathBuf, Arc<str>)> = Vec::new();
        let mut judged: Vec<(crate::sha::Sha, Arc<Path>, Verdict)> = Vec::new();
        let cached_policy = engine.parser.leaves_policy();
        for (f, src) in files {
            // The parser's own verdict first: the names a content owns are
            // the ones its last load left, which a failed load may cut short.
            let bounds = &self.bounds;
            let store_path = || engine.state.store_entry(&f.sha256);
            // Per-file work on the file's text: a bug in it refuses the
            // file, and never takes armord down.
            let verdict = contained(&f.path, || {
                if let Some((judged, v)) = memo.get(f.sha256.as_str()) {
                    return Ok(Some(match (v, judged) {
                        (Verdict::Invalid { diagnostics }, Some(judged)) if **judged != *f.path => Verdict::Invalid {
                            diagnostics: rename_diagnostics(diagnostics.clone(), judged, &f.path),
                        },
                        (v, _) => v.clone(),
                    }));
                }
                if let Some(why) = policy_violation(&f.content) {
                    return Ok(Some(Verdict::Refused { reason: why }));
                }
                if let Some(names) = owned.names(&f.sha256) {
                    // Loaded before: judged again by today's bounds and
                    // rules, from the compile the parser's cache holds (or
                    // a new one).
                    if !cached_policy {
                        return Ok(Some(verdict_of(bounds.judge_scanned(&names, &f.content))));
                    }
                    if let Some(Ok(p)) = engine.parser.cached(&store_path()).map(|b| read_policy(&b)) {
                        return Ok(Some(verdict_of(bounds.judge(&p))));
                    }
                    return Ok(None);
                }
                Ok(None)
            })
            .unwrap_or_else(|reason| Some(Verdict::Refused { reason }));
            let from_memo = memo.contains_key(f.sha256.as_str());
            if crate::trial::declared(&f.content) {
                self.trial.insert(f.sha256.clone());
            }
            // Judged good before but not loaded now: its stored copy may
            // have been collected since.
            if from_memo && matches!(verdict, Some(Verdict::Valid { .. })) && !owned.owns(&f.sha256) {
                engine.state.store_put(&f.sha256, f.content.as_bytes())?;
            }
            if let Some(Verdict::Invalid { .. } | Verdict::Refused { .. }) = &verdict {
                may_define.insert(f.path.to_path_buf(), may_define_of(&f.path, &f.content));
            }
            if !from_memo && let Some(v @ (Verdict::Valid { .. } | Verdict::Refused { .. })) = &verdict {
                judged.push((f.sha256.clone(), f.path.clone(), v.clone()));
            }
            if verdict.is_none() {
                let path = engine.state.store_put(&f.sha256, f.content.as_bytes())?;
                check.push((out.len(), path, f.content));
            }
            out.push(DesiredFile {
                path: f.path,
                source: src,
                sha256: f.sha256,
                verdict: verdict.unwrap_or(Verdict::Valid { names: Arc::from([]) }),
            });
        }
        for (sha, path, v) in judged {
            self.remember_verdict(sha, &path, v, complain);
        }
        let starts = self.parser_starts.take();
        if check.is_empty() {
            return Ok(out);
        }
        if let Some(tx) = starts {
            let _ = tx.send(());
        }
        self.check(check, &mut out, engine, may_define)?;
        Ok(out)
    }

    /// Judge by the parser the files no memo or manifest vouched for
    /// (`check`: their index in `out`, store path and content), and
    /// remember the verdicts that will not change.
    fn check(
        &mut self,
        check: Vec<(usize, PathBuf, Arc<str>)>,
        out: &mut [DesiredFile],
        engine: &Engine,
        may_define: &mut BTreeMap<PathBuf, Vec<String>>,
    ) -> Result<(), ApplyError> {
        // Names and the compile, each in one parser run, side by side: one
        // after the other would add a process's latency to every change. A
        // file the names run rejects fails its compile too; the names
        // verdict is the one reported.
        let paths: Vec<PathBuf> = check.iter().map(|(_, p, _)| p.clone()).collect();
        // The new stored copies are made durable while the parser works:
        // the flush before the manifest names them then finds little left
        // to write. Nothing waits for this one (a slow disk must not hold
        // up the load); that later flush is the one that counts, and
        // reports any error.
        let shas: Vec<crate::sha::Sha> = check.iter().map(|(i, _, _)| out[*i].sha256.clone()).collect();
        let state = engine.state.clone();
        let _ = std::thread::Builder::new().name("store-sync".into()).spawn(move || {
            let _ = state.store_sync(shas.iter().map(|s| s.as_str()));
            // The spare the new copies took, made again off the change's path.
            state.store_spare();
        });
        let checked = check_compiled(engine, &paths, &self.bounds)?;
        for ((i, path, content), result) in check.into_iter().zip(checked) {
            match result {
                Ok(verdict) => out[i].verdict = verdict,
                Err(e) => {
                    out[i].verdict = Verdict::Invalid {
                        diagnostics: rename_diagnostics(error_diagnostics(&e, &path), &path, &out[i].path),
                    };
                    // Timeouts and crashes may pass next time: do not remember them.
                    if !e.is_rejection() {
                        self.transient += 1;
                        may_define.insert(out[i].path.to_path_buf(), may_define_of(&out[i].path, &content));
                        continue;
                    }
                }
            }
            if !matches!(out[i].verdict, Verdict::Valid { .. }) {
                may_define.insert(out[i].path.to_path_buf(), may_define_of(&out[i].path, &content));
            }
            self.remember(&out[i], engine.opts.complain);
        }
        Ok(())
    }

    fn remember_verdict(&mut self, sha: crate::sha::Sha, path: &Path, verdict: Verdict, complain: bool) {
        let memo = &mut self.memo[usize::from(complain)];
        if memo.len() > MEMO_LIMIT {
            memo.clear();
        }
        // The file judged matters only to an invalid verdict's lines.
        let path = matches!(verdict, Verdict::Invalid { .. }).then(|| Box::from(path));
        memo.insert(sha, (path, verdict));
    }
}

fn verdict_of(judged: Result<Vec<String>, String>) -> Verdict {
    match judged {
        Ok(names) => Verdict::Valid { names: names.into() },
        Err(reason) => Verdict::Refused { reason },
    }
}

/// Run per-file work on a file's content so that a panic in it (a bug)
/// refuses that file with a message naming it, instead of taking the
/// daemon down.
pub(super) fn contained<T>(path: &Path, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!(
                "{}: internal error while reading this file ({}); it is refused, the rest goes on",
                crate::escape::path(path),
                crate::escape::text(&what)
            );
            Err(format!(
                "armord could not read this file (internal error: {}); it is refused",
                crate::escape::text(&what)
            ))
        }
    }
}

/// The names a file that is not loaded may define (and so protects from
/// removal), read generously from its text; nothing, if that reading fails.
pub(super) fn may_define_of(path: &Path, text: &str) -> Vec<String> {
    contained(path, || Ok(names_a_file_may_define(text))).unwrap_or_default()
}

/// Compile the files, then judge each by what the compile produced: its
/// verdict, or the parser's error. The compiled policy comes from what the
/// compile left (or, where it left none, from a dump run); only a parser
/// that leaves none at all is asked `--names` and judged with a scan. A
/// file the compile rejected gets the names run's verdict (its diagnostics
/// name the line), or the compile's.
fn check_compiled(
    engine: &Engine,
    paths: &[PathBuf],
    bounds: &Bounds,
) -> Result<Vec<Result<Verdict, ParserError>>, ApplyError> {
    let mut failed = engine.batched(paths, |fs| engine.parser.compile(fs, engine.opts))?;
    let mut policy: Vec<Option<Vec<u8>>> = paths
        .iter()
        .map(|p| (!failed.contains_key(p)).then(|| engine.parser.compiled(p)).flatten())
        .collect();
    if engine.parser.leaves_policy() {
        let missing: Vec<usize> = (0..paths.len())
            .filter(|&i| policy[i].is_none() && !failed.contains_key(&paths[i]))
            .collect();
        if !missing.is_empty() {
            let files: Vec<PathBuf> = missing.iter().map(|&i| paths[i].clone()).collect();
            let dumped = engine.parser.dump(&files).map_err(ApplyError::Parser)?;
            for (i, d) in missing.into_iter().zip(dumped) {
                policy[i] = d;
            }
        }
    }
    let ask: Vec<PathBuf> = paths
        .iter()
        .zip(&policy)
        .filter(|(_, p)| p.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    let mut asked = if ask.is_empty() {
        Vec::new()
    } else {
        engine.parser.names(&ask).map_err(ApplyError::Parser)?
    }
    .into_iter();
    let mut out = Vec::with_capacity(paths.len());
    for (path, policy) in paths.iter().zip(policy) {
        let compile_error = failed.remove(path);
        let result = match policy {
            Some(bytes) => {
                let judged = contained(path, || match read_policy(&bytes) {
                    Ok(p) => bounds.judge(&p),
                    Err(e) => Err(format!("its compiled policy cannot be judged: {e}")),
                });
                Ok(verdict_of(judged))
            }
            None => {
                let names: NamesResult = asked.next().unwrap_or_else(|| {
                    Err(ParserError::Output {
                        program: PathBuf::from("apparmor_parser"),
                        message: "--names answered for fewer files than asked".into(),
                    })
                });
                match (names, compile_error) {
                    (Err(e), _) | (Ok(_), Some(e)) => Err(e),
                    (Ok(names), None) => {
                        let text = std::fs::read_to_string(path).unwrap_or_default();
                        Ok(verdict_of(contained(path, || bounds.judge_scanned(&names, &text))))
                    }
                }
            }
        };
        out.push(result);
    }
    Ok(out)
}

/// The names each content armord loaded owns, looked up by content. For a
/// few files, a scan of the manifest per file, and only for a content
/// armord keeps a stored copy of (each one it loaded, as boot restore needs
/// it): a change's new content costs one `stat`, not a pass over 10,000
/// entries. For more files, one sorted list of (content, name) built once.
struct Owners<'a> {
    manifest: &'a Manifest,
    state: &'a crate::state::StateDir,
    complain: bool,
    can_check: bool,
    sorted: Option<Vec<(&'a str, &'a str)>>,
}

impl<'a> Owners<'a> {
    /// Past this many files, the sorted list pays.
    const SCAN_LIMIT: usize = 16;

    fn new(
        manifest: &'a Manifest,
        state: &'a crate::state::StateDir,
        complain: bool,
        can_check: bool,
        files: usize,
    ) -> Self {
        let mut owners = Owners {
            manifest,
            state,
            complain,
            can_check,
            sorted: None,
        };
        if files > Self::SCAN_LIMIT {
            let mut v: Vec<(&str, &str)> = manifest
                .profiles
                .iter()
                .filter(|(_, o)| owners.counts(o))
                .map(|(n, o)| (o.sha256.as_str(), n.as_str()))
                .collect();
            v.sort_unstable();
            owners.sorted = Some(v);
        }
        owners
    }

    /// An owned version that names its content: loaded in the mode asked
    /// for, and not waiting for a parser to check it.
    fn counts(&self, o: &crate::state::Owned) -> bool {
        o.complain == self.complain
            && !o.sha256.is_empty()
            && !(self.can_check && self.manifest.unchecked.contains(o.sha256.as_str()))
    }

    /// Whether the content `sha` is loaded under any name.
    fn owns(&self, sha: &str) -> bool {
        match &self.sorted {
            Some(v) => v
                .get(v.partition_point(|(s, _)| *s < sha))
                .is_some_and(|(s, _)| *s == sha),
            None => {
                self.stored(sha)
                    && self
                        .manifest
                        .profiles
                        .values()
                        .any(|o| o.sha256 == sha && self.counts(o))
            }
        }
    }

    /// Whether a stored copy of `sha` is there: none is for a content
    /// armord never loaded. One with none stored is judged by the parser
    /// again, as a new one is.
    fn stored(&self, sha: &str) -> bool {
        !sha.is_empty() && std::fs::symlink_metadata(self.state.store_entry(sha)).is_ok()
    }

    /// The names the content `sha` is loaded under, if any.
    fn names(&self, sha: &str) -> Option<Vec<String>> {
        let names: Vec<String> = match &self.sorted {
            Some(v) => {
                let from = v.partition_point(|(s, _)| *s < sha);
                v[from..]
                    .iter()
                    .take_while(|(s, _)| *s == sha)
                    .map(|(_, n)| (*n).to_owned())
                    .collect()
            }
            None if !self.stored(sha) => return None,
            None => self
                .manifest
                .profiles
                .iter()
                .filter(|(_, o)| o.sha256 == sha && self.counts(o))
                .map(|(n, _)| n.clone())
                .collect(),
        };
        (!names.is_empty()).then_some(names)
    }
}
