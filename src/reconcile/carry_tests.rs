//! A carried change reconcile against a full read: for any sequence of
//! changes reported by name, what it carries forward is what a read of
//! every file gives.

use super::tests::{Fixture, settle_removals};
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// One change to the source directory, and the names it would report.
#[derive(Debug, Clone)]
enum Op {
    /// Write file `f` with content of kind `k`, version `v`.
    Write(usize, u8, u8),
    Remove(usize),
    Rename(usize, usize),
    /// Make file `f` a symlink to file `t`.
    Link(usize, usize),
    Mkdir(usize),
}

const FILES: &[&str] = &["a", "b", "c", "d", "e~", "f.allow.toml"];

fn content(f: usize, k: u8, v: u8) -> Vec<u8> {
    if FILES[f].ends_with(".toml") {
        return match k % 3 {
            0 => format!("name = \"custom.spec\"\nrules = [\"/etc/v{v} r\"]\n").into_bytes(),
            1 => b"name = [\n".to_vec(),
            _ => format!("name = \"custom.n{}\"\nrules = []\n", v % 3).into_bytes(),
        };
    }
    match k % 7 {
        0 | 1 => format!("profile custom.n{} {{\n  # v{v}\n}}\n", v % 4).into_bytes(),
        2 => format!(
            "profile custom.n{} {{\n}}\nprofile custom.n{} {{\n}}\n",
            v % 4,
            (u32::from(v) + 1) % 4
        )
        .into_bytes(),
        3 => format!("profile custom.n{} {{\n  BROKEN\n}}\n", v % 4).into_bytes(),
        4 => vec![b'p', 0xff, 0xfe, b'\n'],
        5 => b"# no profile here\n".to_vec(),
        _ => format!("profile custom.n{} {{\0}}\n", v % 4).into_bytes(),
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    let f = 0..FILES.len();
    prop_oneof![
        4 => (f.clone(), any::<u8>(), any::<u8>()).prop_map(|(f, k, v)| Op::Write(f, k, v)),
        2 => f.clone().prop_map(Op::Remove),
        2 => (f.clone(), f.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (f.clone(), f.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => f.prop_map(Op::Mkdir),
    ]
}

/// Carry out `op` in `dir`; the paths inotify would report.
fn apply(dir: &Path, op: &Op) -> Vec<PathBuf> {
    let p = |f: usize| dir.join(FILES[f]);
    let clear = |path: &Path| {
        let _ = std::fs::remove_dir(path);
        let _ = std::fs::remove_file(path);
    };
    match *op {
        Op::Write(f, k, v) => {
            if p(f).is_dir() || std::fs::write(p(f), content(f, k, v)).is_err() {
                return Vec::new();
            }
            // Written through a symlink, the event names the file written.
            let written = std::fs::canonicalize(p(f)).unwrap();
            vec![dir.join(written.file_name().unwrap())]
        }
        Op::Remove(f) => {
            clear(&p(f));
            vec![p(f)]
        }
        Op::Rename(a, b) => {
            if a == b || std::fs::rename(p(a), p(b)).is_err() {
                return Vec::new();
            }
            vec![p(a), p(b)]
        }
        Op::Link(f, t) => {
            clear(&p(f));
            std::os::unix::fs::symlink(FILES[t], p(f)).unwrap();
            vec![p(f)]
        }
        Op::Mkdir(f) => {
            clear(&p(f));
            std::fs::create_dir(p(f)).unwrap();
            vec![p(f)]
        }
    }
}

/// What a read of every file gives now: the files and what they may
/// define, as a reconcile wants them, and each source's fingerprint.
fn full_read(r: &mut Reconciler) -> (Vec<DesiredFile>, BTreeMap<PathBuf, Vec<String>>, Vec<u64>) {
    let limits = Limits {
        max_file_bytes: r.config.max_file_bytes,
        max_files: r.config.max_profiles,
    };
    let (mut out, mut may_define, mut fps, mut files) = (Vec::new(), BTreeMap::new(), Vec::new(), Vec::new());
    for src in r.config.sources.clone() {
        let SnapshotResult::Ok(snap) = source::snapshot(&src, &limits) else {
            panic!("{} unavailable", src.path.display());
        };
        fps.push(fingerprint(&snap).0);
        let shared: std::sync::Arc<std::path::Path> = src.path.as_path().into();
        push_refusals(snap.refused, &shared, &mut out, &mut may_define);
        files.extend(snap.files.into_iter().map(|f| (f, shared.clone())));
    }
    let files = render_specs(files, &mut out, &mut may_define);
    let engine = engine!(r);
    let validated = r
        .validator
        .validate(files, &r.manifest, &engine, &mut may_define)
        .unwrap();
    out.extend(validated);
    sort_files(&mut out);
    (out, may_define, fps)
}

/// Plans made ahead and kept, over every case run.
static KEPT_AHEAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[test]
fn carried_reconciles_want_what_a_full_read_finds_and_plans_made_ahead_are_kept() {
    a_carried_reconcile_wants_what_a_full_read_finds();
    assert!(
        KEPT_AHEAD.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no plan made while the parser ran was ever kept"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    fn a_carried_reconcile_wants_what_a_full_read_finds(
        steps in prop::collection::vec(prop::collection::vec(arb_op(), 1..4), 1..7)
    ) {
        let kept_ahead = &KEPT_AHEAD;
        let f = Fixture::new();
        f.write("a", "profile custom.n0 {\n}\n");
        f.write("b", "profile custom.n1 {\n}\n");
        let mut r = f.open();
        r.reconcile().unwrap();
        for (i, ops) in steps.iter().enumerate() {
            let named: BTreeSet<PathBuf> = ops.iter().flat_map(|op| apply(&f.src, op)).collect();
            let before = r.carried_reads;
            let report = r.reconcile_named(Some(named.clone())).unwrap();
            settle_removals(&f, &report.removed);
            // Every change here is one a carried reconcile takes.
            if !named.is_empty() {
                prop_assert_eq!(r.carried_reads, before + 1, "step {} ({:?}) was read in full", i, ops);
            }
            let (files, may_define, fps) = full_read(&mut r);
            let last = r.last.as_ref().unwrap();
            prop_assert_eq!(&last.files, &files, "step {}: {:?}; {}", i, ops, report.summary());
            prop_assert_eq!(&last.may_define, &may_define, "step {}: {:?}", i, ops);
            prop_assert_eq!(r.stillness[&f.src].fingerprint, fps[0], "step {}: {:?}", i, ops);
            f.assert_manifest_matches_kernel(&r);
            // What was applied, a plan made ahead or not, left nothing to do.
            let mut desired = r.last.take().unwrap();
            r.quiet_now(&mut desired);
            let left = plan(&desired, &r.manifest, &f.kernel(), &BTreeMap::new(), &Reconciler::policy(&r.config));
            r.last = Some(desired);
            prop_assert!(left.is_noop(), "step {}: {:?} left {:?}", i, ops, left);
        }
        kept_ahead.fetch_add(r.plans_ahead_kept, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every configured source, as a full read finds it, equals what a carried
/// reconcile holds, and the reconcile was carried.
fn assert_carried_as_full(r: &mut Reconciler, before: u64, what: &str) {
    assert_eq!(r.carried_reads, before + 1, "{what}: read in full");
    let (files, may_define, fps) = full_read(r);
    let last = r.last.as_ref().unwrap();
    assert_eq!(last.files, files, "{what}");
    assert_eq!(last.may_define, may_define, "{what}");
    for (src, fp) in r.config.sources.iter().zip(fps) {
        assert_eq!(r.stillness[&src.path].fingerprint, fp, "{what}: {}", src.path.display());
    }
}

#[test]
fn a_configmap_beside_a_plain_source_is_read_whole_when_a_change_is_carried() {
    use crate::source::tests::configmap_publish;
    let f = Fixture::new();
    f.write("a", "profile custom.a {\n}\n");
    let cm = f.dir.path().join("cm");
    configmap_publish(
        &cm,
        "..r1",
        &[("x", "profile custom.x {\n}\n"), ("y", "profile custom.y {\n}\n")],
    );
    let mut c = f.config();
    let mut second = c.sources[0].clone();
    second.path = cm.clone();
    c.sources.push(second);
    let mut r = f.open_with(c);
    let first = r.reconcile().unwrap();
    assert_eq!(first.loaded, ["custom.a", "custom.x", "custom.y"]);

    // A change in the plain source: the ConfigMap is read whole beside it.
    f.write("a", "profile custom.a {\n  # 2\n}\n");
    let before = r.carried_reads;
    let rep = r.reconcile_named(Some([f.src.join("a")].into())).unwrap();
    assert_eq!(rep.replaced, ["custom.a"]);
    assert_carried_as_full(&mut r, before, "plain change");

    // A new ConfigMap revision: one key changed, one gone, one new.
    configmap_publish(
        &cm,
        "..r2",
        &[
            ("x", "profile custom.x {\n  # 2\n}\n"),
            ("z", "profile custom.z {\n}\n"),
        ],
    );
    let _ = std::fs::remove_file(cm.join("y"));
    let before = r.carried_reads;
    let rep = r
        .reconcile_named(Some([cm.join("..data"), cm.join("y"), cm.join("z")].into()))
        .unwrap();
    assert_eq!(rep.replaced, ["custom.x"]);
    assert_eq!(rep.loaded, ["custom.z"]);
    assert_carried_as_full(&mut r, before, "configmap swap");
    // custom.y waits for a second read that agrees, as after a full read.
    assert_eq!(rep.held_for(HeldWhy::Settling), 1, "{:?}", rep.held);
    f.assert_manifest_matches_kernel(&r);
}
