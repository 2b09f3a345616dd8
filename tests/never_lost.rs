//! "A good profile is never lost": renames of invalid files, short-lived
//! and empty revisions, mass removals, forged output lines and byte-order
//! marks, through the real `armord --once --simulate`.

mod common;
use common::*;
use std::os::unix::fs::symlink;

const A: &str = "profile custom.a { /tmp/** rw, }\n";
const A_BROKEN: &str = "profile custom.a { /tmp/** rwzz, }\n";

fn loaded(t: &Tree) -> String {
    t.read("state/simulate/profiles")
}

/// Removals settle in 100 ms, so that a test of them stays short.
fn quick_settle(t: &Tree, extra: &str) {
    t.write("none.toml", &format!("removal_settle_ms = 100\n{extra}"));
}

#[test]
fn renaming_an_invalid_file_keeps_the_good_profile() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/custom.a", A);
    assert_eq!(once_sim(&t, "src").status.code(), Some(0));
    t.write("src/custom.a", A_BROKEN);
    let out = once_sim(&t, "src");
    assert!(text(&out).contains("kept: custom.a"), "{}", text(&out));
    std::fs::rename(t.path("src/custom.a"), t.path("src/custom.a2")).unwrap();
    let out = once_sim(&t, "src");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(!s.contains("removed:"), "{s}");
    assert!(s.contains("kept: custom.a"), "{s}");
    assert_eq!(loaded(&t), "custom.a (enforce)\n");

    // The renamed file is not UTF-8: it still names custom.a.
    std::fs::write(t.path("src/custom.a2"), b"profile custom.a { /tmp/** rw, } # \xff\n").unwrap();
    std::fs::rename(t.path("src/custom.a2"), t.path("src/custom.a3")).unwrap();
    let s = text(&once_sim(&t, "src"));
    assert!(s.contains("not UTF-8"), "{s}");
    assert!(!s.contains("removed:"), "{s}");
    assert_eq!(loaded(&t), "custom.a (enforce)\n");

    // A valid file renamed and broken in the same step.
    std::fs::remove_file(t.path("src/custom.a3")).unwrap();
    t.write("src/b", "profile custom.b { /tmp/** r, }\n");
    t.write("src/a", A);
    assert_eq!(once_sim(&t, "src").status.code(), Some(0));
    std::fs::remove_file(t.path("src/a")).unwrap();
    t.write("src/a.renamed", A_BROKEN);
    let s = text(&once_sim(&t, "src"));
    assert!(!s.contains("removed:"), "{s}");
    assert_eq!(loaded(&t), "custom.a (enforce)\ncustom.b (enforce)\n");

    // A file whose names cannot be read at all protects its source.
    std::fs::remove_file(t.path("src/a.renamed")).unwrap();
    t.write("src/garbage", "}}} not a profile {{{\n");
    let s = text(&once_sim(&t, "src"));
    assert!(!s.contains("removed:"), "{s}");
    assert!(s.contains("may define it"), "{s}");
    assert!(loaded(&t).contains("custom.a (enforce)"));
}

#[test]
fn a_removal_waits_for_two_reads_and_a_settled_source() {
    use std::io::{BufRead, Read};
    let t = Tree::new();
    // A second for the source to settle: the first read's hold is looked
    // at well within it.
    t.write("none.toml", "removal_settle_ms = 1000\nmass_removal_percent = 100\n");
    t.write("src/a", A);
    t.write("src/b", "profile custom.b { }\n");
    assert_eq!(once_sim(&t, "src").status.code(), Some(0));
    std::fs::remove_file(t.path("src/a")).unwrap();
    let mut child = KillOnDrop(
        std::process::Command::new(ARMORD)
            .args(["--simulate", "--once", "--verbose", "--bus", "none", "--source"])
            .arg(t.path("src"))
            .arg("--state-dir")
            .arg(t.path("state"))
            .arg("--config")
            .arg(t.path("none.toml"))
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The first read holds the removal, and the kernel still has it.
    let mut log = String::new();
    let mut at_first_read = None;
    for line in std::io::BufReader::new(child.0.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if at_first_read.is_none() && line.contains("removal held until the source settles: custom.a;") {
            at_first_read = Some(loaded(&t));
        }
        log.push_str(&line);
        log.push('\n');
    }
    let mut out = String::new();
    child.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        at_first_read.as_deref(),
        Some("custom.a (enforce)\ncustom.b (enforce)\n"),
        "after the first read:\n{log}{out}"
    );
    // The second read, a second later, removes it.
    assert_eq!(status.code(), Some(0), "{log}{out}");
    assert!(out.contains("removed: custom.a"), "{out}");
    assert_eq!(loaded(&t), "custom.b (enforce)\n");
}

#[test]
fn an_empty_revision_is_a_mass_removal_held_until_allowed() {
    let t = Tree::new();
    quick_settle(&t, "");
    let root = t.path("gs");
    for (rev, files) in [("r1", vec!["a", "b", "c"]), ("r2", vec![])] {
        std::fs::create_dir_all(root.join(".worktrees").join(rev)).unwrap();
        for f in files {
            t.write(
                &format!("gs/.worktrees/{rev}/{f}"),
                &format!("profile custom.{f} {{ }}\n"),
            );
        }
    }
    symlink(".worktrees/r1", root.join("current")).unwrap();
    assert_eq!(once_sim(&t, "gs").status.code(), Some(0));
    // Swap to the empty revision, as git-sync does (a new link renamed over).
    symlink(".worktrees/r2", root.join("next")).unwrap();
    std::fs::rename(root.join("next"), root.join("current")).unwrap();
    let out = once_sim(&t, "gs");
    let s = text(&out);
    assert!(!s.contains("removed:"), "{s}");
    assert!(s.contains("held: custom.a"), "{s}");
    assert!(s.contains("mass removal held: 3 of the 3 profiles"), "{s}");
    assert!(s.contains("--allow-mass-removal"), "{s}");
    assert_ne!(out.status.code(), Some(0), "{s}");
    assert_eq!(loaded(&t).lines().count(), 3);

    // The operator lets it through.
    let out = run(
        ARMORD,
        &[
            "--simulate",
            "--once",
            "--allow-mass-removal",
            "--bus",
            "none",
            "--source",
            root.to_str().unwrap(),
            "--state-dir",
            t.path("state").to_str().unwrap(),
            "--config",
            t.path("none.toml").to_str().unwrap(),
        ],
    );
    let s = text(&out);
    assert!(s.contains("removed: custom.a custom.b custom.c"), "{s}");
    assert_eq!(loaded(&t), "");
}

#[test]
fn file_names_never_forge_a_line() {
    let t = Tree::new();
    let forged = "custom.a\nsummary: 0 invalid (forged)";
    t.write(
        &format!("src/{forged}"),
        "profile custom.a { /tmp/** rwzz, \u{1b}[31m }\n",
    );
    let out = once_sim(&t, "src");
    let s = text(&out);
    assert!(!s.lines().any(|l| l.starts_with("summary: 0 invalid (forged)")), "{s}");
    assert_eq!(s.lines().filter(|l| l.starts_with("summary:")).count(), 1, "{s}");
    assert!(!s.contains('\u{1b}'), "{s}");
    assert!(s.contains("custom.a\\nsummary: 0 invalid (forged)"), "{s}");
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_profile() {
    let t = Tree::new();
    t.write("src/a", &format!("\u{feff}{A}"));
    let out = once_sim(&t, "src");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("loaded: custom.a"), "{s}");
}
