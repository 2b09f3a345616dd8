//! Validation of changed files by the real parser, remembered by content.

use super::*;
use crate::apparmor::NamesResult;

/// Remembers verdicts by content, so an unchanged file is never compiled
/// twice and a broken one is not retried until it changes.
#[derive(Debug, Default)]
pub struct Validator {
    /// By content, one map per mode (`[enforce, complain]`): a lookup
    /// needs no key of its own.
    /// Each verdict with the file it was given for: the diagnostics of a
    /// rejected one name that file, and another file of the same content
    /// is named in its place.
    memo: [HashMap<String, (PathBuf, Verdict)>; 2],
    /// Parser runs in the last validation that timed out or crashed.
    pub transient: usize,
    /// The configured `allowed_attachments` (`None`: any).
    pub allowed_attachments: Option<Vec<String>>,
    /// Contents loaded unchecked that the last validation checked (valid
    /// or not): no longer unchecked.
    pub checked: Vec<String>,
    /// Told (then dropped) as the parser is started, or dropped when the
    /// validation needs no parser: whoever waits on its receiver works
    /// beside the parser, not beside the validation's own steps.
    pub parser_starts: Option<std::sync::mpsc::Sender<()>>,
}

pub(super) const MEMO_LIMIT: usize = 20_000;

impl Validator {
    /// A validator that refuses attachments outside `allowed` (`None`: any).
    pub fn new(allowed_attachments: Option<Vec<String>>) -> Self {
        Validator {
            allowed_attachments,
            ..Default::default()
        }
    }

    pub fn forget(&mut self) {
        self.memo.iter_mut().for_each(HashMap::clear);
    }

    fn remember(&mut self, file: &DesiredFile, complain: bool) {
        let memo = &mut self.memo[usize::from(complain)];
        if memo.len() > MEMO_LIMIT {
            memo.clear();
        }
        memo.insert(file.sha256.clone(), (file.path.clone(), file.verdict.clone()));
    }

    /// Validate every file of the snapshots. Files whose content armord
    /// already loaded, or already judged, need no parser call.
    pub fn validate(
        &mut self,
        files: Vec<(source::SourceFile, PathBuf)>,
        manifest: &Manifest,
        engine: &Engine,
        mode: ForcedMode,
        may_define: &mut BTreeMap<PathBuf, Vec<String>>,
    ) -> Result<Vec<DesiredFile>, ApplyError> {
        let complain = engine.opts.complain;
        self.transient = 0;
        let can_check = engine.parser.checks();
        self.checked.clear();
        if can_check && !manifest.unchecked.is_empty() {
            for o in manifest.profiles.values() {
                // A version loaded unchecked is checked once a parser is here.
                if manifest.unchecked.contains(&o.sha256) && !self.checked.contains(&o.sha256) {
                    self.checked.push(o.sha256.clone());
                }
            }
        }
        let owned = Owners::new(manifest, complain, can_check, files.len());
        let memo = &self.memo[usize::from(complain)];
        let mut out = Vec::with_capacity(files.len());
        let mut check: Vec<(usize, PathBuf, String)> = Vec::new();
        for (f, src) in files {
            // The parser's own verdict first: the names a content owns are
            // the ones its last load left, which a failed load may cut short.
            let verdict = if let Some((judged, v)) = memo.get(&f.sha256) {
                // Judged good before but not loaded now: its stored copy may
                // have been collected since.
                if matches!(v, Verdict::Valid { .. }) && !owned.owns(&f.sha256) {
                    engine.state.store_put(&f.sha256, f.content.as_bytes())?;
                }
                Some(match v {
                    Verdict::Invalid { diagnostics } if *judged != f.path => Verdict::Invalid {
                        diagnostics: rename_diagnostics(diagnostics.clone(), judged, &f.path),
                    },
                    v => v.clone(),
                })
            } else if let Some(names) = owned.names(&f.sha256) {
                Some(Verdict::Valid { names })
            } else if let Some(why) = policy_violation(&f.content) {
                Some(Verdict::Refused { reason: why })
            } else if let Some(allowed) = &self.allowed_attachments
                && let Some(why) = crate::apparmor::attachment_violation(&f.content, allowed)
            {
                Some(Verdict::Refused { reason: why })
            } else if mode == ForcedMode::Enforce
                && let Some(d) = declared_profiles(&f.content).into_iter().find(|d| d.mode == "complain")
            {
                Some(Verdict::Refused {
                    reason: format!(
                        "profile `{}` declares complain mode, and mode = \"enforce\" is configured",
                        d.name
                    ),
                })
            } else {
                None
            };
            if let Some(Verdict::Invalid { .. } | Verdict::Refused { .. }) = &verdict {
                may_define.insert(f.path.clone(), names_a_file_may_define(&f.content));
            }
            if verdict.is_none() {
                let path = engine.state.store_put(&f.sha256, f.content.as_bytes())?;
                check.push((out.len(), path, f.content));
            }
            out.push(DesiredFile {
                path: f.path,
                source: src,
                sha256: f.sha256,
                verdict: verdict.unwrap_or(Verdict::Valid { names: Vec::new() }),
            });
        }
        let starts = self.parser_starts.take();
        if check.is_empty() {
            return Ok(out);
        }
        if let Some(tx) = starts {
            let _ = tx.send(());
        }

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
        let shas: Vec<String> = check.iter().map(|(i, _, _)| out[*i].sha256.clone()).collect();
        let state = engine.state.clone();
        let _ = std::thread::Builder::new().name("store-sync".into()).spawn(move || {
            let _ = state.store_sync(shas.iter().map(String::as_str));
            // The spare the new copies took, made again off the change's path.
            state.store_spare();
        });
        let (names, mut failed) = if engine.parser.names_follow_compile(engine.opts) {
            names_after_compile(engine, &paths)?
        } else {
            let (names, compiled) = std::thread::scope(|s| {
                let compile = s.spawn(|| engine.batched(&paths, |fs| engine.parser.compile(fs, engine.opts)));
                (engine.parser.names(&paths), compile.join())
            });
            let failed = compiled.map_err(|_| {
                ApplyError::Parser(ParserError::Output {
                    program: PathBuf::from("apparmor_parser"),
                    message: "the thread running the compile panicked".into(),
                })
            })??;
            (names.map_err(ApplyError::Parser)?, failed)
        };
        for ((i, path, content), names) in check.into_iter().zip(names) {
            let compile_error = failed.remove(&path);
            let verdict_error = match names {
                Err(e) => Some(e),
                Ok(_) if compile_error.is_some() => compile_error,
                Ok(names) => {
                    // Children and hats (`a//b`) go with their parent; a
                    // namespace (`:ns://a`) stays, for the name rules to refuse.
                    let top: Vec<String> = names
                        .into_iter()
                        .filter(|n| n.starts_with(':') || !n.contains("//"))
                        .collect();
                    out[i].verdict = Verdict::Valid { names: top };
                    None
                }
            };
            if let Some(e) = verdict_error {
                may_define.insert(out[i].path.clone(), names_a_file_may_define(&content));
                out[i].verdict = Verdict::Invalid {
                    diagnostics: rename_diagnostics(error_diagnostics(&e, &path), &path, &out[i].path),
                };
                // Timeouts and crashes may pass next time: do not remember them.
                if !e.is_rejection() {
                    self.transient += 1;
                    continue;
                }
            }
            self.remember(&out[i], complain);
        }
        Ok(out)
    }
}

/// The names each content armord loaded owns, looked up by content. For a
/// few files, a scan of the manifest per file; for more, one sorted list of
/// (content, name) built once.
struct Owners<'a> {
    manifest: &'a Manifest,
    complain: bool,
    can_check: bool,
    sorted: Option<Vec<(&'a str, &'a str)>>,
}

impl<'a> Owners<'a> {
    /// Past this many files, the sorted list pays.
    const SCAN_LIMIT: usize = 16;

    fn new(manifest: &'a Manifest, complain: bool, can_check: bool, files: usize) -> Self {
        let mut owners = Owners {
            manifest,
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
            && !(self.can_check && self.manifest.unchecked.contains(&o.sha256))
    }

    /// Whether the content `sha` is loaded under any name.
    fn owns(&self, sha: &str) -> bool {
        match &self.sorted {
            Some(v) => v
                .get(v.partition_point(|(s, _)| *s < sha))
                .is_some_and(|(s, _)| *s == sha),
            None => self
                .manifest
                .profiles
                .values()
                .any(|o| o.sha256 == sha && self.counts(o)),
        }
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

/// The compile first, then the names: read from what the compile left for
/// each good file, and asked of the parser's `--names` for the rest (a file
/// the compile rejected gets the names run's verdict, as side by side).
/// One parser process for a good change, where side by side takes two.
fn names_after_compile(
    engine: &Engine,
    paths: &[PathBuf],
) -> Result<(Vec<NamesResult>, BTreeMap<PathBuf, ParserError>), ApplyError> {
    let failed = engine.batched(paths, |fs| engine.parser.compile(fs, engine.opts))?;
    let mut names: Vec<Option<NamesResult>> = paths
        .iter()
        .map(|p| {
            (!failed.contains_key(p))
                .then(|| engine.parser.compiled_names(p, engine.opts))
                .flatten()
                .map(Ok)
        })
        .collect();
    let ask: Vec<PathBuf> = paths
        .iter()
        .zip(&names)
        .filter(|(_, n)| n.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    if !ask.is_empty() {
        let mut asked = engine.parser.names(&ask).map_err(ApplyError::Parser)?.into_iter();
        for n in names.iter_mut().filter(|n| n.is_none()) {
            *n = asked.next();
        }
    }
    let names = names
        .into_iter()
        .map(|n| {
            n.ok_or_else(|| ParserError::Output {
                program: PathBuf::from("apparmor_parser"),
                message: "--names answered for fewer files than asked".into(),
            })
            .and_then(|r| r)
        })
        .collect();
    Ok((names, failed))
}
