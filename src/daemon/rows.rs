//! The profile rows D-Bus and the exports publish, kept a name at a time:
//! after a change reconcile only the rows of the profiles it touched, and
//! of those its report or the one before it shaped by name (deferred,
//! held), are made again. A manifest just read (start, a reload, a
//! recovery), or problems that moved (a row shows its file's problem),
//! makes every row.

use crate::dbus::{ProfileInfo, ProfileRows, Row};
use crate::reconcile::{Held, HeldWhy, Report};
use crate::state::{Manifest, Owned};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct RowIndex {
    /// The profiles whose row the last report shaped by name (deferred,
    /// held): made again with the next one, which may not.
    shaped: BTreeSet<String>,
    /// The first problem of each file, as the last report had them: a row
    /// changes with its file's problem, so when these move every row is
    /// looked at once.
    problems: HashMap<PathBuf, String>,
    /// Of the files with a problem, those an owned profile was loaded from
    /// (the others get a row of their own).
    owned_problem_files: HashSet<PathBuf>,
}

/// What a report says of owned profiles, looked up by name or file.
struct Shapes<'a> {
    deferred: HashSet<&'a str>,
    held: HashMap<&'a str, &'a Held>,
    /// The first problem of each file.
    problem_of: HashMap<&'a Path, String>,
}

impl<'a> Shapes<'a> {
    fn of(report: &'a Report) -> Self {
        let mut problem_of: HashMap<&Path, String> = HashMap::new();
        for p in &report.problems {
            problem_of.entry(p.file.as_path()).or_insert_with(|| p.to_string());
        }
        Shapes {
            deferred: report.deferred.iter().map(|d| d.name.as_str()).collect(),
            held: report
                .held
                .iter()
                .filter(|h| matches!(h.why, HeldWhy::MassRemoval | HeldWhy::Settling))
                .map(|h| (h.name.as_str(), h))
                .collect(),
            problem_of,
        }
    }

    fn row(&self, name: &str, o: &Owned) -> Row {
        let mut error = self.problem_of.get(&*o.file).cloned().unwrap_or_default();
        let state = if self.deferred.contains(name) {
            "deferred"
        } else if let Some(h) = self.held.get(name) {
            // No source defines it; its removal waits.
            error = h.reason.clone();
            "held"
        } else if !error.is_empty() {
            // The last good version is loaded; the current file is not.
            "invalid"
        } else {
            "loaded"
        };
        Row {
            mode: o.mode.clone(),
            state,
            file: o.file.clone(),
            sha256: o.sha256.clone(),
            error: error.into(),
        }
    }
}

impl RowIndex {
    /// Bring `rows` in step with `manifest` and `report`: the names
    /// `touched` (`None`: every name), those a report shaped by name, and
    /// every row when the files with a problem or their problems moved.
    pub fn update(
        &mut self,
        rows: &mut ProfileRows,
        manifest: &Manifest,
        report: &Report,
        touched: Option<&BTreeSet<String>>,
    ) {
        let shapes = Shapes::of(report);
        let problems: HashMap<PathBuf, String> = shapes
            .problem_of
            .iter()
            .map(|(f, p)| ((*f).to_owned(), p.clone()))
            .collect();
        // A touched profile loaded from a file with a problem, before or
        // now, moves which problem files are owned.
        let moves_problem_files = |n: &String| {
            rows.owned.get(n).is_some_and(|r| problems.contains_key(&*r.file))
                || manifest
                    .profiles
                    .get(n)
                    .is_some_and(|o| problems.contains_key(&*o.file))
        };
        let every = match touched {
            None => true,
            Some(names) => problems != self.problems || names.iter().any(moves_problem_files),
        };
        if every {
            self.owned_problem_files = manifest
                .profiles
                .values()
                .filter(|o| problems.contains_key(&*o.file))
                .map(|o| o.file.to_path_buf())
                .collect();
        }
        let mut redo: BTreeSet<String> = match touched {
            Some(names) if !every => names.clone(),
            // Every row, made in one build from the sorted names: its
            // nodes packed, where rows added one at a time leave each a
            // little over half full (at 10,000 profiles, 0.8 MB).
            _ => {
                rows.owned = manifest
                    .profiles
                    .iter()
                    .map(|(n, o)| (n.clone(), shapes.row(n, o)))
                    .collect();
                BTreeSet::new()
            }
        };
        let shaped: BTreeSet<String> = shapes
            .deferred
            .iter()
            .chain(shapes.held.keys())
            .map(|n| (*n).to_owned())
            .collect();
        redo.extend(std::mem::take(&mut self.shaped));
        redo.extend(shaped.iter().cloned());
        self.shaped = shaped;
        for n in redo {
            match manifest.profiles.get(&n) {
                Some(o) => {
                    let row = shapes.row(&n, o);
                    rows.owned.insert(n, row);
                }
                None => {
                    rows.owned.remove(&n);
                }
            }
        }
        rows.files = report
            .problems
            .iter()
            .filter(|p| !self.owned_problem_files.contains(&p.file))
            .map(|p| ProfileInfo {
                name: String::new(),
                mode: String::new(),
                state: format!("{:?}", p.kind).to_lowercase(),
                file: crate::escape::path(&p.file),
                sha256: String::new(),
                error: p.to_string(),
            })
            .collect();
        self.problems = problems;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apparmor::Mode;
    use crate::reconcile::{Deferred, Problem, ProblemKind};
    use proptest::prelude::*;

    fn owned(file: &str, sha: &str) -> Owned {
        Owned {
            file: std::path::Path::new(file).into(),
            source: Path::new("/s").into(),
            sha256: sha.into(),
            complain: false,
            mode: Mode::Enforce,
        }
    }

    /// Every row made from scratch, as a fresh index makes them.
    fn all_rows(manifest: &Manifest, report: &Report) -> Vec<ProfileInfo> {
        let mut rows = ProfileRows::default();
        RowIndex::default().update(&mut rows, manifest, report, None);
        rows.iter().collect()
    }

    /// One step: profiles owned (name index → file index, sha), deferred,
    /// held and problem files, by index.
    type Step = (Vec<(u8, u8, u8)>, Vec<u8>, Vec<u8>, Vec<u8>);

    fn step() -> impl Strategy<Value = Step> {
        (
            proptest::collection::vec((0u8..40, 0u8..12, 0u8..3), 0..40),
            proptest::collection::vec(0u8..40, 0..4),
            proptest::collection::vec(0u8..40, 0..4),
            proptest::collection::vec(0u8..14, 0..4),
        )
    }

    #[test]
    fn a_row_lists_its_file_escaped() {
        let mut manifest = Manifest::new();
        manifest.own("custom.a".into(), owned("/p/new\nline\"q", "1"));
        let rows = all_rows(&manifest, &Report::default());
        assert_eq!(rows[0].file, crate::escape::path(Path::new("/p/new\nline\"q")));
        assert!(!rows[0].file.contains('\n'), "{}", rows[0].file);
    }

    proptest! {
        /// Kept a name at a time, over any sequence of manifests and
        /// reports, the rows are always those made from scratch.
        #[test]
        fn rows_kept_by_name_are_the_rows_made_whole(steps in proptest::collection::vec(step(), 1..12)) {
            let mut manifest = Manifest::new();
            let mut index = RowIndex::default();
            let mut rows = ProfileRows::default();
            // What a reader saw first: every name.
            let _ = manifest.take_touched();
            index.update(&mut rows, &manifest, &Report::default(), None);
            for (owned_now, deferred, held, problems) in steps {
                let want: std::collections::BTreeMap<String, Owned> = owned_now
                    .iter()
                    .map(|(n, f, sha)| (format!("p{n}"), owned(&format!("/f{f}"), &format!("{sha}"))))
                    .collect();
                let gone: Vec<String> = manifest.profiles.keys().filter(|n| !want.contains_key(*n)).cloned().collect();
                for n in gone {
                    manifest.disown(&n);
                }
                for (n, o) in want {
                    if manifest.profiles.get(&n) != Some(&o) {
                        manifest.own(n, o);
                    }
                }
                let report = Report {
                    deferred: deferred.iter().map(|n| Deferred { name: format!("p{n}"), pids: vec![1] }).collect(),
                    held: held
                        .iter()
                        .map(|n| Held { name: format!("p{n}"), file: "/f0".into(), reason: "settling".into(), why: HeldWhy::Settling })
                        .collect(),
                    problems: problems
                        .iter()
                        .map(|f| Problem::new(ProblemKind::Invalid, format!("/f{f}").into(), "bad"))
                        .collect(),
                    ..Default::default()
                };
                let touched = manifest.take_touched();
                index.update(&mut rows, &manifest, &report, touched.as_ref());
                let kept: Vec<ProfileInfo> = rows.iter().collect();
                prop_assert_eq!(kept, all_rows(&manifest, &report));
            }
        }
    }
}
