//! The real apparmor_parser through `ParserRunner` (compile-only, no kernel).

mod common;
use armord::apparmor::{LoadOptions, Parser, ParserRunner, default_features_file, names_in_policy};
use common::*;
use std::time::Duration;

fn runner(t: &Tree) -> Option<ParserRunner> {
    let program = real_parser()?;
    Some(ParserRunner {
        program,
        timeout: Duration::from_secs(60),
        jobs: 0,
        cache_dir: t.path("cache"),
        features_file: default_features_file(),
        scratch_dir: t.path("tmp"),
        direct: None,
    })
}

#[test]
fn valid_profile_compiles_and_names_come_back() {
    let t = Tree::new();
    let Some(p) = runner(&t) else { return };
    let a = t.write("a", "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.a {\n  include <abstractions/base>\n  profile child { }\n}\nprofile custom.b { }\n");
    let b = t.write("b", "profile custom.c flags=(complain) { /tmp/** rw, }\n");
    p.compile(&[a.clone(), b.clone()], LoadOptions::default()).unwrap();
    let names = p.names(&[a, b]).unwrap();
    assert_eq!(names[0].as_ref().unwrap(), &["custom.a", "custom.a//child", "custom.b"]);
    assert_eq!(names[1].as_ref().unwrap(), &["custom.c"]);
}

#[test]
fn broken_profile_gives_line_and_message() {
    let t = Tree::new();
    let Some(p) = runner(&t) else { return };
    let bad = t.write("bad", "profile custom.bad {\n  /etc/** r,\n  /etc/x rwz,\n}\n");
    let e = p
        .compile(std::slice::from_ref(&bad), LoadOptions::default())
        .unwrap_err();
    let d = &e.diagnostics()[0];
    assert_eq!(d.file.as_deref(), Some(bad.as_path()));
    assert_eq!(d.line, Some(3));
    assert!(!d.message.is_empty(), "{d:?}");
    // In a batch with a good file, --names still answers per file.
    let good = t.write("good", "profile custom.good { }\n");
    let names = p.names(&[good, bad]).unwrap();
    assert_eq!(names[0].as_ref().unwrap(), &["custom.good"]);
    assert!(names[1].is_err());
}

#[test]
fn debian_profiles_all_compile_in_one_batch() {
    let t = Tree::new();
    let Some(p) = runner(&t) else { return };
    let files: Vec<_> = std::fs::read_dir("/etc/apparmor.d")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    assert!(files.len() > 5);
    p.compile(&files, LoadOptions::default()).unwrap();
    let names = p.names(&files).unwrap();
    assert_eq!(names.len(), files.len());
    assert!(names.iter().all(|n| n.as_ref().is_ok_and(|n| !n.is_empty())));
    // What the compile left in the cache holds the same names, in order.
    assert_eq!(
        compiled_names(&t, &files),
        names.into_iter().map(Result::unwrap).collect::<Vec<_>>()
    );
}

/// The names read from each file's compiled policy in the runner's cache.
fn compiled_names(t: &Tree, files: &[std::path::PathBuf]) -> Vec<Vec<String>> {
    let subdirs: Vec<_> = std::fs::read_dir(t.path("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        subdirs.len(),
        1,
        "one cache directory for one features file: {subdirs:?}"
    );
    files
        .iter()
        .map(|f| {
            let policy = std::fs::read(subdirs[0].join(f.file_name().unwrap())).unwrap();
            names_in_policy(&policy).unwrap_or_else(|| panic!("{}: compiled policy not read", f.display()))
        })
        .collect()
}

#[test]
fn names_in_compiled_policy_agree_with_the_parser_on_every_extra_profile() {
    let t = Tree::new();
    let Some(p) = runner(&t) else { return };
    let Ok(dir) = std::fs::read_dir("/usr/share/apparmor/extra-profiles") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install apparmor-profiles: /usr/share/apparmor/extra-profiles is missing"
        );
        eprintln!("apparmor-profiles not installed: skipped");
        return;
    };
    let mut files: Vec<_> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README"))
        .collect();
    files.sort();
    // Those this parser compiles (some need rules of a newer one): one run
    // over all, which leaves the good ones in the cache.
    let names = p.names(&files).unwrap();
    let _ = p.compile(&files, LoadOptions::default());
    let cached = |f: &std::path::PathBuf| {
        std::fs::read_dir(t.path("cache"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join(f.file_name().unwrap()).is_file())
    };
    let (files, names): (Vec<_>, Vec<_>) = files
        .into_iter()
        .zip(names)
        .filter_map(|(f, n)| Some((f, n.ok()?)))
        .filter(|(f, _)| cached(f))
        .unzip();
    assert!(files.len() > 20, "{} extra profiles compiled", files.len());
    assert_eq!(compiled_names(&t, &files), names);
}
