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

/// A record for custom.a on a transport any user writes to, claiming the
/// audit type and armord's message id.
fn forged(i: u32, transport: &str, name: &str) -> String {
    entry(i, "DENIED", "custom.a", name, "app")
        .replace(
            "\"_TRANSPORT\":\"audit\"",
            &format!("\"_TRANSPORT\":\"{transport}\",\"_UID\":\"1000\""),
        )
        .replace(
            "\"_AUDIT_TYPE\"",
            "\"MESSAGE_ID\":\"3c1f6a0e8b2d4c57a9e4d21b7f5c8e90\",\"_AUDIT_TYPE\"",
        )
}

fn tree(journal: &str) -> (Tree, PathBuf) {
    tree_with(journal, "")
}

/// A tree whose armord follows `journal` through a fake journalctl;
/// `tables` go into the config (before `[parser]`).
fn tree_with(journal: &str, tables: &str) -> (Tree, PathBuf) {
    let t = Tree::new();
    let parser = t.fake_parser();
    let journalctl = t.fake_journalctl(journal);
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\nresync_interval_secs = 1\n\
             [exports]\nprometheus_textfile = \"armord.prom\"\n[denials]\njournalctl = \"{}\"\n\
             {tables}[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n",
            journalctl.display(),
            parser.display()
        ),
    );
    t.write("src/a", "profile custom.a {\n  /etc/hostname r,\n}\n");
    (t, cfg)
}

fn start(cfg: &std::path::Path, log: &std::path::Path) -> KillOnDrop {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    KillOnDrop(
        Command::new(ARMORD)
            .args(["--config", cfg.to_str().unwrap(), "--bus", "none", "--verbose"])
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn wait_for(t: &Tree, what: &str, f: impl Fn(&Tree) -> bool) {
    let start = Instant::now();
    while !f(t) {
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}\nkernel:\n{}\nprom:\n{}\nlog:\n{}",
            t.try_read("secfs/profiles").unwrap_or_default(),
            t.try_read("armord.prom").unwrap_or_default(),
            t.try_read("armord.log").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kernel_has(t: &Tree, line: &str) -> bool {
    t.try_read("secfs/profiles")
        .unwrap_or_default()
        .lines()
        .any(|l| l == line)
}

/// A process confined by `profile`, as /proc shows it.
fn confine(t: &Tree, pid: u32, label: &str) {
    t.write(&format!("proc/{pid}/attr/current"), &format!("{label}\n"));
}

const TRIAL: &str = "# armord: trial\nprofile custom.t {\n  /etc/hostname r,\n}\n";
const GATE: &str = "[trial]\nmin_trial = \"1s\"\n";

#[test]
fn a_quiet_trial_with_a_confined_process_is_promoted_and_stays_promoted() {
    let (t, cfg) = tree_with("", GATE);
    t.write("src/t", TRIAL);
    let mut d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "custom.t in complain mode", |t| {
        kernel_has(t, "custom.t (complain)")
    });
    assert!(kernel_has(&t, "custom.a (enforce)"));
    // No process ran under it yet: past min_trial it is held for that.
    wait_for(&t, "the gate holding it", |t| {
        t.try_read("armord.prom")
            .unwrap_or_default()
            .contains(r#"armord_trial{profile="custom.t",state="held"} 1"#)
    });
    assert!(kernel_has(&t, "custom.t (complain)"));
    confine(&t, 4242, "custom.t (complain)");
    wait_for(&t, "custom.t promoted to enforce", |t| {
        kernel_has(t, "custom.t (enforce)")
    });
    let log = t.read("armord.log");
    assert!(log.contains("trial of custom.t passed the gate"), "{log}");
    assert!(log.contains("1 processes confined"), "{log}");
    // A kill -9, then a reboot (the kernel forgets): restored enforced.
    let _ = d.0.kill();
    let _ = d.0.wait();
    std::fs::write(t.path("secfs/profiles"), "").unwrap();
    std::fs::remove_dir_all(t.path("proc")).unwrap();
    d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "custom.t restored in enforce mode", |t| {
        kernel_has(t, "custom.t (enforce)")
    });
    wait_for(&t, "a reconcile after the restore", |t| {
        t.read("armord.log").matches("reconcile (start)").count() >= 2
    });
    assert!(kernel_has(&t, "custom.t (enforce)"), "{}", t.read("secfs/profiles"));
    drop(d);
}

#[test]
fn a_trial_that_learned_is_held_and_its_learned_version_starts_a_new_trial() {
    let journal = entry(1, "ALLOWED", "custom.t", "/etc/shadow", "app");
    let (t, cfg) = tree_with(&journal, GATE);
    t.write("src/t", TRIAL);
    confine(&t, 4242, "custom.t (complain)");
    let _d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "the learned rule to hold the gate", |t| {
        let prom = t.try_read("armord.prom").unwrap_or_default();
        prom.contains(r#"armord_trial{profile="custom.t",state="held"} 1"#)
            && prom.contains(r#"armord_learned_rules{profile="custom.t"} 1"#)
    });
    // Held for the rule, not for time: past min_trial it stays complain.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(kernel_has(&t, "custom.t (complain)"), "{}", t.read("secfs/profiles"));
    // The learned version, written back, is a new version: a new trial
    // that learned nothing, promoted once the gate opens.
    let (code, learned, err) = learn(&cfg, &["custom.t"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        learned.contains("# armord: trial") && learned.contains("/etc/shadow r,"),
        "{learned}"
    );
    t.write("src/t", &learned);
    wait_for(&t, "the learned version promoted", |t| {
        kernel_has(t, "custom.t (enforce)")
    });
    let book: serde_json::Value = serde_json::from_str(&t.read("state/trial.json")).unwrap();
    assert!(
        book["trials"]["custom.t"]["promoted"].is_array(),
        "{book}\n{}\n{}",
        t.read("armord.log"),
        t.read("secfs/profiles")
    );
}

#[test]
fn a_trial_never_weakens_a_profile_enforced_otherwise() {
    let (t, cfg) = tree_with("", GATE);
    t.write("src/t", "profile custom.t {\n  /etc/hostname r,\n}\n");
    let _d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "custom.t enforced", |t| kernel_has(t, "custom.t (enforce)"));
    t.write("src/t", TRIAL);
    wait_for(&t, "the trial version loaded", |t| {
        t.try_read("state/state.json").is_some_and(|m| {
            let m: serde_json::Value = serde_json::from_str(&m).unwrap_or_default();
            let sha = &m["profiles"]["custom.t"]["sha256"];
            sha.is_string() && !t.read("state/state.json").is_empty() && {
                let text = std::fs::read(t.path("src/t")).unwrap();
                use sha2::Digest;
                let want: String = sha2::Sha256::digest(&text).iter().map(|b| format!("{b:02x}")).collect();
                sha == &serde_json::Value::String(want)
            }
        })
    });
    assert!(kernel_has(&t, "custom.t (enforce)"), "{}", t.read("secfs/profiles"));
    assert!(t.try_read("state/trial.json").is_none_or(|b| !b.contains("custom.t")));
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
        // Forged: the same record, written by a user through syslog, stdout
        // and the journal's native protocol, with armord's own fields
        // claimed. The fake journalctl applies no match while following,
        // so only the follower's own check keeps them out.
        forged(6, "syslog", "/etc/forged-syslog"),
        forged(7, "stdout", "/etc/forged-stdout"),
        forged(8, "journal", "/etc/forged-journal"),
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
    assert!(!out.contains("forged"), "a forged entry was learned: {out}");
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

/// What `learn --json` says of each rule: its count.
fn counts(cfg: &std::path::Path, profile: &str) -> Vec<(String, u64)> {
    let (_, json, _) = learn(cfg, &[profile, "--json"]);
    let j: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut out: Vec<(String, u64)> = j["rules"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or_default().to_owned(),
                        r["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A kill -9 and a start again, as often as a node may see one.
fn again(d: &mut KillOnDrop, cfg: &std::path::Path, t: &Tree) {
    let _ = d.0.kill();
    let _ = d.0.wait();
    *d = start(cfg, &t.path("armord.log"));
}

const SPEC: &str = "name = \"custom.s\"\nmode = \"trial\"\nexec = [\"/usr/bin/true\"]\nread = [\"/etc/hostname\"]\n";

#[test]
fn a_trial_spec_learns_is_rewritten_and_promoted_through_a_kill_at_every_step() {
    let journal = [
        entry(1, "ALLOWED", "custom.s", "/etc/shadow", "app"),
        entry(2, "ALLOWED", "custom.s", "/etc/shadow", "app"),
        entry(3, "ALLOWED", "custom.s", "/proc/4242/status", "app"),
    ]
    .concat();
    let (t, cfg) = tree_with(&journal, GATE);
    t.write("src/s.allow.toml", SPEC);
    let want = vec![
        ("/etc/shadow r,".to_owned(), 2),
        ("/proc/[0-9]*/status r,".to_owned(), 1),
    ];
    let mut d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "the records learned and counted", |_| {
        counts(&cfg, "custom.s") == want
    });
    assert!(kernel_has(&t, "custom.s (complain)"), "{}", t.read("secfs/profiles"));

    // Killed, and the journal read again from its start (the cursor gone):
    // every record comes again, and none counts twice.
    let _ = d.0.kill();
    let _ = d.0.wait();
    std::fs::remove_file(t.path("state/journal.cursor")).unwrap();
    d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "the journal read again to its last record", |t| {
        t.try_read("state/journal.cursor")
            .is_some_and(|c| c.lines().next() == Some("s=3"))
    });
    // The counts are written within a flush (2 s) of a record counted.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(counts(&cfg, "custom.s"), want, "a record counted twice");
    assert!(kernel_has(&t, "custom.s (complain)"));

    // The learned spec, as a diff `git apply` takes, compiles with the
    // real parser once rendered.
    let sha = |t: &Tree| -> String {
        let m: serde_json::Value =
            serde_json::from_str(&t.try_read("state/state.json").unwrap_or_default()).unwrap_or_default();
        m["profiles"]["custom.s"]["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let v1 = sha(&t);
    let (code, diff, err) = learn(&cfg, &["custom.s", "--diff"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        diff.contains("+read = [\"/etc/hostname\", \"/etc/shadow\", \"/proc/*/status\"]"),
        "{diff}"
    );
    let _ = d.0.kill();
    let _ = d.0.wait();
    t.write("learned.diff", &diff);
    let applied = Command::new("git")
        .args(["apply", "-p1", t.path("learned.diff").to_str().unwrap()])
        .current_dir(t.path("src"))
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    if let Some(parser) = real_parser() {
        let rendered = Command::new(ARMORCTL)
            .args(["render", t.path("src/s.allow.toml").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let profile = t.write("rendered", &String::from_utf8_lossy(&rendered.stdout));
        let out = Command::new(parser).arg("-QK").arg(&profile).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // The learned version starts a new trial, learned nothing; killed
    // again once it is loaded, it stays in trial.
    d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "the learned version loaded in trial", |t| {
        let v2 = sha(t);
        !v2.is_empty() && v2 != v1 && kernel_has(t, "custom.s (complain)")
    });
    assert_eq!(learn(&cfg, &["custom.s"]).0, 1, "the new version learned nothing yet");
    again(&mut d, &cfg, &t);
    wait_for(&t, "a reconcile after the kill", |t| {
        t.read("armord.log").matches("reconcile (start)").count() >= 4
    });
    assert!(kernel_has(&t, "custom.s (complain)"));

    // A process runs under it; the gate opens; killed at once after the
    // promotion, and the kernel wiped (a reboot): restored enforced.
    confine(&t, 4243, "custom.s (complain)");
    wait_for(&t, "custom.s promoted", |t| kernel_has(t, "custom.s (enforce)"));
    let _ = d.0.kill();
    let _ = d.0.wait();
    std::fs::write(t.path("secfs/profiles"), "").unwrap();
    std::fs::remove_dir_all(t.path("proc")).unwrap();
    d = start(&cfg, &t.path("armord.log"));
    wait_for(&t, "custom.s restored enforced", |t| {
        kernel_has(t, "custom.s (enforce)")
    });
    let book: serde_json::Value = serde_json::from_str(&t.read("state/trial.json")).unwrap();
    assert!(book["trials"]["custom.s"]["promoted"].is_array(), "{book}");
    assert_eq!(
        t.read("armord.log")
            .matches("trial of custom.s passed the gate")
            .count(),
        1,
        "promoted once, logged once"
    );
    // What the first version learned is still there to compare.
    assert_eq!(learn(&cfg, &["custom.s"]).0, 1);
    drop(d);
}
