//! A change reconcile that carries the last one forward: only the entries
//! inotify reported (and those a read by name never takes on trust) are
//! read and validated again; every other file keeps the verdict it has.
//! Whenever that cannot be told safely, a full read is made instead.

use super::*;
use std::collections::BTreeSet;

/// A file's place in `Desired::files`: by its path's bytes, then its
/// source's. A full read and a carried one keep them in this order, so
/// that both plan alike.
fn order_key(f: &DesiredFile) -> (&[u8], &[u8]) {
    (
        f.path.as_os_str().as_encoded_bytes(),
        f.source.as_os_str().as_encoded_bytes(),
    )
}

pub(super) fn sort_files(files: &mut [DesiredFile]) {
    files.sort_unstable_by(|a, b| order_key(a).cmp(&order_key(b)));
}

/// Where the files at `path` are in `files`, sorted by [`sort_files`].
pub(super) fn range_at(files: &[DesiredFile], path: &std::path::Path) -> std::ops::Range<usize> {
    let key = path.as_os_str().as_encoded_bytes();
    let at = files.partition_point(|f| order_key(f).0 < key);
    at..at + files[at..].iter().take_while(|f| order_key(f).0 == key).count()
}

/// The stored copies to keep: every owned or pending version, and every
/// version a source holds that the parser found valid (a file that waits,
/// in a conflict, is loaded from its copy once the conflict ends, with no
/// read of its own).
pub(super) fn keep_stored(manifest: &Manifest, desired: Option<&Desired>) -> BTreeSet<String> {
    let mut keep = manifest.referenced();
    for f in desired.into_iter().flat_map(|d| &d.files) {
        if matches!(f.verdict, Verdict::Valid { .. }) && !f.sha256.is_empty() {
            keep.insert(f.sha256.to_string());
        }
    }
    keep
}

/// A manifest read from disk holds its own copy of each version: once a
/// full read names the same version, the manifest shares the read's, as
/// do the follower, the lints and the rows that copy it.
pub(super) fn share_versions(manifest: &mut Manifest, desired: Option<&Desired>) {
    for f in desired.into_iter().flat_map(|d| &d.files) {
        if let Verdict::Valid { names } = &f.verdict {
            for n in names.iter() {
                if let Some(o) = manifest.profiles.get_mut(n)
                    && o.sha256 == f.sha256
                {
                    o.sha256 = f.sha256.clone();
                }
            }
        }
    }
}

/// What a carried reconcile found in one source: the entries looked at by
/// name, or the whole source read again (with its fingerprint and shares).
enum Look {
    Named(source::Delta),
    Whole(source::Delta, u64, super::still::Parts),
}

impl Reconciler {
    /// A change reconcile of the entries `named` reported, the rest as the
    /// last reconcile left it; `None` when that last reconcile cannot be
    /// carried forward, and every source must be read in full.
    ///
    /// It can be when the last reconcile read every source, took no verdict
    /// from a timeout or a crash, and left no version loaded unchecked
    /// waiting for a parser, and when no operator asked for a mass removal.
    /// A plain directory is then looked at by name; any other source (a
    /// ConfigMap or git-sync layout, a signed source, a plain one that
    /// cannot be read by name) is read whole, and replaces all it held.
    pub(super) fn carried(&mut self, named: &BTreeSet<PathBuf>) -> Option<Result<Report, ApplyError>> {
        let last = self.last.as_ref()?;
        let sources_as_last = last.unavailable.is_empty()
            && last.configured.len() == self.config.sources.len()
            && last
                .configured
                .iter()
                .zip(&self.config.sources)
                .all(|(a, b)| *a == b.path);
        let can = self.carry_ok
            && sources_as_last
            && !self.allow_mass_next
            && (self.manifest.unchecked.is_empty() || !self.parser.checks())
            && self.config.sources.iter().all(|s| self.stillness.contains_key(&s.path));
        if !can {
            return None;
        }
        let limits = self.config.limits();
        let mut looks = Vec::with_capacity(self.config.sources.len());
        for src in self.config.sources.clone() {
            let cache = self.read_caches.entry(src.path.clone()).or_default();
            let signed = src.signatures == crate::config::Signatures::Required;
            let by_name = if signed {
                None
            } else {
                source::snapshot_delta(&src, &limits, cache, named)
            };
            // The read caches are ahead of `last` from the first look on.
            self.carry_ok = false;
            if let Some(delta) = by_name {
                looks.push((src.path, Look::Named(delta)));
                continue;
            }
            let SnapshotResult::Ok(mut snap) = source::snapshot_named(&src, &limits, cache, Some(named)) else {
                return None;
            };
            if signed && self.check_signed(&src.path, &mut snap).is_err() {
                return None;
            }
            let last = self.last.as_ref()?;
            let (fp, parts) = fingerprint(&snap);
            let looked = last
                .files
                .iter()
                .filter(|f| *f.source == *src.path)
                .map(|f| f.path.to_path_buf())
                .chain(snap.files.iter().map(|f| f.path.to_path_buf()))
                .chain(snap.refused.iter().map(|r| r.path.clone()))
                .collect();
            let delta = source::Delta {
                looked,
                files: snap.files,
                refused: snap.refused,
                newest_change: snap.newest_change,
            };
            looks.push((src.path, Look::Whole(delta, fp, parts)));
        }
        self.carried_reads += 1;
        Some(self.carry(looks))
    }

    /// Validate what the looks found, then put it in place of what the
    /// last reconcile held under the same paths, and plan.
    fn carry(&mut self, looks: Vec<(PathBuf, Look)>) -> Result<Report, ApplyError> {
        let mut new: Vec<DesiredFile> = Vec::new();
        let mut may_define = BTreeMap::new();
        let mut looked: Vec<PathBuf> = Vec::new();
        let mut files = Vec::new();
        // Recorded once every source was read: a carry given up half-way
        // must not count as a read of the sources it did read.
        for (src, look) in looks {
            let delta = match look {
                Look::Named(delta) => {
                    self.note_delta(&src, &delta);
                    delta
                }
                Look::Whole(delta, fp, parts) => {
                    self.record_read(&src, fp, parts, delta.newest_change);
                    delta
                }
            };
            let src: Arc<Path> = src.into();
            push_refusals(delta.refused, &src, &mut new, &mut may_define);
            files.extend(delta.files.into_iter().map(|f| (f, src.clone())));
            looked.extend(delta.looked);
        }
        let files = render_specs(files, &mut new, &mut may_define);
        if files.is_empty() {
            let Some(mut desired) = self.last.take() else {
                return self.reconcile();
            };
            if let Some(l) = &mut self.looked {
                l.note(&desired, &looked);
            }
            replace_files(&mut desired, &looked, new, may_define);
            return self.plan_and_apply(desired, None, false, false);
        }
        // While the parser checks the files, the kernel's list is read and
        // the plan made, for the verdicts the files will most likely get:
        // each valid, with the profiles a scan finds in it. Kept only when
        // the parser's verdicts are exactly those.
        let guessed: Vec<DesiredFile> = new
            .iter()
            .cloned()
            .chain(files.iter().map(|(f, src)| {
                DesiredFile {
                    path: f.path.clone(),
                    source: src.clone(),
                    sha256: f.sha256.clone(),
                    verdict: Verdict::Valid {
                        names: super::validate::contained(&f.path, || {
                            Ok(declared_profiles(&f.content).into_iter().map(|d| d.name).collect())
                        })
                        .unwrap_or_default(),
                    },
                }
            }))
            .collect();
        let guessed_may_define = may_define.clone();
        let Some(mut desired) = self.last.take() else {
            return self.reconcile();
        };
        // The paths where the guess differs from what the last plan saw.
        if let Some(l) = &mut self.looked {
            l.note(&desired, &looked);
        }
        replace_files(&mut desired, &looked, guessed.clone(), guessed_may_define.clone());
        self.quiet_now(&mut desired);
        // The plan ahead knows the trials the guess holds; a file validated
        // now may declare one (a new version): then the plan is made again.
        desired.trials = self.trials_now(&desired);
        let trials_guessed = desired.trials.clone();
        let engine = engine!(self);
        let policy = Self::policy(&self.config);
        let (tx, parser_starts) = std::sync::mpsc::channel();
        self.validator.parser_starts = Some(tx);
        let (kernel, manifest, guess) = (&self.kernel, &self.manifest, &desired);
        let listed = &self.listed;
        let (memo, looked_all) = (self.memo.as_ref(), self.looked.as_ref());
        let (validated, planned) = std::thread::scope(|s| {
            let ahead = s.spawn(move || {
                // Either way: the parser started, or the validation ended.
                let _ = parser_starts.recv();
                let kernel = listed.read(kernel.as_ref()).ok()?;
                let (plan, reach) = plan_now(memo, looked_all, guess, manifest, &kernel, &policy);
                Some((kernel, plan, reach))
            });
            let validated = self.validator.validate(files, &self.manifest, &engine, &mut may_define);
            // A validation that failed before its parser run still held it.
            self.validator.parser_starts = None;
            (validated, ahead.join().ok().flatten())
        });
        // On an error, `last` stays empty: the next reconcile reads in full.
        let validated = validated?;
        self.note_checked(&validated)?;
        new.extend(validated);
        let transient = self.validator.transient > 0;
        let planned = planned.filter(|_| new == guessed && may_define == guessed_may_define);
        replace_files(&mut desired, &looked, new, may_define);
        let planned = planned.filter(|_| self.trials_now(&desired) == trials_guessed);
        self.plans_ahead_kept += u64::from(planned.is_some());
        self.plan_and_apply(desired, planned, transient, false)
    }

    /// Record a look at some entries of `src`, as [`Reconciler::note_read`]
    /// records a full read: the fingerprint loses the shares of the entries
    /// looked at and gains those of what was found.
    fn note_delta(&mut self, src: &Path, delta: &source::Delta) {
        let Some(st) = self.stillness.get_mut(src) else {
            return;
        };
        let mut parts = std::mem::take(&mut st.parts);
        let mut fp = st.fingerprint;
        for p in &delta.looked {
            if let Some(old) = parts.remove(p.as_path()) {
                fp = fp.wrapping_sub(old);
            }
        }
        for (path, share) in shares(&delta.files, &delta.refused) {
            if let Some(old) = parts.insert(path, share) {
                fp = fp.wrapping_sub(old);
            }
            fp = fp.wrapping_add(share);
        }
        self.record_read(src, fp, parts, delta.newest_change);
    }
}

/// Put `new` (sorted into place) and its `may_define` where `desired` held
/// the files at the paths `looked`.
fn replace_files(
    desired: &mut Desired,
    looked: &[PathBuf],
    new: Vec<DesiredFile>,
    may_define: BTreeMap<PathBuf, Vec<String>>,
) {
    let files = &mut desired.files;
    for path in looked {
        desired.may_define.remove(path);
    }
    // A few paths one by one; many (a source read whole) in one pass.
    if looked.len() + new.len() > 64 {
        let gone: super::hash::FxSet<&[u8]> = looked.iter().map(|p| p.as_os_str().as_encoded_bytes()).collect();
        files.retain(|f| !gone.contains(order_key(f).0));
        files.extend(new);
        sort_files(files);
    } else {
        for path in looked {
            let range = range_at(files, path);
            files.drain(range);
        }
        for f in new {
            let at = files.partition_point(|g| order_key(g) < order_key(&f));
            files.insert(at, f);
        }
    }
    desired.may_define.extend(may_define);
}
