//! A plan made over what a change reaches is the full plan: over
//! sequences of changes (edits, new files, deletions, conflicts, invalid
//! files, failed loads, profiles lost from the kernel or loaded behind
//! armord's back),
//! on sources of a few files and of thousands.

use super::delta::{Looked, Memo};
use super::plan::*;
use crate::apparmor::{Diagnostic, Mode};
use crate::config::RemoveInUse;
use crate::state::{Manifest, Owned};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const SRC: &str = "/src";

fn policy(takeover: bool) -> Policy<'static> {
    Policy {
        prefix: "custom.",
        takeover,
        remove_in_use: RemoveInUse::Defer,
        complain: false,
        removal: RemovalRules::IMMEDIATE,
    }
}

/// A file at `/src/f{path}`: `kind` 0–5 valid with one name, 6 valid with
/// two, 7 invalid (may define its name), 8 refused with no names known.
fn file(path: u32, name: u32, kind: u8, version: u32) -> (DesiredFile, Option<Vec<String>>) {
    let n = |k: u32| format!("custom.n{k}");
    let verdict = match kind {
        0..=5 => Verdict::Valid {
            names: vec![n(name)].into(),
        },
        6 => Verdict::Valid {
            names: vec![n(name), n(name + 1)].into(),
        },
        7 => Verdict::Invalid {
            diagnostics: vec![Diagnostic {
                file: None,
                line: Some(1),
                message: "syntax error".into(),
            }],
        },
        _ => Verdict::Refused {
            reason: "not UTF-8".into(),
        },
    };
    let may = match kind {
        7 => Some(vec![n(name)]),
        8 => Some(Vec::new()),
        _ => None,
    };
    (
        DesiredFile {
            path: PathBuf::from(format!("{SRC}/f{path}")).into(),
            source: std::path::Path::new(SRC).into(),
            sha256: format!("{path}-{name}-{kind}-{version}").into(),
            verdict,
        },
        may,
    )
}

/// What the engine does with a plan, as far as the next plan can tell.
/// A load of a file defining a `failing` name fails whole: the kernel
/// keeps what it had, and a name it still lists stays owned with no known
/// hash (`Manifest::recover`).
fn apply(plan: &Plan, manifest: &mut Manifest, kernel: &mut BTreeMap<String, Mode>, failing: &BTreeSet<String>) {
    for l in &plan.loads {
        let mode = if l.complain { Mode::Complain } else { Mode::Enforce };
        if l.names.iter().any(|n| failing.contains(n)) {
            for n in &l.names {
                let Some(m) = kernel.get(n) else { continue };
                match manifest.owned_mut(n) {
                    Some(o) if o.sha256 != l.sha256 => o.sha256 = Default::default(),
                    Some(_) => {}
                    None => manifest.own(
                        n.clone(),
                        Owned {
                            file: l.file.clone(),
                            source: l.source.clone(),
                            sha256: String::new().into(),
                            complain: l.complain,
                            mode: m.clone(),
                        },
                    ),
                }
            }
            continue;
        }
        for n in &l.names {
            kernel.insert(n.clone(), mode.clone());
            manifest.own(
                n.clone(),
                Owned {
                    file: l.file.clone(),
                    source: l.source.clone(),
                    sha256: l.sha256.clone(),
                    complain: l.complain,
                    mode: mode.clone(),
                },
            );
        }
    }
    for r in &plan.relocations {
        if let Some(o) = manifest.owned_mut(&r.name) {
            o.file = r.file.clone();
            o.source = r.source.clone();
        }
    }
    for n in &plan.removes {
        kernel.remove(n);
        manifest.disown(n);
    }
    for n in &plan.forgets {
        manifest.disown(n);
    }
}

#[derive(Debug, Clone)]
enum Change {
    /// Put a file at a path (new or in place of what was there).
    Put {
        path: u32,
        name: u32,
        kind: u8,
    },
    Delete {
        path: u32,
    },
    /// Something else removed a profile from the kernel.
    Lost {
        name: u32,
    },
    /// Something else loaded a profile armord does not own.
    Foreign {
        name: u32,
    },
    /// Loads of a file defining this name fail from now on, or no longer.
    Failing {
        name: u32,
    },
}

fn change(paths: u32) -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => (0..paths + 4, 0..paths + 4, 0u8..9).prop_map(|(path, name, kind)| Change::Put { path, name, kind }),
        2 => (0..paths + 4).prop_map(|path| Change::Delete { path }),
        1 => (0..paths + 4).prop_map(|name| Change::Lost { name }),
        1 => (0..paths + 4).prop_map(|name| Change::Foreign { name }),
        1 => (0..paths + 4).prop_map(|name| Change::Failing { name }),
    ]
}

/// A source of `size` files (file k defines custom.nk) and steps of
/// changes; whether takeover is on.
fn scenario() -> impl Strategy<Value = (u32, Vec<Vec<Change>>, bool)> {
    prop_oneof![Just(6u32), Just(30u32), Just(3000u32)].prop_flat_map(|size| {
        (
            Just(size),
            proptest::collection::vec(proptest::collection::vec(change(size), 1..5), 1..8),
            any::<bool>(),
        )
    })
}

struct World {
    desired: Desired,
    manifest: Manifest,
    kernel: BTreeMap<String, Mode>,
    failing: BTreeSet<String>,
    version: u32,
}

impl World {
    fn new(size: u32) -> Self {
        let mut desired = Desired {
            configured: vec![PathBuf::from(SRC)],
            ..Default::default()
        };
        desired.quiet.insert(
            PathBuf::from(SRC),
            Quiet {
                quiet: Duration::from_secs(60),
                confirmed: true,
            },
        );
        let mut w = World {
            desired,
            manifest: Manifest::new(),
            kernel: BTreeMap::new(),
            failing: BTreeSet::new(),
            version: 0,
        };
        for k in 0..size {
            w.put(k, k, 0);
        }
        w
    }

    fn put(&mut self, path: u32, name: u32, kind: u8) {
        self.version += 1;
        let (f, may) = file(path, name, kind, self.version);
        self.delete(path);
        if let Some(m) = may {
            self.desired.may_define.insert(f.path.to_path_buf(), m);
        }
        let at = self
            .desired
            .files
            .partition_point(|g| g.path.as_os_str().as_encoded_bytes() < f.path.as_os_str().as_encoded_bytes());
        self.desired.files.insert(at, f);
    }

    fn delete(&mut self, path: u32) -> PathBuf {
        let p = PathBuf::from(format!("{SRC}/f{path}"));
        self.desired.files.retain(|f| *f.path != *p);
        self.desired.may_define.remove(&p);
        p
    }
}

/// Runs `steps` on a source of `size` files, holding the plan over each
/// change's reach equal to the full plan.
fn same_as_full(size: u32, steps: Vec<Vec<Change>>, takeover: bool) -> Result<(), TestCaseError> {
    let policy = policy(takeover);
    let mut w = World::new(size);
    let first = plan(&w.desired, &w.manifest, &w.kernel, &BTreeMap::new(), &policy);
    // The kernel's list as the reconciler keeps it: one shared list while
    // it has not moved, and the memo advanced to the list the loads left.
    let mut listed = Arc::new(w.kernel.clone());
    let mut memo = Memo::of_full(&w.desired, &w.manifest, listed.clone(), &first, &policy);
    apply(&first, &mut w.manifest, &mut w.kernel, &w.failing);
    listed = Arc::new(w.kernel.clone());
    memo.advance(listed.clone(), &w.desired);
    for step in steps {
        // Each look noted before the change, as the reconciler notes it.
        let mut looked = Looked::default();
        for c in step {
            match c {
                Change::Put { path, name, kind } => {
                    looked.note(&w.desired, &[PathBuf::from(format!("{SRC}/f{path}"))]);
                    w.put(path, name, kind);
                }
                Change::Delete { path } => {
                    looked.note(&w.desired, &[PathBuf::from(format!("{SRC}/f{path}"))]);
                    w.delete(path);
                }
                Change::Lost { name } => {
                    w.kernel.remove(&format!("custom.n{name}"));
                }
                Change::Foreign { name } => {
                    w.kernel.entry(format!("custom.n{name}")).or_insert(Mode::Enforce);
                }
                Change::Failing { name } => {
                    let n = format!("custom.n{name}");
                    if !w.failing.remove(&n) {
                        w.failing.insert(n);
                    }
                }
            }
        }
        if *listed != w.kernel {
            listed = Arc::new(w.kernel.clone());
        }
        let full = plan(&w.desired, &w.manifest, &w.kernel, &BTreeMap::new(), &policy);
        match memo.plan(&w.desired, &w.manifest, &listed, &looked, &policy) {
            Some((part, reach)) => {
                prop_assert_eq!(&part.loads, &full.loads);
                prop_assert_eq!(&part.problems, &full.problems);
                prop_assert_eq!(&part.held, &full.held);
                prop_assert_eq!(&part.relocations, &full.relocations);
                prop_assert_eq!(&part.trial_refused, &full.trial_refused);
                prop_assert_eq!(&part.removes, &full.removes);
                prop_assert_eq!(&part.forgets, &full.forgets);
                prop_assert_eq!(&part.defers, &full.defers);
                prop_assert_eq!(part.recheck_in, full.recheck_in);
                prop_assert_eq!(part.keeps.len() + part.carried_keeps, full.keeps.len());
                prop_assert!(part.keeps.iter().all(|k| full.keeps.contains(k)));
                let _ = memo.absorb(&w.desired, &w.manifest, listed.clone(), &part, &reach, &looked);
            }
            None => memo = Memo::of_full(&w.desired, &w.manifest, listed.clone(), &full, &policy),
        }
        apply(&full, &mut w.manifest, &mut w.kernel, &w.failing);
        if *listed != w.kernel {
            listed = Arc::new(w.kernel.clone());
        }
        memo.advance(listed.clone(), &w.desired);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Wherever the plan over a change's reach is made, it is the full
    /// plan: the same loads, problems, holds, relocations and refusals,
    /// and as many profiles kept.
    #[test]
    fn a_plan_over_the_reach_of_a_change_is_the_full_plan((size, steps, takeover) in scenario()) {
        same_as_full(size, steps, takeover)?;
    }
}

/// A profile whose replacement failed (owned, hash unknown), then held by
/// a refused file and lost from the kernel, is forgotten when the file
/// goes: the plan over the reach still looks at it.
#[test]
fn a_held_profile_of_unknown_hash_lost_from_the_kernel_is_forgotten() {
    let steps = vec![
        vec![
            Change::Failing { name: 1 },
            Change::Put {
                path: 1,
                name: 1,
                kind: 0,
            },
        ],
        vec![Change::Put {
            path: 1,
            name: 1,
            kind: 8,
        }],
        vec![Change::Lost { name: 1 }],
        vec![Change::Delete { path: 1 }],
    ];
    for size in [6, 3000] {
        for takeover in [false, true] {
            if let Err(e) = same_as_full(size, steps.clone(), takeover) {
                panic!("{size} files, takeover {takeover}: {e}");
            }
        }
    }
}

/// An edit of one file of thousands is planned over its reach: that file
/// and nothing else.
#[test]
fn an_edit_of_one_file_of_thousands_reaches_that_file() {
    let policy = policy(false);
    let mut w = World::new(3000);
    let first = plan(&w.desired, &w.manifest, &w.kernel, &BTreeMap::new(), &policy);
    let mut memo = Memo::of_full(&w.desired, &w.manifest, Arc::new(w.kernel.clone()), &first, &policy);
    apply(&first, &mut w.manifest, &mut w.kernel, &w.failing);
    // Loaded: the next plan settles every file. A reach of every file is
    // planned in full, not copied into a part.
    assert!(
        memo.plan(
            &w.desired,
            &w.manifest,
            &Arc::new(w.kernel.clone()),
            &Looked::default(),
            &policy
        )
        .is_none()
    );
    let settle = plan(&w.desired, &w.manifest, &w.kernel, &BTreeMap::new(), &policy);
    assert_eq!(settle.keeps.len(), 3000);
    memo = Memo::of_full(&w.desired, &w.manifest, Arc::new(w.kernel.clone()), &settle, &policy);
    // Settled: nothing changed is a plan over an empty reach.
    let (part, _) = memo
        .plan(
            &w.desired,
            &w.manifest,
            &Arc::new(w.kernel.clone()),
            &Looked::default(),
            &policy,
        )
        .expect("nothing changed: planned over the reach");
    assert_eq!((part.keeps.len(), part.carried_keeps), (0, 3000));
    let mut looked = Looked::default();
    looked.note(&w.desired, &[PathBuf::from(format!("{SRC}/f1234"))]);
    w.put(1234, 1234, 0);
    let (part, _) = memo
        .plan(&w.desired, &w.manifest, &Arc::new(w.kernel.clone()), &looked, &policy)
        .expect("an edit: planned over the reach");
    assert_eq!(part.loads.len(), 1);
    assert_eq!(part.loads[0].kind, LoadKind::Replace);
    assert_eq!(part.keeps.len(), 0);
    assert_eq!(part.carried_keeps, 2999);
    // A profile lost from the kernel behind armord's back: the full plan.
    w.kernel.remove("custom.n7");
    assert!(
        memo.plan(&w.desired, &w.manifest, &Arc::new(w.kernel.clone()), &looked, &policy)
            .is_none()
    );
}
