//! Micro benchmarks (criterion) of the steps on the path from a change to
//! the parser: reading a source, planning, and parsing an audit line.
//!
//! Run: `cargo bench --bench micro`.

use armord::config::{LayoutKind, RemoveInUse, SourceConfig};
use armord::reconcile::{Desired, DesiredFile, Policy, Verdict, plan};
use armord::source::{Limits, ReadCache, SnapshotResult, snapshot, snapshot_cached, snapshot_named};
use armord::state::{Manifest, Owned};
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

const PROFILES: usize = 1000;

const LIMITS: Limits = Limits {
    max_file_bytes: 1 << 20,
    max_files: 10_000,
};

fn source_tree() -> (tempfile::TempDir, SourceConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..PROFILES {
        std::fs::write(
            dir.path().join(format!("p{i:04}")),
            format!("profile custom.p{i:04} {{\n  /etc/hostname r,\n  /var/lib/app{i}/** rw,\n}}\n"),
        )
        .expect("write profile");
    }
    let cfg = SourceConfig {
        path: dir.path().to_owned(),
        layout: LayoutKind::Auto,
        link: None,
        subdir: None,
        signatures: Default::default(),
    };
    (dir, cfg)
}

fn files(r: SnapshotResult) -> usize {
    match r {
        SnapshotResult::Ok(s) => s.files.len(),
        SnapshotResult::Unavailable(u) => panic!("{u:?}"),
    }
}

fn bench_snapshot(c: &mut Criterion) {
    let (_dir, cfg) = source_tree();
    // Files changed in the last two seconds are always read again.
    std::thread::sleep(Duration::from_millis(2100));
    let mut g = c.benchmark_group("snapshot");
    g.bench_function("1000 files, every file read", |b| {
        b.iter(|| assert_eq!(files(snapshot(black_box(&cfg), &LIMITS)), PROFILES));
    });
    let mut cache = ReadCache::default();
    files(snapshot_cached(&cfg, &LIMITS, &mut cache));
    assert_eq!(cache.len(), PROFILES);
    g.bench_function("1000 files, none changed (read cache)", |b| {
        b.iter(|| assert_eq!(files(snapshot_cached(black_box(&cfg), &LIMITS, &mut cache)), PROFILES));
    });
    // One file reported by inotify: the others come from the cache unread.
    let named: std::collections::BTreeSet<PathBuf> = [cfg.path.join("p0500")].into();
    g.bench_function("1000 files, one reported by name", |b| {
        b.iter(|| {
            assert_eq!(
                files(snapshot_named(black_box(&cfg), &LIMITS, &mut cache, Some(&named))),
                PROFILES
            );
        });
    });
    g.finish();
}

fn bench_plan(c: &mut Criterion) {
    let mut desired = Desired {
        configured: vec![PathBuf::from("/src")],
        ..Default::default()
    };
    let mut manifest = Manifest::new();
    let mut kernel = BTreeMap::new();
    for i in 0..PROFILES {
        let name = format!("custom.p{i:04}");
        let sha = format!("{i:064x}");
        let file: std::sync::Arc<std::path::Path> = PathBuf::from(format!("/src/p{i:04}")).into();
        desired.files.push(DesiredFile {
            path: file.clone(),
            source: std::path::Path::new("/src").into(),
            sha256: sha.clone().into(),
            verdict: Verdict::Valid {
                names: vec![name.clone()].into(),
            },
        });
        manifest.profiles.insert(
            name.clone(),
            Owned {
                file,
                source: std::path::Path::new("/src").into(),
                sha256: sha.into(),
                complain: false,
                mode: "enforce".into(),
            },
        );
        kernel.insert(name, armord::apparmor::Mode::Enforce);
    }
    // One file changed.
    desired.files[500].sha256 = "f".repeat(64).into();
    let policy = Policy {
        prefix: "",
        takeover: false,
        remove_in_use: RemoveInUse::Defer,
        complain: false,
        removal: armord::reconcile::RemovalRules::IMMEDIATE,
    };
    let in_use = BTreeMap::new();
    c.bench_function("plan: 1000 profiles, one changed", |b| {
        b.iter(|| {
            let p = plan(black_box(&desired), &manifest, &kernel, &in_use, &policy);
            assert_eq!(p.loads.len(), 1);
        });
    });
}

fn bench_audit(c: &mut Criterion) {
    let line = r#"type=AVC msg=audit(1700000000.123:4567): apparmor="DENIED" operation="open" profile="custom.app" name="/etc/secret" pid=4242 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    c.bench_function("audit::parse: one file denial", |b| {
        b.iter(|| armord::audit::parse(black_box(line)).is_ok());
    });
}

/// Judging a compiled file: its policy read (names, modes, attachment
/// DFAs) and held to the bounds, for every profile Debian ships, as the
/// real parser compiles them; beside reading the names alone.
fn bench_compiled(c: &mut Criterion) {
    use armord::apparmor::{default_features_file, read_policy};
    let (Some(features), true) = (
        default_features_file(),
        std::path::Path::new("/usr/sbin/apparmor_parser").exists(),
    ) else {
        eprintln!("no apparmor_parser: compiled-policy benchmarks skipped");
        return;
    };
    let mut sets: Vec<Vec<u8>> = Vec::new();
    for dir in ["/etc/apparmor.d", "/usr/share/apparmor/extra-profiles"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let out = std::process::Command::new("/usr/sbin/apparmor_parser")
                .arg("-M")
                .arg(&features)
                .arg("-S")
                .arg(e.path())
                .output();
            if let Ok(o) = out
                && o.status.success()
                && read_policy(&o.stdout).is_ok_and(|p| !p.is_empty())
            {
                sets.push(o.stdout);
            }
        }
    }
    let profiles: usize = sets.iter().map(|s| read_policy(s).map_or(0, |p| p.len())).sum();
    let bytes: usize = sets.iter().map(Vec::len).sum();
    eprintln!("compiled: {} files, {profiles} profiles, {bytes} bytes", sets.len());
    let bounded = armord::reconcile::Bounds::new(
        armord::config::ForcedMode::Enforce,
        Some(vec!["/usr/**".into(), "/opt/**".into(), "/{,s}bin/*".into()]),
    );
    let mut g = c.benchmark_group("compiled");
    g.bench_function("names of every Debian profile", |b| {
        b.iter(|| {
            sets.iter()
                .map(|s| armord::apparmor::names_in_policy(black_box(s)).map_or(0, |n| n.len()))
                .sum::<usize>()
        });
    });
    g.bench_function("read and judge every Debian profile (enforce, globs)", |b| {
        b.iter(|| {
            sets.iter()
                .filter(|s| read_policy(black_box(s)).is_ok_and(|p| bounded.judge(&p).is_ok()))
                .count()
        });
    });
    g.finish();
}

criterion_group!(benches, bench_snapshot, bench_plan, bench_audit, bench_compiled);
criterion_main!(benches);
