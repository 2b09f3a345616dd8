use super::*;
use crate::apparmor::{ParserRunner, ProcReader, SecurityFs};
use crate::config::{RemoveInUse, SourceConfig};
use crate::source::Unavailable;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

// ---------- plan ----------

fn owned(file: &str, sha: &str) -> Owned {
    Owned {
        file: Path::new(file).into(),
        source: Path::new("/src").into(),
        sha256: sha.into(),
        complain: false,
        mode: "enforce".into(),
    }
}

fn valid(path: &str, sha: &str, names: &[&str]) -> DesiredFile {
    DesiredFile {
        path: Path::new(path).into(),
        source: Path::new("/src").into(),
        sha256: sha.into(),
        verdict: Verdict::Valid {
            names: names.iter().map(|s| s.to_string()).collect(),
        },
    }
}

fn invalid(path: &str) -> DesiredFile {
    DesiredFile {
        path: Path::new(path).into(),
        source: Path::new("/src").into(),
        sha256: "bad".into(),
        verdict: Verdict::Invalid {
            diagnostics: vec![Diagnostic {
                file: Some(path.into()),
                line: Some(3),
                message: "syntax error".into(),
            }],
        },
    }
}

/// What the sources want, with `/src` read twice alike and standing still
/// for an hour.
fn desired(files: Vec<DesiredFile>) -> Desired {
    Desired {
        files,
        unavailable: vec![],
        configured: vec!["/src".into()],
        quiet: [(PathBuf::from("/src"), still(3600))].into(),
        ..Default::default()
    }
}

fn still(secs: u64) -> Quiet {
    Quiet {
        quiet: Duration::from_secs(secs),
        confirmed: true,
    }
}

fn kmap(names: &[&str]) -> BTreeMap<String, crate::apparmor::Mode> {
    names
        .iter()
        .map(|n| (n.to_string(), crate::apparmor::Mode::Enforce))
        .collect()
}

fn manifest(entries: &[(&str, Owned)]) -> Manifest {
    let mut m = Manifest::new();
    for (n, o) in entries {
        m.profiles.insert(n.to_string(), o.clone());
    }
    m
}

const POLICY: Policy = Policy {
    prefix: "",
    takeover: false,
    remove_in_use: RemoveInUse::Defer,
    complain: false,
    removal: RemovalRules::IMMEDIATE,
};

/// The defaults: 2 s to settle, more than half a source is a mass removal,
/// held for 5 minutes.
const RULES: RemovalRules = RemovalRules {
    settle: Duration::from_secs(2),
    mass_percent: 50,
    mass_settle: Duration::from_secs(300),
};

fn load_names(p: &Plan, kind: LoadKind) -> Vec<String> {
    p.loads
        .iter()
        .filter(|a| a.kind == kind)
        .flat_map(|a| a.names.clone())
        .collect()
}

#[test]
fn plan_new_replace_keep_restore() {
    let d = desired(vec![
        valid("/src/a", "a1", &["a"]),
        valid("/src/b", "b2", &["b"]),
        valid("/src/c", "c1", &["c"]),
        valid("/src/d", "d1", &["d"]),
    ]);
    let m = manifest(&[
        ("b", owned("/src/b", "b1")),
        ("c", owned("/src/c", "c1")),
        ("d", owned("/src/d", "d1")),
    ]);
    let p = plan(&d, &m, &kmap(&["b", "c"]), &BTreeMap::new(), &POLICY);
    assert_eq!(load_names(&p, LoadKind::New), ["a"]);
    assert_eq!(load_names(&p, LoadKind::Replace), ["b"]);
    assert_eq!(load_names(&p, LoadKind::Restore), ["d"]);
    assert_eq!(p.keeps, ["c"]);
    assert!(p.removes.is_empty() && p.problems.is_empty());
}

#[test]
fn plan_removes_defers_and_forgets_only_owned() {
    let d = desired(vec![]);
    let m = manifest(&[
        ("a", owned("/src/a", "1")),
        ("b", owned("/src/b", "1")),
        ("c", owned("/src/c", "1")),
    ]);
    let in_use = [("b".to_string(), vec![42])].into();
    let p = plan(&d, &m, &kmap(&["a", "b", "docker-default"]), &in_use, &POLICY);
    assert_eq!(p.removes, ["a"]);
    assert_eq!(
        p.defers,
        [Deferred {
            name: "b".to_string(),
            pids: vec![42]
        }]
    );
    assert_eq!(p.forgets, ["c"]);
    let force = Policy {
        remove_in_use: RemoveInUse::Force,
        ..POLICY
    };
    let p = plan(&d, &m, &kmap(&["a", "b"]), &in_use, &force);
    assert_eq!(p.removes, ["a", "b"]);
}

#[test]
fn plan_invalid_file_keeps_the_loaded_version() {
    let d = desired(vec![invalid("/src/a")]);
    let m = manifest(&[("a", owned("/src/a", "1"))]);
    let p = plan(&d, &m, &kmap(&["a"]), &BTreeMap::new(), &POLICY);
    assert!(p.loads.is_empty() && p.removes.is_empty());
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.problems[0].to_string(), "/src/a:3: syntax error");
    assert_eq!(p.problems[0].kind, ProblemKind::Invalid);
    // Drift on a held profile restores the last good version.
    let p = plan(&d, &m, &kmap(&[]), &BTreeMap::new(), &POLICY);
    assert_eq!(load_names(&p, LoadKind::Restore), ["a"]);
    assert_eq!(p.loads[0].sha256, "1");
}

#[test]
fn plan_unavailable_or_unconfigured_source_holds() {
    let mut d = desired(vec![]);
    d.unavailable.push(Unavailable {
        path: "/src".into(),
        reason: "does not exist".into(),
    });
    let mut other = owned("/old/x", "1");
    other.source = Path::new("/old").into();
    let m = manifest(&[("a", owned("/src/a", "1")), ("x", other)]);
    let p = plan(&d, &m, &kmap(&["a", "x"]), &BTreeMap::new(), &POLICY);
    assert!(p.removes.is_empty());
    assert_eq!(p.held.len(), 2);
    assert_eq!(p.problems[0].to_string(), "/src: source does not exist");
}

#[test]
fn plan_refusals() {
    let policy = Policy {
        prefix: "custom.",
        ..POLICY
    };
    let d = desired(vec![
        valid("/src/noprefix", "1", &["other"]),
        valid("/src/dup1", "2", &["custom.dup"]),
        valid("/src/dup2", "3", &["custom.dup"]),
        valid("/src/distro", "4", &["custom.taken"]),
        valid("/src/empty", "5", &[]),
        valid("/src/ok", "6", &["custom.ok"]),
    ]);
    let p = plan(
        &d,
        &Manifest::new(),
        &kmap(&["custom.taken"]),
        &BTreeMap::new(),
        &policy,
    );
    let msgs: Vec<String> = p.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "/src/noprefix: profile `other` does not start with the required prefix `custom.`",
            "/src/dup1: profile `custom.dup` is also defined in /src/dup2",
            "/src/dup2: profile `custom.dup` is also defined in /src/dup1",
            "/src/distro: profile `custom.taken` is already loaded and armord does not own it (set takeover = true to manage it)",
            "/src/empty: holds no profile",
        ]
    );
    assert_eq!(load_names(&p, LoadKind::New), ["custom.ok"]);
    let d = desired(vec![valid("/src/u", "1", &["unconfined"])]);
    let p = plan(&d, &Manifest::new(), &kmap(&[]), &BTreeMap::new(), &POLICY);
    assert_eq!(p.problems[0].message, "profile `unconfined` uses a reserved name");
    // takeover = true manages a profile it did not load.
    let d = desired(vec![valid("/src/distro", "4", &["custom.taken"])]);
    let take = Policy {
        takeover: true,
        ..policy
    };
    let p = plan(&d, &Manifest::new(), &kmap(&["custom.taken"]), &BTreeMap::new(), &take);
    assert_eq!(load_names(&p, LoadKind::New), ["custom.taken"]);
}

#[test]
fn a_trial_loads_in_complain_but_never_weakens_what_is_enforced() {
    let trial =
        |d: &mut Desired, shas: &[&str]| d.trials.declared = shas.iter().map(|s| crate::sha::Sha::from(*s)).collect();
    // New: complain.
    let mut d = desired(vec![valid("/src/t", "t1", &["t"])]);
    trial(&mut d, &["t1"]);
    let p = plan(&d, &Manifest::new(), &kmap(&[]), &BTreeMap::new(), &POLICY);
    assert!(p.loads[0].complain && p.trial_refused.is_empty());
    // Owned and enforced (not promoted from a trial): stays enforced.
    let m = manifest(&[("t", owned("/src/t", "t0"))]);
    let p = plan(&d, &m, &kmap(&["t"]), &BTreeMap::new(), &POLICY);
    assert!(!p.loads[0].complain);
    assert_eq!(p.trial_refused[0].reason, "trial refused: already enforced");
    // A kill-mode profile is enforced too.
    let mut killing = owned("/src/t", "t0");
    killing.mode = "kill".into();
    let p = plan(
        &d,
        &manifest(&[("t", killing)]),
        &kmap(&["t"]),
        &BTreeMap::new(),
        &POLICY,
    );
    assert!(!p.loads[0].complain);
    // Taken over from the kernel, where it enforces: stays enforced.
    let take = Policy {
        takeover: true,
        ..POLICY
    };
    let p = plan(&d, &Manifest::new(), &kmap(&["t"]), &BTreeMap::new(), &take);
    assert!(!p.loads[0].complain, "{p:?}");
    // Promoted from a trial: a new version starts a new trial.
    d.trials.known.insert("t".into());
    let p = plan(&d, &m, &kmap(&["t"]), &BTreeMap::new(), &POLICY);
    assert!(p.loads[0].complain);
    // This version promoted: enforce.
    d.trials.promoted.insert("t".into(), "t1".into());
    let p = plan(&d, &m, &kmap(&["t"]), &BTreeMap::new(), &POLICY);
    assert!(!p.loads[0].complain && p.trial_refused.is_empty());
    // mode = "enforce": refused.
    d.trials.promoted.clear();
    d.trials.refused = Some("trial refused: mode = \"enforce\" is configured".into());
    let p = plan(&d, &Manifest::new(), &kmap(&[]), &BTreeMap::new(), &POLICY);
    assert!(!p.loads[0].complain && p.trial_refused.len() == 1);
}

#[test]
fn plan_forced_complain_change_replaces_and_moves_relocate() {
    let d = desired(vec![valid("/src/new-name", "1", &["a"])]);
    let m = manifest(&[("a", owned("/src/a", "1"))]);
    let p = plan(&d, &m, &kmap(&["a"]), &BTreeMap::new(), &POLICY);
    assert_eq!(p.keeps, ["a"]);
    assert_eq!(
        p.relocations,
        [Relocation {
            name: "a".to_string(),
            file: Path::new("/src/new-name").into(),
            source: Path::new("/src").into()
        }]
    );
    let c = Policy {
        complain: true,
        ..POLICY
    };
    let p = plan(&d, &m, &kmap(&["a"]), &BTreeMap::new(), &c);
    assert_eq!(load_names(&p, LoadKind::Replace), ["a"]);
}

/// The scan result of each bad file, by path.
fn files_scans(files: &[DesiredFile], scans: &[Vec<String>]) -> BTreeMap<PathBuf, Vec<String>> {
    files
        .iter()
        .zip(scans)
        .filter(|(f, _)| !matches!(f.verdict, Verdict::Valid { .. }))
        .map(|(f, n)| (f.path.to_path_buf(), n.clone()))
        .collect()
}

#[allow(clippy::type_complexity)]
fn arb_case() -> impl Strategy<
    Value = (
        Desired,
        Manifest,
        BTreeMap<String, crate::apparmor::Mode>,
        BTreeMap<String, Vec<u32>>,
        bool,
        bool,
    ),
> {
    let names = prop::sample::subsequence((0..8).map(|i| format!("p{i}")).collect::<Vec<_>>(), 0..4);
    let file = (0u8..4, names, 0u8..3, 0u8..3).prop_map(|(kind, names, sha, src)| {
        let source = PathBuf::from(format!("/s{src}"));
        let verdict = match kind {
            0 => Verdict::Invalid { diagnostics: vec![] },
            1 => Verdict::Refused { reason: "x".into() },
            _ => Verdict::Valid { names: names.into() },
        };
        (source, format!("h{sha}"), verdict)
    });
    let files = prop::collection::vec(file, 0..6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (source, sha, verdict))| DesiredFile {
                path: source.join(format!("f{i}")).into(),
                source: source.into(),
                sha256: sha.into(),
                verdict,
            })
            .collect::<Vec<_>>()
    });
    let owned = prop::collection::btree_map(
        (0..8u8).prop_map(|i| format!("p{i}")),
        (0u8..6, 0u8..3, 0u8..3).prop_map(|(f, s, src)| Owned {
            file: PathBuf::from(format!("/s{src}/f{f}")).into(),
            source: PathBuf::from(format!("/s{src}")).into(),
            sha256: format!("h{s}").into(),
            complain: false,
            mode: "enforce".into(),
        }),
        0..6,
    );
    let kernel = prop::collection::btree_set(
        (0..10u8).prop_map(|i| if i < 8 { format!("p{i}") } else { format!("distro{i}") }),
        0..10,
    );
    let in_use = prop::collection::btree_map(
        (0..10u8).prop_map(|i| format!("p{i}")),
        prop::collection::vec(1u32..100, 0..3),
        0..5,
    );
    let unavailable = prop::collection::btree_set(0u8..3, 0..2);
    // Per file index: the names a scan of a bad file finds (none: unknown).
    let scans = prop::collection::vec(
        prop::sample::subsequence((0..8).map(|i| format!("p{i}")).collect::<Vec<_>>(), 0..3),
        6,
    );
    // Per source: confirmed by two reads, and how long it stood still.
    let quiet = prop::collection::btree_map(
        0u8..3,
        (any::<bool>(), prop::sample::select(vec![0u64, 1, 3, 100, 400])),
        0..4,
    );
    let allow = prop::collection::btree_set(0u8..3, 0..2);
    (
        (files, owned, kernel, in_use, unavailable, any::<bool>(), any::<bool>()),
        (scans, quiet, allow),
    )
        .prop_map(
            |((files, owned, kernel, in_use, unavail, takeover, defer), (scans, quiet, allow))| {
                let mut files = files;
                files.retain(|f| !unavail.contains(&f.source.to_string_lossy()[2..].parse::<u8>().unwrap_or(9)));
                let d = Desired {
                    unavailable: unavail
                        .iter()
                        .map(|s| Unavailable {
                            path: PathBuf::from(format!("/s{s}")),
                            reason: "gone".into(),
                        })
                        .collect(),
                    configured: (0..3).map(|s| PathBuf::from(format!("/s{s}"))).collect(),
                    may_define: files_scans(&files, &scans),
                    quiet: quiet
                        .into_iter()
                        .map(|(s, (confirmed, secs))| {
                            (
                                PathBuf::from(format!("/s{s}")),
                                Quiet {
                                    quiet: Duration::from_secs(secs),
                                    confirmed,
                                },
                            )
                        })
                        .collect(),
                    allow_mass: allow.into_iter().map(|s| PathBuf::from(format!("/s{s}"))).collect(),
                    files,
                    trials: Trials::default(),
                };
                let mut m = Manifest::new();
                m.profiles = owned;
                let k = kernel
                    .into_iter()
                    .map(|n| (n, crate::apparmor::Mode::Enforce))
                    .collect();
                (d, m, k, in_use, takeover, defer)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn plan_never_breaks_the_rules((d, m, k, in_use, takeover, defer) in arb_case()) {
        let policy = Policy {
            prefix: "",
            takeover,
            remove_in_use: if defer { RemoveInUse::Defer } else { RemoveInUse::Force },
            complain: false,
            removal: RULES,
        };
        let p = plan(&d, &m, &k, &in_use, &policy);
        // A removal (or a deferred one) happens only from a source read twice
        // alike that stood still for the settling time; a mass removal only
        // after the longer one or when allowed; never a name that a file
        // which will not be loaded may define.
        let going: Vec<&String> = p.removes.iter().chain(p.defers.iter().map(|d| &d.name)).collect();
        let accepted_names: BTreeSet<&String> = p.loads.iter().flat_map(|a| &a.names).chain(&p.keeps).collect();
        for n in &going {
            let o = &m.profiles[n.as_str()];
            let q = d.quiet.get(&*o.source).copied();
            prop_assert!(q.is_some_and(|q| q.confirmed && q.quiet >= RULES.settle), "{} removed unsettled", n);
            let of_source = going.iter().filter(|g| m.profiles[g.as_str()].source == o.source).count();
            let owned_in = m.profiles.values().filter(|x| x.source == o.source).count();
            if of_source * 100 > owned_in * 50 {
                prop_assert!(
                    d.allow_mass.contains(&*o.source) || q.is_some_and(|q| q.quiet >= RULES.mass_settle),
                    "mass removal of {} not held", n
                );
            }
            for f in d.files.iter().filter(|f| f.source == o.source) {
                let defines = match &f.verdict {
                    Verdict::Valid { names } => names.contains(n),
                    _ => d.may_define.get(&*f.path).is_none_or(|s| s.is_empty() || s.contains(n)),
                };
                prop_assert!(!defines, "{} removed while {} may define it", n, f.path.display());
            }
            prop_assert!(!accepted_names.contains(n));
        }
        if p.held.iter().any(|h| matches!(h.why, HeldWhy::Settling | HeldWhy::MassRemoval)) {
            prop_assert!(p.recheck_in.is_some(), "held for settling with no recheck");
        }
        // Nothing outside the manifest is ever removed.
        for n in &p.removes {
            prop_assert!(m.profiles.contains_key(n), "removed non-owned {}", n);
        }
        // Under defer, a profile that confines a process is never removed.
        if defer {
            for n in &p.removes {
                prop_assert!(in_use.get(n).is_none_or(|v| v.is_empty()), "removed in-use {}", n);
            }
        }
        let bad_files: BTreeSet<&Path> = d.files.iter().filter(|f| !matches!(f.verdict, Verdict::Valid { .. })).map(|f| &*f.path).collect();
        let unavailable: BTreeSet<&Path> = d.unavailable.iter().map(|u| u.path.as_path()).collect();
        for a in &p.loads {
            // No invalid file replaces a loaded version: every load is a valid
            // file's content, or the stored last-good content of a held one.
            let from_valid = d.files.iter().any(|f| f.path == a.file && f.sha256 == a.sha256 && matches!(f.verdict, Verdict::Valid { .. }));
            let from_store = a.kind == LoadKind::Restore && a.names.iter().all(|n| m.profiles.get(n).is_some_and(|o| o.sha256 == a.sha256));
            prop_assert!(from_valid || from_store, "bad load {:?}", a);
            // A profile loaded by someone else is never replaced without takeover.
            for n in &a.names {
                prop_assert!(takeover || m.profiles.contains_key(n) || !k.contains_key(n), "took over {}", n);
            }
        }
        // A profile whose file is broken or whose source is missing stays loaded.
        for (n, o) in &m.profiles {
            if bad_files.contains(&*o.file) || unavailable.contains(&*o.source) {
                prop_assert!(!p.removes.contains(n), "removed held {}", n);
            }
        }
        // Every name is decided at most once.
        let mut seen = BTreeSet::new();
        for n in p.removes.iter().chain(p.defers.iter().map(|d| &d.name)).chain(&p.keeps).chain(&p.forgets) {
            prop_assert!(seen.insert(n.clone()), "{} twice", n);
        }
    }
}

// ---------- apply, with a fake parser process and a temp securityfs ----------

pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub secfs: PathBuf,
    pub log: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("profiles.d");
        let secfs = dir.path().join("secfs");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&secfs).unwrap();
        std::fs::write(secfs.join("profiles"), "docker-default (enforce)\n").unwrap();
        std::fs::write(secfs.join(".remove"), "").unwrap();
        let log = dir.path().join("parser.log");
        Fixture { dir, src, secfs, log }
    }

    fn parser_script(&self) -> PathBuf {
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_apparmor_parser");
        let wrapper = self.dir.path().join("apparmor_parser");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nFAKE_SECURITYFS='{}' FAKE_PARSER_LOG='{}' exec '{}' \"$@\"\n",
                self.secfs.display(),
                self.log.display(),
                fake.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrapper
    }

    pub fn config(&self) -> Config {
        let mut c = Config {
            sources: vec![SourceConfig {
                path: self.src.clone(),
                layout: crate::config::LayoutKind::Auto,
                link: None,
                subdir: None,
                signatures: Default::default(),
            }],
            state_dir: self.dir.path().join("state"),
            securityfs: self.secfs.clone(),
            proc: self.dir.path().join("proc"),
            ..Config::default()
        };
        c.parser.path = self.parser_script();
        c.parser.timeout_secs = 1;
        // Removals still need two reads that agree; no wait beyond that.
        c.removal_settle_ms = 0;
        c.mass_removal_percent = 100;
        c.parser.cache_dir = self.dir.path().join("cache");
        c
    }

    pub fn open(&self) -> Reconciler {
        self.open_with(self.config())
    }

    pub fn open_with(&self, c: Config) -> Reconciler {
        let parser = self.parser(&c);
        let kernel = FakeKernel(self.securityfs(&c));
        Reconciler::open(c, Arc::new(parser), Arc::new(kernel)).unwrap()
    }

    pub fn parser(&self, c: &Config) -> ParserRunner {
        ParserRunner {
            program: c.parser.path.clone(),
            timeout: Duration::from_millis(700),
            jobs: 0,
            cache_dir: c.parser.cache_dir.clone(),
            features_file: None,
            scratch_dir: c.state_dir.join("tmp"),
            direct: None,
        }
    }

    pub fn securityfs(&self, c: &Config) -> SecurityFs {
        SecurityFs {
            root: self.secfs.clone(),
            proc: ProcReader { root: c.proc.clone() },
        }
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.src.join(name), text).unwrap();
    }

    pub fn kernel(&self) -> BTreeMap<String, crate::apparmor::Mode> {
        crate::apparmor::parse_profiles_file(
            Path::new("p"),
            &std::fs::read_to_string(self.secfs.join("profiles")).unwrap(),
        )
        .unwrap()
    }

    /// The invariant: everything armord owns is loaded, and everything
    /// loaded besides the distro profile is owned.
    pub fn assert_manifest_matches_kernel(&self, r: &Reconciler) {
        let kernel = self.kernel();
        let on_disk = match r.state.load_manifest() {
            Loaded::Found(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(on_disk, r.manifest, "manifest on disk differs from memory");
        for n in r.manifest.profiles.keys() {
            assert!(kernel.contains_key(n), "owned {n} is not loaded");
        }
        for n in kernel.keys().filter(|n| *n != "docker-default") {
            assert!(r.manifest.profiles.contains_key(n), "loaded {n} is not owned");
        }
        assert!(r.manifest.pending.is_empty());
    }

    fn calls(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// The fixture's kernel: securityfs files in the temp dir, with a policy
/// revision that moves whenever the list does, as a kernel's moves with
/// each load and removal. The fake parser writes the list at a load, and
/// [`settle_removals`] at a removal; a test that edits the list by hand
/// moves the revision with it. So every test here runs with the kept
/// kernel list ([`crate::apparmor::listed`]) in play.
pub(crate) struct FakeKernel(pub SecurityFs);

impl Kernel for FakeKernel {
    fn loaded(&self) -> Result<BTreeMap<String, crate::apparmor::Mode>, crate::apparmor::KernelError> {
        self.0.loaded()
    }
    fn remove(&self, name: &str) -> Result<(), crate::apparmor::KernelError> {
        self.0.remove(name)
    }
    fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, crate::apparmor::KernelError> {
        self.0.confined()
    }
    fn revision(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let text = std::fs::read(self.0.root.join("profiles")).ok()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Some(h.finish())
    }
}

/// A kernel that removes at once and never moves its revision.
struct StillRevision(SecurityFs);

impl Kernel for StillRevision {
    fn loaded(&self) -> Result<BTreeMap<String, crate::apparmor::Mode>, crate::apparmor::KernelError> {
        self.0.loaded()
    }
    fn remove(&self, name: &str) -> Result<(), crate::apparmor::KernelError> {
        self.0.remove(name)?;
        unlist(&self.0.root, &[name.to_owned()]);
        Ok(())
    }
    fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, crate::apparmor::KernelError> {
        self.0.confined()
    }
    fn revision(&self) -> Option<u64> {
        Some(7)
    }
}

/// armord's own removal is not left in the kept kernel list, even where
/// the revision does not show it: a later file may define the name again.
#[test]
fn a_name_removed_under_an_unmoved_revision_can_be_loaded_again() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    f.write("b", "profile custom.b {\n}\n");
    let c = f.config();
    let kernel = StillRevision(f.securityfs(&c));
    let parser = f.parser(&c);
    let mut r = Reconciler::open(c, Arc::new(parser), Arc::new(kernel)).unwrap();
    r.reconcile().unwrap();
    std::fs::remove_file(f.src.join("b")).unwrap();
    let mut removed = Vec::new();
    for _ in 0..3 {
        removed.extend(r.reconcile_named(Some([f.src.join("b")].into())).unwrap().removed);
        if !removed.is_empty() {
            break;
        }
    }
    assert_eq!(removed, ["custom.b"]);
    f.write("c", "profile custom.b {\n  # back\n}\n");
    let rep = r.reconcile_named(Some([f.src.join("c")].into())).unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.loaded, ["custom.b"]);
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn apply_loads_replaces_and_removes() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    f.write("b", "profile custom.b flags=(complain) {\n}\nprofile custom.b2 {\n}\n");
    let mut r = f.open();
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.loaded, ["custom.a", "custom.b", "custom.b2"]);
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(f.kernel()["custom.b"], "complain");
    f.assert_manifest_matches_kernel(&r);

    // Nothing changed: no parser call at all.
    let before = f.calls();
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.unchanged, 3);
    assert_eq!(f.calls(), before, "an unchanged reconcile ran the parser");

    f.write("a", "profile custom.a {\n  /etc/x r,\n}\n");
    std::fs::remove_file(f.src.join("b")).unwrap();
    // A replace applies at once; a removal waits for a second read that agrees.
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.replaced, ["custom.a"]);
    assert!(rep.removed.is_empty());
    assert_eq!(rep.held_for(HeldWhy::Settling), 2);
    assert_eq!(rep.recheck_in, Some(Duration::ZERO));
    let rep = crate::daemon::converge(&mut r).unwrap();
    assert_eq!(rep.removed, ["custom.b", "custom.b2"]);
    assert_eq!(std::fs::read_to_string(f.secfs.join(".remove")).unwrap(), "custom.b2");
    settle_removals(&f, &rep.removed);
    f.assert_manifest_matches_kernel(&r);
}

/// The fake securityfs `.remove` is a plain file: make removal real for the
/// fixture by rewriting `profiles` after each apply.
pub(super) fn settle_removals(f: &Fixture, removed: &[String]) {
    unlist(&f.secfs, removed);
}

/// Take `names` off the fake securityfs list at `secfs`.
fn unlist(secfs: &Path, names: &[String]) {
    let path = secfs.join("profiles");
    let mut k = crate::apparmor::parse_profiles_file(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    for n in names {
        k.remove(n);
    }
    let text: String = k.iter().map(|(n, m)| format!("{n} ({m})\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn apply_broken_file_keeps_old_version_and_reports_line() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    let good_sha = r.manifest.profiles["custom.a"].sha256.clone();
    f.write("a", "profile custom.a {\n  BROKEN\n}\n");
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.problems.len(), 1);
    assert_eq!(
        rep.problems[0].to_string(),
        format!(
            "{}:2: syntax error, unexpected TOK_ID, expecting TOK_MODE",
            f.src.join("a").display()
        )
    );
    assert_eq!(r.manifest.profiles["custom.a"].sha256, good_sha);
    assert!(f.kernel().contains_key("custom.a"));
    assert_eq!(rep.held.len(), 1);
    f.assert_manifest_matches_kernel(&r);
    // A broken file is not compiled again until it changes.
    let before = f.calls();
    r.reconcile().unwrap();
    assert_eq!(f.calls(), before);
}

#[test]
fn apply_one_bad_file_in_a_batch_does_not_block_the_rest() {
    let f = Fixture::new();
    for i in 0..5 {
        f.write(&format!("p{i}"), &format!("profile custom.p{i} {{\n}}\n"));
    }
    f.write("p2", "profile custom.p2 {\nBROKEN\n}\n");
    let mut r = f.open();
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.loaded, ["custom.p0", "custom.p1", "custom.p3", "custom.p4"]);
    assert_eq!(rep.problems.len(), 1);
    assert_eq!(rep.problems[0].line, Some(2));
    assert_eq!(rep.problems[0].file, f.src.join("p2"));
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn apply_survives_parser_hang_and_crash() {
    for (marker, expect) in [
        ("HANG", "did not finish within"),
        ("CRASH", "killed by signal 11"),
        ("LOADFAIL", "Unable to replace"),
    ] {
        let f = Fixture::new();
        f.write("good", "profile custom.good {\n}\n");
        f.write("other", "profile custom.other {\n}\n");
        let mut r = f.open();
        r.reconcile().unwrap();
        f.write("good", "profile custom.good {\n  /etc/new r,\n}\n");
        f.write("other", &format!("profile custom.other {{\n  # {marker}\n}}\n"));
        let rep = r.reconcile().unwrap();
        assert_eq!(rep.replaced, ["custom.good"], "{marker}: {rep:?}");
        assert_eq!(rep.problems.len(), 1, "{marker}: {:?}", rep.problems);
        assert_eq!(rep.problems[0].file, f.src.join("other"), "{marker}");
        assert!(
            rep.problems[0].message.contains(expect),
            "{marker}: {}",
            rep.problems[0].message
        );
        // The old version of the failing file is still loaded and owned.
        assert!(f.kernel().contains_key("custom.other"), "{marker}");
        f.assert_manifest_matches_kernel(&r);
    }
}

#[test]
fn missing_parser_is_fatal_and_changes_nothing() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.parser = Arc::new(ParserRunner {
        program: f.dir.path().join("no-such-parser"),
        timeout: Duration::from_secs(1),
        jobs: 0,
        cache_dir: f.dir.path().join("cache"),
        features_file: None,
        scratch_dir: f.dir.path().join("tmp"),
        direct: None,
    });
    let e = r.reconcile().expect_err("must fail");
    assert!(e.to_string().contains("no-such-parser"), "{e}");
    assert_eq!(f.kernel().len(), 1);
}

#[test]
fn interrupted_load_is_adopted_on_next_open() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let r = f.open();
    // As if armord died after the parser call, before the manifest write.
    let mut m = r.manifest.clone();
    m.pending.insert(
        "custom.a".into(),
        PendingLoad {
            file: f.src.join("a").into(),
            source: f.src.as_path().into(),
            sha256: "x".into(),
            complain: false,
        },
    );
    r.state.save_manifest(&mut m).unwrap();
    std::fs::write(
        f.secfs.join("profiles"),
        "docker-default (enforce)\ncustom.a (enforce)\n",
    )
    .unwrap();
    drop(r);
    let mut r = f.open();
    assert!(r.manifest.profiles.contains_key("custom.a"));
    assert!(r.notes.iter().any(|n| n.contains("adopted")), "{:?}", r.notes);
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.replaced, ["custom.a"]);
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn corrupt_manifest_is_rebuilt_without_unloading() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    std::fs::write(r.state.manifest(), "{ not json").unwrap();
    drop(r);
    let mut r = f.open();
    assert!(r.notes[0].contains("corrupt manifest"), "{:?}", r.notes);
    assert!(r.manifest.profiles.contains_key("custom.a"));
    assert!(r.state.manifest().with_extension("json.corrupt").exists());
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty() && rep.is_clean(), "{rep:?}");
    assert_eq!(rep.unchanged, 1);
    assert_eq!(r.manifest.profiles["custom.a"].file, f.src.join("a").into());
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn a_corrupt_pending_log_is_set_aside_and_nothing_unloaded() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    std::fs::write(r.state.pending_log(), "{ not json\n").unwrap();
    drop(r);
    let mut r = f.open();
    assert!(
        r.notes[0].contains("pending.log: corrupt manifest: line 1") && r.notes[0].contains("; set aside as "),
        "{:?}",
        r.notes
    );
    assert_eq!(
        std::fs::read_to_string(r.state.dir.join("pending.log.corrupt")).unwrap(),
        "{ not json\n"
    );
    assert!(r.manifest.profiles.contains_key("custom.a"));
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty() && rep.is_clean(), "{rep:?}");
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn a_damaged_stored_copy_is_set_aside_and_never_loaded() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    let entry = r.state.store_entry(&r.manifest.profiles["custom.a"].sha256);
    drop(r);
    // Reboot with the source not there yet, and the stored copy damaged.
    std::fs::write(f.secfs.join("profiles"), "").unwrap();
    std::fs::remove_dir_all(&f.src).unwrap();
    std::fs::write(&entry, "profile custom.a { /** rwx, }\n").unwrap();
    let mut r = f.open();
    let rep = r.restore().unwrap();
    assert!(rep.restored.is_empty(), "{rep:?}");
    assert!(
        rep.problems.iter().any(|p| p.message.contains("is missing or damaged")),
        "{:?}",
        rep.problems
    );
    assert!(!f.kernel().contains_key("custom.a"));
    let mut aside = entry.into_os_string();
    aside.push(".corrupt");
    assert_eq!(
        std::fs::read_to_string(&aside).unwrap(),
        "profile custom.a { /** rwx, }\n"
    );
}

#[test]
fn boot_restore_loads_from_store_when_source_is_gone() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    drop(r);
    // Reboot: the kernel is empty, the source has not appeared yet.
    std::fs::write(f.secfs.join("profiles"), "").unwrap();
    std::fs::remove_dir_all(&f.src).unwrap();
    let mut r = f.open();
    let rep = r.restore().unwrap();
    assert_eq!(rep.restored, ["custom.a"]);
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty());
    assert_eq!(rep.problems[0].kind, ProblemKind::Unavailable);
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn defer_in_use_until_the_process_is_gone() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    let attr = f.dir.path().join("proc/4242/attr");
    std::fs::create_dir_all(&attr).unwrap();
    std::fs::write(attr.join("current"), "custom.a (enforce)\n").unwrap();
    std::fs::remove_file(f.src.join("a")).unwrap();
    let rep = crate::daemon::converge(&mut r).unwrap();
    assert_eq!(
        rep.deferred,
        [Deferred {
            name: "custom.a".to_string(),
            pids: vec![4242]
        }]
    );
    assert!(rep.removed.is_empty());
    std::fs::remove_dir_all(f.dir.path().join("proc/4242")).unwrap();
    let rep = crate::daemon::converge(&mut r).unwrap();
    assert_eq!(rep.removed, ["custom.a"]);
    settle_removals(&f, &rep.removed);
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn reverting_to_an_earlier_version_reloads_it() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    f.write("a", "profile custom.a {\n  /x r,\n}\n");
    assert_eq!(r.reconcile().unwrap().replaced, ["custom.a"]);
    // Back to the first content, which the validator remembers as good.
    f.write("a", "profile custom.a {\n}\n");
    let rep = r.reconcile().unwrap();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert_eq!(rep.replaced, ["custom.a"]);
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn name_rules() {
    use super::names::bad_name;
    assert_eq!(bad_name("custom.app"), None);
    assert_eq!(bad_name("/usr/bin/my tool"), None);
    for (name, why) in [
        ("", "empty name"),
        ("custom.a\ncustom.b", "control character"),
        ("custom.a\tb", "control character"),
        (":ns:custom.a", "policy namespace"),
    ] {
        let v = bad_name(name).unwrap_or_else(|| panic!("{name:?} accepted"));
        assert!(v.contains(why), "{name:?}: {v}");
    }
    let long = "x".repeat(4096);
    assert!(bad_name(&long).unwrap().contains("4096 bytes, over the limit of 1024"));
}

#[test]
fn a_problem_without_a_file_is_just_its_message() {
    let p = Problem::new(ProblemKind::LoadFailed, PathBuf::new(), "state: disk full");
    assert_eq!(p.to_string(), "state: disk full");
    let p = Problem::new(ProblemKind::Refused, PathBuf::from("/src/a"), "too big");
    assert_eq!(p.to_string(), "/src/a: too big");
}

#[test]
fn a_read_that_misses_a_file_removes_nothing() {
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    f.write("b", "profile custom.b {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    // A rename in flight: one read does not see `a`, the next one does.
    let a = f.src.join("a");
    std::fs::rename(&a, f.dir.path().join("a.away")).unwrap();
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty(), "{rep:?}");
    assert_eq!(rep.held_for(HeldWhy::Settling), 1);
    std::fs::rename(f.dir.path().join("a.away"), f.src.join("a2")).unwrap();
    let rep = crate::daemon::converge(&mut r).unwrap();
    assert!(rep.removed.is_empty(), "{rep:?}");
    assert!(f.kernel().contains_key("custom.a"));
    f.assert_manifest_matches_kernel(&r);
}

#[test]
fn a_short_lived_empty_revision_removes_nothing() {
    let f = Fixture::new();
    let wt = f.src.join(".worktrees");
    for (rev, names) in [("r1", &["x", "y", "z"][..]), ("r2", &[][..])] {
        std::fs::create_dir_all(wt.join(rev)).unwrap();
        for n in names {
            std::fs::write(wt.join(rev).join(n), format!("profile custom.{n} {{\n}}\n")).unwrap();
        }
    }
    let swap = |rev: &str| {
        let tmp = f.src.join(".tmp-link");
        std::os::unix::fs::symlink(format!(".worktrees/{rev}"), &tmp).unwrap();
        std::fs::rename(&tmp, f.src.join("current")).unwrap();
    };
    swap("r1");
    let mut r = f.open();
    r.config.removal_settle_ms = 60_000;
    assert_eq!(r.reconcile().unwrap().loaded.len(), 3);
    swap("r2");
    // Two reads agree on the empty revision, but it has not stood still.
    for _ in 0..2 {
        let rep = r.reconcile().unwrap();
        assert!(rep.removed.is_empty() && rep.deferred.is_empty(), "{rep:?}");
        assert_eq!(rep.held_for(HeldWhy::Settling), 3);
        let wait = rep.recheck_in.unwrap();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
    }
    swap("r1");
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty() && rep.held.is_empty(), "{rep:?}");
    assert_eq!(f.kernel().len(), 4, "{:?}", f.kernel());

    // Past the settling time, an empty revision is still a mass removal.
    r.config.removal_settle_ms = 0;
    r.config.mass_removal_percent = 50;
    swap("r2");
    r.reconcile().unwrap();
    let rep = r.reconcile().unwrap();
    assert!(rep.removed.is_empty(), "{rep:?}");
    assert_eq!(rep.held_for(HeldWhy::MassRemoval), 3);
    assert!(rep.summary().contains("3 removals held (mass removal)"));
    r.allow_mass_removal();
    let rep = crate::daemon::converge(&mut r).unwrap();
    assert_eq!(rep.removed, ["custom.x", "custom.y", "custom.z"]);
}

/// The fixture's parser, as one whose compile leaves each good file's
/// compiled policy (built here from a scan of the file, where the real one
/// compiles it), recording the files its `--names` was asked about.
struct NamesFromCompile {
    inner: Arc<dyn Parser>,
    compiled: std::sync::Mutex<BTreeSet<PathBuf>>,
    asked: std::sync::Mutex<Vec<PathBuf>>,
}

impl Parser for NamesFromCompile {
    fn names(&self, files: &[PathBuf]) -> Result<Vec<crate::apparmor::NamesResult>, ParserError> {
        self.asked.lock().unwrap().extend_from_slice(files);
        self.inner.names(files)
    }
    fn compile(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        self.inner.compile(files, opts)?;
        self.compiled.lock().unwrap().extend(files.iter().cloned());
        Ok(())
    }
    fn load(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        self.inner.load(files, opts)
    }
    fn leaves_policy(&self) -> bool {
        true
    }
    fn compiled(&self, file: &Path) -> Option<Vec<u8>> {
        if !self.compiled.lock().unwrap().contains(file) {
            return None;
        }
        self.cached(file)
    }
    fn cached(&self, file: &Path) -> Option<Vec<u8>> {
        let text = std::fs::read_to_string(file).ok()?;
        Some(
            declared_profiles(&text)
                .into_iter()
                .flat_map(|d| crate::apparmor::compiled::tests::entry(&d.name, b"", 0, false))
                .collect(),
        )
    }
}

#[test]
fn names_read_from_the_compile_leave_the_names_run_to_the_files_it_rejected() {
    let f = Fixture::new();
    for i in 0..4 {
        f.write(&format!("p{i}"), &format!("profile custom.p{i} {{\n}}\n"));
    }
    f.write("p2", "profile custom.p2 {\nBROKEN\n}\n");
    let mut r = f.open();
    let parser = Arc::new(NamesFromCompile {
        inner: r.parser.clone(),
        compiled: Default::default(),
        asked: Default::default(),
    });
    r.parser = parser.clone();
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.loaded, ["custom.p0", "custom.p1", "custom.p3"]);
    // The broken file has the names run's verdict, with its line.
    assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
    assert_eq!(rep.problems[0].line, Some(2));
    assert_eq!(rep.problems[0].file, f.src.join("p2"));
    let asked = parser.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(r.manifest.profiles.len(), 3);
    f.assert_manifest_matches_kernel(&r);

    // A good change: its names come from the compile; no names run at all.
    f.write("p1", "profile custom.p1 {\n  /etc/hostname r,\n}\n");
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.replaced, ["custom.p1"]);
    assert_eq!(parser.asked.lock().unwrap().len(), 1);
    f.assert_manifest_matches_kernel(&r);
}

/// A restored copy that defines a profile armord now owns at another
/// version puts that profile back to its own version after it: restoring
/// one profile never rolls back another.
#[test]
fn restoring_a_copy_never_rolls_back_a_profile_it_also_defines() {
    let f = Fixture::new();
    f.write("p", "profile custom.a {\n  # v1\n}\nprofile custom.b {\n}\n");
    let mut r = f.open();
    r.reconcile().unwrap();
    // custom.a moves on to v2; an invalid file may define custom.b, which
    // stays held at the first copy.
    f.write("p", "profile custom.a {\n  # v2\n}\n");
    f.write("q", "profile custom.b {\n  BROKEN\n}\n");
    let rep = r.reconcile().unwrap();
    assert_eq!(rep.replaced, ["custom.a"]);
    assert_eq!(rep.held.len(), 1, "{rep:?}");
    // custom.b is removed behind armord's back, and restored.
    let profiles = f.secfs.join("profiles");
    let text = std::fs::read_to_string(&profiles).unwrap();
    std::fs::write(&profiles, text.replace("custom.b (enforce)\n", "")).unwrap();
    let rep = r.replan().unwrap();
    assert!(rep.restored.contains(&"custom.b".to_string()), "{rep:?}");
    // The last copy loaded that defines custom.a is its own, v2.
    let log = std::fs::read_to_string(&f.log).unwrap();
    let last_a = log
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == "-r"))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|w| std::fs::read_to_string(&w).ok())
        .rfind(|c| c.contains("profile custom.a"))
        .unwrap();
    assert!(last_a.contains("v2"), "custom.a rolled back to:\n{last_a}");
    assert_eq!(
        r.manifest.profiles["custom.a"].sha256,
        crate::source::sha256_hex(b"profile custom.a {\n  # v2\n}\n")
    );
    f.assert_manifest_matches_kernel(&r);
}
