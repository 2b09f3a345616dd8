use super::*;
use std::os::unix::fs::symlink;

fn src(path: &Path) -> SourceConfig {
    SourceConfig {
        path: path.to_owned(),
        layout: LayoutKind::Auto,
        link: None,
        subdir: None,
        signatures: Default::default(),
    }
}
const LIMITS: Limits = Limits {
    max_file_bytes: 1000,
    max_files: 100,
};

fn ok(r: SnapshotResult) -> SourceSnapshot {
    match r {
        SnapshotResult::Ok(s) => s,
        SnapshotResult::Unavailable(u) => panic!("unavailable: {u:?}"),
    }
}
fn names(s: &SourceSnapshot) -> Vec<String> {
    s.files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Build a ConfigMap volume: ..<rev>/keys, ..data -> ..<rev>, key -> ..data/key.
pub(crate) fn configmap_publish(root: &Path, rev: &str, files: &[(&str, &str)]) {
    let d = root.join(rev);
    fs::create_dir_all(&d).unwrap();
    for (k, v) in files {
        fs::write(d.join(k), v).unwrap();
    }
    let tmp = root.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(rev, &tmp).unwrap();
    fs::rename(&tmp, root.join("..data")).unwrap();
    for (k, _) in files {
        let _ = symlink(format!("..data/{k}"), root.join(k));
    }
}

fn gitsync_publish(root: &Path, hash: &str, files: &[(&str, &str)]) {
    let d = root.join(".worktrees").join(hash);
    fs::create_dir_all(&d).unwrap();
    for (k, v) in files {
        fs::write(d.join(k), v).unwrap();
    }
    let tmp = root.join("tmp-link");
    let _ = fs::remove_file(&tmp);
    symlink(format!(".worktrees/{hash}"), &tmp).unwrap();
    fs::rename(&tmp, root.join("current")).unwrap();
}

#[test]
fn plain_layout_reads_files_and_skips_leftovers() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    for n in [
        "a",
        "b",
        ".hidden",
        "c~",
        "d.dpkg-old",
        "e.rpmnew",
        ".#lock",
        "README.md",
        "#x#",
    ] {
        fs::write(p.join(n), "profile x {}\n").unwrap();
    }
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("sub/inner"), "x").unwrap();
    let s = ok(snapshot(&src(p), &LIMITS));
    assert_eq!(s.layout, Layout::Plain);
    assert_eq!(names(&s), ["a", "b"]);
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert_eq!(s.files[0].sha256, sha256_hex(b"profile x {}\n"));
    assert_eq!(*s.files[0].path, *p.join("a"));
}

#[test]
fn configmap_layout_reads_through_data_link() {
    let t = tempfile::tempdir().unwrap();
    configmap_publish(t.path(), "..2026_01_01", &[("p1", "one"), ("p2", "two")]);
    let s = ok(snapshot(&src(t.path()), &LIMITS));
    assert_eq!(s.layout, Layout::Configmap);
    assert_eq!(names(&s), ["p1", "p2"]);
    assert_eq!(*s.files[0].path, *t.path().join("p1"));
    assert_eq!(s.revision.as_deref(), Some(Path::new("..2026_01_01")));
}

#[test]
fn git_sync_layout_from_root_and_from_link() {
    let t = tempfile::tempdir().unwrap();
    gitsync_publish(t.path(), "abc", &[("p1", "one")]);
    fs::create_dir_all(t.path().join(".worktrees/abc/profiles")).unwrap();
    fs::write(t.path().join(".worktrees/abc/profiles/q"), "q").unwrap();
    let s = ok(snapshot(&src(t.path()), &LIMITS));
    assert_eq!(s.layout, Layout::GitSync);
    assert_eq!(names(&s), ["p1"]);
    assert_eq!(*s.files[0].path, *t.path().join("current/p1"));
    // The configured path is the link itself, with a subdirectory.
    let mut c = src(&t.path().join("current"));
    c.subdir = Some("profiles".into());
    let s = ok(snapshot(&c, &LIMITS));
    assert_eq!(s.layout, Layout::GitSync);
    assert_eq!(names(&s), ["q"]);
    assert_eq!(*s.files[0].path, *t.path().join("current/profiles/q"));
}

#[test]
fn git_sync_before_first_publish_is_unavailable_not_empty() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir(t.path().join(".worktrees")).unwrap();
    match snapshot(&src(t.path()), &LIMITS) {
        SnapshotResult::Unavailable(u) => assert!(u.reason.contains("git-sync"), "{u:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_and_non_directory_sources_are_unavailable() {
    let t = tempfile::tempdir().unwrap();
    match snapshot(&src(&t.path().join("nope")), &LIMITS) {
        SnapshotResult::Unavailable(u) => assert_eq!(u.reason, "does not exist"),
        other => panic!("{other:?}"),
    }
    fs::write(t.path().join("file"), "x").unwrap();
    match snapshot(&src(&t.path().join("file")), &LIMITS) {
        SnapshotResult::Unavailable(u) => assert_eq!(u.reason, "is not a directory"),
        other => panic!("{other:?}"),
    }
    let mut c = src(t.path());
    c.layout = LayoutKind::Configmap;
    match snapshot(&c, &LIMITS) {
        SnapshotResult::Unavailable(u) => assert!(u.reason.contains("..data"), "{u:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_refusal_kind_has_its_message() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("src");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("big"), vec![b'a'; 1001]).unwrap();
    fs::write(root.join("latin1"), b"profile \xe9 {}").unwrap();
    fs::write(root.join("nul"), b"profile a {}\0").unwrap();
    fs::write(t.path().join("outside"), "x").unwrap();
    symlink(t.path().join("outside"), root.join("escape")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    fs::write(root.join("target"), "ok").unwrap();
    symlink("target", root.join("inside")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let s = ok(snapshot(&src(&root), &LIMITS));
    assert_eq!(names(&s), ["inside", "target"]);
    let got: Vec<(String, &str)> = s
        .refused
        .iter()
        .map(|r| {
            (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason.as_str(),
            )
        })
        .collect();
    let want = [
        ("big", "1001 bytes is over the limit of 1000 bytes (max_file_bytes)"),
        ("dangling", "dangling symlink"),
        ("escape", "symlink leaves the source root"),
        ("fifo", "not a regular file"),
        ("latin1", "not UTF-8 (invalid byte at offset 8)"),
        ("nul", "contains a NUL byte at offset 12"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((gn, gr), (wn, wr)) in got.iter().zip(want) {
        assert_eq!(gn, wn);
        assert!(gr.starts_with(wr), "{gn}: {gr}");
    }
}

#[test]
fn too_many_files_refuses_the_rest_by_name() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..5 {
        fs::write(t.path().join(format!("p{i}")), "x").unwrap();
    }
    let s = ok(snapshot(
        &src(t.path()),
        &Limits {
            max_file_bytes: 10,
            max_files: 3,
        },
    ));
    assert_eq!(names(&s), ["p0", "p1", "p2"]);
    assert_eq!(s.refused.len(), 2);
    assert_eq!(s.refused[0].path, t.path().join("p3"));
    assert_eq!(s.refused[0].reason, "the source holds more than 3 files (max_profiles)");
}

/// Swap the link back and forth as fast as possible while snapshots are
/// taken; each snapshot must hold one revision's files, never a mix. Only
/// a snapshot that a swap overlapped (one was made between its start and
/// its end) tests that: snapshots are taken until enough of them were,
/// and too few within the cap fails the test.
fn swap_race(publish: fn(&Path, &str, &[(&str, &str)]), cleanup: fn(&Path, &str)) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const OVERLAPS: usize = 20;
    const CAP: usize = 20_000;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_owned();
    let files_a: Vec<(String, String)> = (0..30).map(|i| (format!("p{i:02}"), "rev-a".to_owned())).collect();
    let files_b: Vec<(String, String)> = (0..30).map(|i| (format!("p{i:02}"), "rev-b".to_owned())).collect();
    let as_ref = |v: &Vec<(String, String)>| v.iter().map(|(a, b)| (a.clone(), b.clone())).collect::<Vec<_>>();
    let fa = as_ref(&files_a);
    let fa: Vec<(&str, &str)> = fa.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    publish(&root, "rev0", &fa);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swaps = std::sync::Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let root = root.clone();
        std::thread::spawn(move || {
            let mut n = 1u32;
            while !stop.load(Ordering::Relaxed) {
                let files = if n.is_multiple_of(2) { &files_a } else { &files_b };
                let f: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let rev = format!("rev{n}");
                publish(&root, &rev, &f);
                swaps.fetch_add(1, Ordering::SeqCst);
                // Delete the previous revision, as the tools do.
                cleanup(&root, &format!("rev{}", n - 1));
                n += 1;
            }
        })
    };
    let cfg = src(&root);
    let (mut seen, mut overlapped, mut tries) = (0, 0, 0);
    while overlapped < OVERLAPS && tries < CAP {
        tries += 1;
        let before = swaps.load(Ordering::SeqCst);
        let r = snapshot(&cfg, &LIMITS);
        let during = swaps.load(Ordering::SeqCst) != before;
        if let SnapshotResult::Ok(s) = r {
            let contents: std::collections::BTreeSet<&str> = s.files.iter().map(|f| &*f.content).collect();
            assert_eq!(s.files.len(), 30, "a snapshot lost files: {:?}", s.revision);
            assert_eq!(contents.len(), 1, "mixed revisions: {contents:?}");
            seen += 1;
            overlapped += usize::from(during);
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        overlapped >= OVERLAPS,
        "only {overlapped} of {seen} snapshots ({tries} tries) overlapped a swap"
    );
}

#[test]
fn configmap_swap_during_snapshot_never_mixes() {
    swap_race(
        |root, rev, files| configmap_publish(root, &format!("..{rev}"), files),
        |root, rev| {
            let _ = fs::remove_dir_all(root.join(format!("..{rev}")));
        },
    );
}

#[test]
fn git_sync_swap_during_snapshot_never_mixes() {
    swap_race(gitsync_publish, |root, rev| {
        let _ = fs::remove_dir_all(root.join(".worktrees").join(rev));
    });
}

#[test]
fn read_cache_serves_settled_files_and_sees_every_change() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
    fs::write(p.join("b"), "profile custom.b {}\n").unwrap();
    let contents = |s: SourceSnapshot| -> Vec<String> { s.files.into_iter().map(|f| f.content.to_string()).collect() };

    // Just written: not settled, so not kept.
    let mut cache = ReadCache::default();
    ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    assert!(cache.is_empty());

    // Settled (as if read later): kept, and served from the cache.
    cache.skew = Duration::from_secs(10);
    let first = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
    assert_eq!(cache.len(), 2);
    assert_eq!(contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache))), first);

    // Same size, rewritten in place: seen.
    fs::write(p.join("a"), "profile custom.x {}\n").unwrap();
    // Replaced by a rename: seen.
    fs::write(p.join(".b.new"), "profile custom.y {}\n").unwrap();
    fs::rename(p.join(".b.new"), p.join("b")).unwrap();
    // Removed and added.
    fs::write(p.join("c"), "profile custom.c {}\n").unwrap();
    let now = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
    assert_eq!(
        now,
        [
            "profile custom.x {}\n",
            "profile custom.y {}\n",
            "profile custom.c {}\n"
        ]
    );
    fs::remove_file(p.join("a")).unwrap();
    let now = contents(ok(snapshot_cached(&src(p), &LIMITS, &mut cache)));
    assert_eq!(now, ["profile custom.y {}\n", "profile custom.c {}\n"]);
    assert_eq!(cache.len(), 2);

    // A file grown past the limit is refused even though it was cached.
    fs::write(p.join("c"), "x".repeat(100)).unwrap();
    let tight = Limits {
        max_file_bytes: 50,
        max_files: 10,
    };
    let s = ok(snapshot_cached(&src(p), &tight, &mut cache));
    assert_eq!(s.refused.len(), 1);
}

#[test]
fn a_file_served_from_the_cache_shares_its_path_and_text() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
    let mut cache = settled_cache(p);
    let first = ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    let again = ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    // One copy of each, however many reads (and plans, and manifest
    // entries made from them) hold the file.
    assert!(std::sync::Arc::ptr_eq(&first.files[0].path, &again.files[0].path));
    assert!(std::sync::Arc::ptr_eq(&first.files[0].content, &again.files[0].content));
    // A changed file is read again: new text, the path as it was.
    fs::write(p.join("a"), "profile custom.b {}\n").unwrap();
    let changed = ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    assert_eq!(&*changed.files[0].content, "profile custom.b {}\n");
    assert_eq!(*changed.files[0].path, *p.join("a"));
}

#[test]
fn hostile_source_layouts() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    // The source is a symlink loop.
    symlink(p.join("loop"), p.join("loop")).unwrap();
    match snapshot(&src(&p.join("loop")), &LIMITS) {
        SnapshotResult::Unavailable(u) => assert!(u.reason.contains("symbolic links"), "{u:?}"),
        other => panic!("{other:?}"),
    }
    // A file in it is a symlink loop, or a 10 MiB file: refused by name;
    // the 10 MiB file is never read (its size is enough).
    let root = p.join("src");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("good"), "profile custom.good {}\n").unwrap();
    symlink(root.join("self"), root.join("self")).unwrap();
    fs::File::create(root.join("huge")).unwrap().set_len(10 << 20).unwrap();
    let s = ok(snapshot(&src(&root), &LIMITS));
    assert_eq!(names(&s), ["good"]);
    let reasons: Vec<String> = s
        .refused
        .iter()
        .map(|r| format!("{}: {}", r.path.display(), r.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].ends_with("huge: 10485760 bytes is over the limit of 1000 bytes (max_file_bytes)"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("self: cannot resolve symlink") && reasons[1].contains("symbolic links"),
        "{reasons:?}"
    );
}

#[test]
fn mode_000_source_and_file() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("src");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("a"), "profile custom.a {}\n").unwrap();
    fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o000)).unwrap();
    let result = snapshot(&src(&root), &LIMITS);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    if nix::unistd::geteuid().is_root() {
        // armord runs as root: permissions do not hide a source from it.
        assert_eq!(names(&ok(result)), ["a"]);
    } else {
        match result {
            SnapshotResult::Unavailable(u) => assert!(u.reason.contains("Permission denied"), "{u:?}"),
            other => panic!("{other:?}"),
        }
        let s = ok(snapshot(&src(&root), &LIMITS));
        assert!(s.refused[0].reason.contains("Permission denied"), "{s:?}");
    }
}

#[test]
fn a_hundred_thousand_files_are_refused_past_the_limit_unread() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    for i in 0..100_000 {
        fs::write(root.join(format!("p{i:06}")), "").unwrap();
    }
    let limits = Limits {
        max_file_bytes: 1000,
        max_files: 1000,
    };
    // Files past the limit are not examined: a FIFO there would be
    // refused as "not a regular file" if it were.
    fs::remove_file(root.join("p099999")).unwrap();
    nix::unistd::mkfifo(&root.join("p099999"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let s = ok(snapshot(&src(root), &limits));
    assert_eq!(s.files.len(), 1000);
    assert_eq!(s.refused.len(), 99_000);
    assert!(s.refused.iter().all(|r| r.reason.contains("more than 1000 files")));
    assert_eq!(s.refused[0].path, root.join("p001000"));
}

#[test]
fn skip_rules() {
    for n in [
        ".x",
        "..data",
        "a~",
        "a.dpkg-new",
        "a.dpkg-old",
        "a.rpmsave",
        ".#a",
        "#a#",
        "x.md",
    ] {
        assert!(skipped_name(n), "{n}");
    }
    for n in ["usr.bin.foo", "custom.nginx", "a.profile"] {
        assert!(!skipped_name(n), "{n}");
    }
}

fn named(p: &Path, names: &[&str]) -> BTreeSet<PathBuf> {
    names.iter().map(|n| p.join(n)).collect()
}

/// A cache filled by a full read, with every file settled.
fn settled_cache(p: &Path) -> ReadCache {
    let mut cache = ReadCache {
        skew: Duration::from_secs(10),
        ..Default::default()
    };
    ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    cache
}

#[test]
fn a_named_read_looks_only_at_the_named_files_and_trusts_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    for n in ["a", "b", "c"] {
        fs::write(p.join(n), format!("profile custom.{n} {{}}\n")).unwrap();
    }
    let mut cache = settled_cache(p);
    assert_eq!(cache.len(), 3);

    // Reported: b rewritten, c removed, d added. Not reported: a rewritten
    // (no event can come for it, so the read must not look: proof that
    // unreported files are not even stat'ed).
    fs::write(p.join("a"), "profile custom.changed {}\n").unwrap();
    fs::write(p.join("b"), "profile custom.b2 {}\n").unwrap();
    fs::remove_file(p.join("c")).unwrap();
    fs::write(p.join("d"), "profile custom.d {}\n").unwrap();
    let s = ok(snapshot_named(
        &src(p),
        &LIMITS,
        &mut cache,
        Some(&named(p, &["b", "c", "d"])),
    ));
    assert_eq!(names(&s), ["a", "b", "d"]);
    assert_eq!(
        &*s.files[0].content, "profile custom.a {}\n",
        "a was trusted from the cache"
    );
    assert_eq!(&*s.files[1].content, "profile custom.b2 {}\n");

    // A full read (no names) sees a's change.
    let s = ok(snapshot_named(&src(p), &LIMITS, &mut cache, None));
    assert_eq!(&*s.files[0].content, "profile custom.changed {}\n");
}

#[test]
fn a_source_at_exactly_the_limit_is_read_by_name_and_one_past_it_in_full() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let limits = Limits {
        max_file_bytes: 100,
        max_files: 3,
    };
    for n in ["a", "b", "c"] {
        fs::write(p.join(n), format!("profile custom.{n} {{}}\n")).unwrap();
    }
    let mut cache = ReadCache {
        skew: Duration::from_secs(10),
        ..Default::default()
    };
    ok(snapshot_cached(&src(p), &limits, &mut cache));
    // At the limit: a change is read by its name (a is not looked at).
    fs::write(p.join("a"), "profile custom.unseen {}\n").unwrap();
    fs::write(p.join("b"), "profile custom.b2 {}\n").unwrap();
    let d = snapshot_delta(&src(p), &limits, &mut cache, &named(p, &["b"])).expect("a read by name at the limit");
    assert_eq!(d.files.len(), 1);
    assert_eq!(&*d.files[0].content, "profile custom.b2 {}\n");
    // One past it: only a full read knows which file is refused.
    fs::write(p.join("d"), "profile custom.d {}\n").unwrap();
    assert!(snapshot_delta(&src(p), &limits, &mut cache, &named(p, &["d"])).is_none());
    let s = ok(snapshot_named(&src(p), &limits, &mut cache, Some(&named(p, &["d"]))));
    assert_eq!(s.files.len(), 3);
    assert_eq!(s.refused.len(), 1, "{:?}", s.refused);
    assert!(s.refused[0].reason.contains("(max_profiles)"), "{:?}", s.refused);
}

#[test]
fn a_reported_path_that_is_not_a_plain_entry_makes_it_a_full_read() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let p = root.join("src");
    fs::create_dir(&p).unwrap();
    // The directory itself (IN_DELETE_SELF, IN_IGNORED), its parent, an
    // entry of a subdirectory: each is a reason to look at every file.
    for (i, path) in [p.clone(), root.to_owned(), p.join("sub").join("x")]
        .into_iter()
        .enumerate()
    {
        fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
        let mut cache = settled_cache(&p);
        let changed = format!("profile custom.changed{i} {{}}\n");
        fs::write(p.join("a"), &changed).unwrap();
        let s = ok(snapshot_named(
            &src(&p),
            &LIMITS,
            &mut cache,
            Some(&[path.clone()].into()),
        ));
        assert_eq!(&*s.files[0].content, changed, "{}", path.display());
    }
}

#[test]
fn a_file_read_through_a_symlink_is_looked_at_although_not_reported() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir(p.join("targets")).unwrap();
    fs::write(p.join("targets/x"), "profile custom.x {}\n").unwrap();
    symlink("targets/x", p.join("x")).unwrap();
    fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
    let mut cache = settled_cache(p);
    // The link's target changes: no event in the source directory.
    fs::write(p.join("targets/x"), "profile custom.x2 {}\n").unwrap();
    let s = ok(snapshot_named(&src(p), &LIMITS, &mut cache, Some(&named(p, &["a"]))));
    assert_eq!(
        s.files.iter().find(|f| f.path.ends_with("x")).unwrap().content.as_ref(),
        "profile custom.x2 {}\n"
    );
}

#[test]
fn a_file_read_while_fresh_is_trusted_only_by_a_read_of_reported_names() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::write(p.join("a"), "profile custom.a {}\n").unwrap();
    fs::write(p.join("b"), "profile custom.b {}\n").unwrap();
    // Just written: a full read does not serve it by its timestamps, which
    // may not tell a rewrite within the same tick.
    let mut cache = ReadCache::default();
    ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    assert!(cache.is_empty());
    // A read of reported names serves it from memory: its next change has
    // an event of its own.
    fs::write(p.join("a"), "profile custom.a2 {}\n").unwrap();
    let s = ok(snapshot_named(&src(p), &LIMITS, &mut cache, Some(&named(p, &["b"]))));
    assert_eq!(&*s.files[0].content, "profile custom.a {}\n");
    let s = ok(snapshot_named(&src(p), &LIMITS, &mut cache, Some(&named(p, &["a"]))));
    assert_eq!(&*s.files[0].content, "profile custom.a2 {}\n");
    // A full read looks at it again.
    fs::write(p.join("a"), "profile custom.a3 {}\n").unwrap();
    let s = ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
    assert_eq!(&*s.files[0].content, "profile custom.a3 {}\n");
}

mod named_reads {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Write(u8, u8),
        Remove(u8),
        Rename(u8, u8),
        Link(u8, u8),
        Dir(u8),
        Bad(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..8, 0u8..4).prop_map(|(n, v)| Op::Write(n, v)),
            2 => (0u8..8).prop_map(Op::Remove),
            2 => (0u8..8, 0u8..8).prop_map(|(a, b)| Op::Rename(a, b)),
            1 => (0u8..8, 0u8..8).prop_map(|(a, b)| Op::Link(a, b)),
            1 => (0u8..8).prop_map(Op::Dir),
            1 => (0u8..8).prop_map(Op::Bad),
        ]
    }

    fn name(n: u8) -> String {
        format!("f{n}")
    }

    /// Apply `op` in `p`; the names inotify would report for it.
    fn apply(p: &Path, op: &Op) -> Vec<String> {
        let clear = |n: &str| {
            let path = p.join(n);
            if path.is_dir() && !path.is_symlink() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        };
        match *op {
            Op::Write(n, v) => {
                clear(&name(n));
                fs::write(p.join(name(n)), format!("profile custom.{n}.{v} {{}}\n")).unwrap();
                vec![name(n)]
            }
            Op::Remove(n) => {
                clear(&name(n));
                vec![name(n)]
            }
            Op::Rename(a, b) => {
                if a != b && p.join(name(a)).symlink_metadata().is_ok() {
                    clear(&name(b));
                    fs::rename(p.join(name(a)), p.join(name(b))).unwrap();
                }
                vec![name(a), name(b)]
            }
            Op::Link(a, b) => {
                clear(&name(a));
                symlink(name(b), p.join(name(a))).unwrap();
                vec![name(a)]
            }
            Op::Dir(n) => {
                clear(&name(n));
                fs::create_dir(p.join(name(n))).unwrap();
                vec![name(n)]
            }
            Op::Bad(n) => {
                clear(&name(n));
                fs::write(p.join(name(n)), b"\xff\xfe not text").unwrap();
                vec![name(n)]
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever happens in a plain directory, a read of only the names
        /// reported since the last read finds what a full read finds.
        #[test]
        fn a_named_read_equals_a_full_read(steps in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..12), settled in any::<bool>()) {
            let t = tempfile::tempdir().unwrap();
            let p = t.path();
            let mut cache = ReadCache {
                skew: if settled { Duration::from_secs(10) } else { Duration::ZERO },
                ..Default::default()
            };
            ok(snapshot_cached(&src(p), &LIMITS, &mut cache));
            for batch in steps {
                let mut reported = BTreeSet::new();
                for o in &batch {
                    reported.extend(apply(p, o).into_iter().map(|n| p.join(n)));
                }
                let by_name = ok(snapshot_named(&src(p), &LIMITS, &mut cache, Some(&reported)));
                let full = ok(snapshot(&src(p), &LIMITS));
                prop_assert_eq!(&by_name.files, &full.files, "after {:?}", batch);
                prop_assert_eq!(&by_name.refused, &full.refused, "after {:?}", batch);
            }
        }
    }
}

#[test]
fn a_path_through_a_swapping_link_is_told_the_configuration_that_follows_it() {
    let t = tempfile::tempdir().unwrap();
    configmap_publish(&t.path().join("cm"), "..2026_1", &[("p", "profile custom.a {}\n")]);
    std::fs::create_dir_all(t.path().join("cm/..2026_1/sub")).unwrap();
    gitsync_publish(&t.path().join("gs"), "abc", &[("p", "profile custom.b {}\n")]);
    std::fs::create_dir_all(t.path().join("gs/.worktrees/abc/apparmor")).unwrap();
    let advice = |p: &str| crate::source::swapping_link_advice(&src(&t.path().join(p)));
    let a = advice("cm/..data/sub").unwrap();
    assert!(
        a.contains("ConfigMap link")
            && a.ends_with(&format!(
                "path = \"{}\", subdir = \"sub\"",
                t.path().join("cm").display()
            )),
        "{a}"
    );
    let a = advice("cm/..data").unwrap();
    assert!(
        a.ends_with(&format!("path = \"{}\"", t.path().join("cm").display())),
        "{a}"
    );
    let a = advice("gs/current/apparmor").unwrap();
    assert!(
        a.contains("git-sync link")
            && a.ends_with(&format!(
                "path = \"{}\", link = \"current\", subdir = \"apparmor\"",
                t.path().join("gs").display()
            )),
        "{a}"
    );
    // The documented forms, and a plain directory, need no advice.
    for ok in ["cm", "gs", "gs/current"] {
        assert_eq!(advice(ok), None, "{ok}");
    }
}
