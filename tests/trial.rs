//! Learning through the real binaries: armord follows a (fake) journal of
//! records for a profile it owns, and `armorctl learn` prints what the
//! loaded version would have denied.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

fn entry(i: u32, kind: &str, profile: &str, name: &str, comm: &str) -> String {
    let msg = format!(
        r#"AVC apparmor=\"{kind}\" operation=\"open\" class=\"file\" profile=\"{profile}\" name=\"{name}\" pid=4{i} comm=\"{comm}\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"#
    );
    format!(
        r#"{{"__CURSOR":"s={i}","_BOOT_ID":"b","_TRANSPORT":"audit","_AUDIT_TYPE":"1400","_AUDIT_ID":"{i}","_SOURCE_REALTIME_TIMESTAMP":"170000000{i}000000","MESSAGE":"{msg}"}}"#
    ) + "\n"
}

fn tree(journal: &str) -> (Tree, PathBuf) {
    let t = Tree::new();
    let parser = t.fake_parser();
    let journalctl = t.fake_journalctl(journal);
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\n[denials]\njournalctl = \"{}\"\n\
             [parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n",
            journalctl.display(),
            parser.display()
        ),
    );
    t.write("src/a", "profile custom.a {\n  /etc/hostname r,\n}\n");
    (t, cfg)
}

fn learn(cfg: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ARMORCTL)
        .args(["learn", "--config", cfg.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn denials_of_an_owned_profile_are_learned_and_printed_into_its_file() {
    let journal = [
        entry(1, "DENIED", "custom.a", "/etc/shadow", "app"),
        entry(2, "DENIED", "custom.a", "/proc/4242/status", "app"),
        entry(3, "DENIED", "custom.a", "/proc/77/status", "app"),
        // The runtime setting a container up: not the workload's need.
        entry(4, "DENIED", "custom.a", "/etc/runc-only", "runc:[2:INIT]"),
        // A profile armord does not own.
        entry(5, "DENIED", "other", "/etc/other", "app"),
    ]
    .concat();
    let (t, cfg) = tree(&journal);
    let (code, _, err) = learn(&cfg, &["custom.a"]);
    assert_eq!(code, 2, "no state yet is an error: {err}");
    let child = Command::new(ARMORD)
        .args(["--config", cfg.to_str().unwrap(), "--bus", "none"])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _d = KillOnDrop(child);
    let start = Instant::now();
    let out = loop {
        let (code, out, err) = learn(&cfg, &["custom.a"]);
        if code == 0 && out.contains("/proc/[0-9]*/status r,") && out.contains("/etc/shadow r,") {
            break out;
        }
        assert!(start.elapsed() < WAIT, "not learned: {code} {out} {err}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(out.starts_with("profile custom.a {\n  /etc/hostname r,\n"), "{out}");
    assert!(out.contains("# learned by armord"), "{out}");
    assert!(!out.contains("runc-only") && !out.contains("/etc/other"), "{out}");
    assert_eq!(out.matches("/proc/").count(), 1, "one generalised rule: {out}");

    // Counts of known rules are written by the loop within a flush.
    let start = Instant::now();
    loop {
        let (code, json, _) = learn(&cfg, &["custom.a", "--json"]);
        assert_eq!(code, 0);
        let j: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        let procs = j["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "/proc/[0-9]*/status r,")
            .cloned()
            .unwrap();
        if procs["count"] == 2 {
            break;
        }
        assert!(start.elapsed() < WAIT, "count never written: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (code, diff, _) = learn(&cfg, &["custom.a", "--diff"]);
    assert_eq!(code, 0);
    assert!(diff.starts_with("--- a/a\n+++ b/a\n@@ "), "{diff}");
    assert!(diff.contains("\n+  /etc/shadow r,\n"), "{diff}");

    // A profile armord does not own is an error; nothing learned is 1.
    assert_eq!(learn(&cfg, &["other"]).0, 2);
    t.write("src/b", "profile custom.b {\n}\n");
    let start = Instant::now();
    loop {
        let (code, _, err) = learn(&cfg, &["custom.b"]);
        if code == 1 {
            assert!(err.contains("nothing learned"), "{err}");
            break;
        }
        assert!(start.elapsed() < WAIT, "custom.b never owned: {code} {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
