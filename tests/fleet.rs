//! A fleet's denials: journal files as systemd-journal-remote writes them
//! (made here from export-format input with the real
//! systemd-journal-remote), read with `armorctl denials --directory/--file`.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const ARMORCTL: &str = env!("CARGO_BIN_EXE_armorctl");
const REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// systemd-journal-remote, when installed. Under CI it must be.
fn remote() -> Option<&'static str> {
    if Path::new(REMOTE).is_file() {
        return Some(REMOTE);
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI must install the systemd-journal-remote package: {REMOTE} is missing");
    }
    eprintln!("skipped: {REMOTE} is not installed");
    None
}

/// One entry in journal export format: `KEY=value` lines, a blank line.
fn export(fields: &[(&str, String)]) -> String {
    let mut s = String::new();
    for (k, v) in fields {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push('\n');
    s
}

/// The entry armord on `host` writes for a denial of `name` by `profile`,
/// with journald's own fields: root, in armord.service.
fn relogged(host: &str, i: u64, profile: &str, name: &str) -> Vec<(&'static str, String)> {
    let line = format!(
        r#"audit: type=1400 audit(1700000000.{i}:{i}): apparmor="DENIED" operation="open" class="file" profile="{profile}" name="{name}" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#
    );
    let ev = armord::journal::Event {
        boot_id: "b".into(),
        record: armord::audit::parse(&line).unwrap().into_owned(),
    };
    let origin = armord::container::parse_path(&format!("/system.slice/docker-{}.scope", "cd".repeat(32)));
    let mut f = journald(host, i, "0", "armord.service", "armord");
    f.extend(armord::journal::relog_fields(&ev, &origin));
    f
}

/// The fields journald sets, as it would for `comm` run by `uid` in `unit`.
fn journald(host: &str, i: u64, uid: &str, unit: &str, comm: &str) -> Vec<(&'static str, String)> {
    let mid = format!("{:0>32}", host.bytes().map(|b| format!("{b:02x}")).collect::<String>());
    vec![
        (
            "__REALTIME_TIMESTAMP",
            (1_700_000_000_000_000 + i * 1_000_000).to_string(),
        ),
        ("__MONOTONIC_TIMESTAMP", (i * 1_000_000).to_string()),
        ("_BOOT_ID", "0123456789abcdef0123456789abcdef".into()),
        ("_MACHINE_ID", mid[mid.len() - 32..].to_owned()),
        ("_HOSTNAME", host.into()),
        ("_TRANSPORT", "journal".into()),
        ("_UID", uid.into()),
        ("_SYSTEMD_UNIT", unit.into()),
        ("_COMM", comm.into()),
        ("MESSAGE", "denied".into()),
    ]
}

/// A journal file made by systemd-journal-remote from `entries`.
fn journal_file(remote: &str, out: &Path, entries: &[Vec<(&'static str, String)>]) {
    let input = out.with_extension("export");
    std::fs::write(&input, entries.iter().map(|e| export(e)).collect::<String>()).unwrap();
    let o = std::process::Command::new(remote)
        .arg(format!("--output={}", out.display()))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.is_file(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&input).unwrap();
}

/// A directory as systemd-journal-remote fills it: one file per node, and
/// on node-b an entry a user wrote to look like armord's.
fn fleet(t: &Tree, remote: &str) -> PathBuf {
    let dir = t.path("remote");
    std::fs::create_dir_all(&dir).unwrap();
    let a: Vec<_> = (1..=4)
        .map(|i| {
            relogged(
                "node-a",
                i,
                "custom.web",
                if i == 4 { "/etc/gshadow" } else { "/etc/shadow" },
            )
        })
        .collect();
    let mut b: Vec<_> = (5..=6)
        .map(|i| relogged("node-b", i, "custom.web", "/etc/shadow"))
        .collect();
    b.push(relogged("node-b", 7, "custom.db", "/var/lib/db"));
    // Any user may log ARMORD_* fields with armord's MESSAGE_ID.
    let mut forged = journald("node-b", 8, "1000", "user@1000.service", "logger");
    forged.extend(relogged("node-b", 8, "custom.web", "/etc/forged").into_iter().skip(10));
    b.push(forged);
    // armord's own unit, but a record nobody can read.
    let mut broken = relogged("node-b", 9, "custom.web", "/etc/broken");
    for f in broken.iter_mut().filter(|f| f.0 == "ARMORD_RECORD") {
        f.1 = "{not json".into();
    }
    b.push(broken);
    journal_file(remote, &dir.join("remote-node-a.journal"), &a);
    journal_file(remote, &dir.join("remote-node-b.journal"), &b);
    dir
}

fn config(t: &Tree) -> String {
    t.write("armord.toml", "state_dir = \"state\"\n").display().to_string()
}

/// armorctl with the test's configuration.
fn ctl(cfg: &str, args: &[&str]) -> std::process::Output {
    run(ARMORCTL, &[&["--config", cfg][..], args].concat())
}

fn lines(o: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn a_fleets_directory_is_summarised_by_host_profile_and_denial() {
    let Some(remote) = remote() else { return };
    let t = Tree::new();
    let dir = fleet(&t, remote);
    let cfg = config(&t);
    let d = dir.to_str().unwrap();
    let out = ctl(&cfg, &["denials", "--summary", "--by", "host", "--directory", d]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("COUNT  HOST    PROFILES  CONTAINERS"), "{s}");
    assert!(rows[1].trim_start().starts_with("4  node-a  1         1"), "{s}");
    assert!(rows[2].trim_start().starts_with("3  node-b  2         1"), "{s}");
    assert_eq!(rows.len(), 3, "{s}");
    // The forged entry and the unreadable one are counted, never shown.
    assert!(
        s.contains("1 entry imitating armord's, ignored (written by uid 1000 (logger): 1)"),
        "{s}"
    );
    assert!(
        s.contains("1 entry from armord had no readable ARMORD_RECORD, skipped"),
        "{s}"
    );
    assert!(!s.contains("forged") && !s.contains("broken"), "{s}");

    let out = ctl(&cfg, &["denials", "--summary", "--by", "profile", "--json", "-D", d]);
    let g = lines(&out);
    let got: Vec<(&str, u64, u64)> = g
        .iter()
        .map(|g| {
            (
                g["profile"].as_str().unwrap(),
                g["count"].as_u64().unwrap(),
                g["hosts"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("custom.web", 6, 2), ("custom.db", 1, 1)]);

    let out = ctl(&cfg, &["denials", "--summary", "--json", "--directory", d]);
    let g = lines(&out);
    assert_eq!(g.len(), 4, "{g:?}");
    assert_eq!(
        (g[0]["host"].as_str(), g[0]["target"].as_str(), g[0]["count"].as_u64()),
        (Some("node-a"), Some("/etc/shadow"), Some(3))
    );
    assert_eq!(g[0]["machine_id"].as_str().map(str::len), Some(32));

    // Each denial names its host, in order of time across the files.
    let out = ctl(&cfg, &["denials", "--json", "--file", &format!("{d}/*.journal")]);
    let rows = lines(&out);
    let hosts: Vec<&str> = rows.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(
        hosts,
        ["node-a", "node-a", "node-a", "node-a", "node-b", "node-b", "node-b"]
    );
    assert!(
        rows.iter()
            .all(|r| r["machine_id"].as_str().is_some_and(|m| m.len() == 32))
    );
    let out = ctl(
        &cfg,
        &[
            "denials",
            "--profile",
            "custom.db",
            "--file",
            &format!("{d}/remote-node-b.journal"),
        ],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(s.lines().count(), 1, "{s}");
    assert!(s.contains(" node-b DENIED custom.db open /var/lib/db r "), "{s}");

    // suggest reads the same way: rules from both nodes' denials.
    let out = ctl(&cfg, &["suggest", "custom.web", "--spec", "--directory", d]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(
        s.contains("/etc/shadow") && s.contains("/etc/gshadow") && !s.contains("/etc/forged"),
        "{s}"
    );
}

#[test]
fn a_corrupt_truncated_or_foreign_file_is_named_and_the_rest_are_read() {
    let Some(remote) = remote() else { return };
    let t = Tree::new();
    let dir = fleet(&t, remote);
    let good = std::fs::read(dir.join("remote-node-a.journal")).unwrap();
    std::fs::write(dir.join("truncated.journal"), &good[..5000]).unwrap();
    let mut corrupt = good.clone();
    corrupt[..8].copy_from_slice(b"NOTAJRNL");
    std::fs::write(dir.join("corrupt.journal"), &corrupt).unwrap();
    std::fs::write(dir.join("notes.journal"), "not a journal at all\n").unwrap();
    let cfg = config(&t);
    let d = dir.to_str().unwrap();
    let out = ctl(&cfg, &["denials", "--summary", "--by", "host", "--directory", d]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(3), "{s}");
    for f in ["truncated.journal", "corrupt.journal", "notes.journal"] {
        assert!(s.contains(&format!("{d}/{f}: skipped: ")), "{f}: {s}");
    }
    assert!(s.contains("4  node-a") && s.contains("3  node-b"), "{s}");
    // Named by --file, one missing: the same.
    let out = ctl(
        &cfg,
        &[
            "denials",
            "--summary",
            "--file",
            &format!("{d}/remote-node-b.journal"),
            "--file",
            &format!("{d}/corrupt.journal"),
            "--file",
            &format!("{d}/absent.journal"),
        ],
    );
    let s = text(&out);
    assert_eq!(out.status.code(), Some(3), "{s}");
    assert!(
        s.contains("corrupt.journal: skipped: corrupt, or not a journal file"),
        "{s}"
    );
    assert!(s.contains("absent.journal: skipped: No such file or directory"), "{s}");
    assert!(s.contains("node-b") && !s.contains("node-a"), "{s}");
    // Nothing readable at all: an error, not the local journal.
    let out = ctl(&cfg, &["denials", "--file", &format!("{d}/notes.journal")]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(
        s.contains("notes.journal: skipped") && s.contains("no journal file could be read"),
        "{s}"
    );
    let empty = t.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = ctl(&cfg, &["denials", "--directory", empty.to_str().unwrap()]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("no journal files in it"), "{s}");
}
