//! armorctl's offline commands: audit parse, denials, suggest.

mod common;
use common::*;
use std::process::Command;

/// The same entry as any local user can write it (`logger --journald`):
/// every field it likes, journald's own fields its own.
fn forged(i: usize, line: &str, uid: &str, unit: &str) -> serde_json::Value {
    let mut e = relogged(i, line);
    e["_UID"] = uid.into();
    e["_COMM"] = "logger".into();
    e["_SYSTEMD_UNIT"] = unit.into();
    e
}

fn fake_journal(t: &Tree, entries: &[serde_json::Value]) -> std::path::PathBuf {
    t.fake_journalctl(&entries.iter().map(|e| e.to_string() + "\n").collect::<String>())
}

fn relogged(i: usize, line: &str) -> serde_json::Value {
    let rec = armord::audit::parse(line).unwrap();
    // journald's own fields: armord's unit, as root.
    let mut e = serde_json::json!({
        "__CURSOR": format!("c{i}"),
        "__REALTIME_TIMESTAMP": "1700000000000000",
        "MESSAGE": "apparmor ...",
        "_UID": "0",
        "_COMM": "armord",
        "_SYSTEMD_UNIT": "armord.service",
        "_TRANSPORT": "journal",
        "_HOSTNAME": "node-a",
        "_MACHINE_ID": "0123456789abcdef0123456789abcdef",
    });
    let origin = armord::container::parse_path(&format!(
        "/kubepods/besteffort/pod1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9/{}",
        "ab".repeat(32)
    ));
    let ev = armord::journal::Event {
        boot_id: "b".into(),
        record: rec.into_owned(),
    };
    for (k, v) in armord::journal::relog_fields(&ev, &origin) {
        e[k] = serde_json::Value::String(v);
    }
    e
}

#[test]
fn audit_parse_json_and_errors() {
    let t = Tree::new();
    let f = t.write(
        "audit.log",
        "type=AVC msg=audit(1279948288.415:39): apparmor=\"DENIED\" operation=\"open\" profile=\"/usr/sbin/cupsd\" name=2F746D702F6120622E747874 pid=12333 comm=\"ls\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=1000\n\
         Oct 29 07:55:58 host syslogd 1.5.0: restart.\n\
         [ 97.49] audit: type=1400 audit(1431116353.523:77): apparmor=\"DENIED\" operation=\"capable\" profile=\"p\" pid=3 comm=\"x\" capability=12 capname=\"net_admin\"\n",
    );
    let out = run(ARMORCTL, &["audit", "parse", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["name"], "/tmp/a b.txt");
    assert_eq!(lines[0]["audit_id"], "1279948288.415:39");
    assert_eq!(lines[0]["pid"], 12333);
    assert_eq!(lines[0]["requested"], "r");
    assert_eq!(lines[1]["error"], "not an AppArmor record");
    assert_eq!(lines[2]["capname"], "net_admin");
    let out = run(ARMORCTL, &["audit", "parse", "--format", "text", f.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.starts_with("DENIED /usr/sbin/cupsd open name=/tmp/a b.txt denied=r comm=ls pid=12333"),
        "{s}"
    );
}

#[test]
fn denials_and_suggest_from_the_journal() {
    let t = Tree::new();
    let j = fake_journal(
        &t,
        &[
            relogged(
                1,
                r#"audit: type=1400 audit(1700000000.1:1): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="/etc/shadow" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
            ),
            relogged(
                2,
                r#"audit: type=1400 audit(1700000000.2:2): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="/var/log/app.log" pid=42 comm="app" requested_mask="wc" denied_mask="wc" fsuid=0 ouid=0"#,
            ),
            relogged(
                3,
                r#"audit: type=1400 audit(1700000000.3:3): apparmor="DENIED" operation="capable" class="cap" profile="custom.app" pid=42 comm="app" capability=12 capname="net_admin""#,
            ),
            relogged(
                4,
                r#"audit: type=1400 audit(1700000000.4:4): apparmor="DENIED" operation="open" class="file" profile="custom.other" name="/x" pid=5 comm="sh" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
            ),
        ],
    );
    let cfg = t.write(
        "armord.toml",
        &format!("state_dir = \"state\"\n[denials]\njournalctl = \"{}\"\n", j.display()),
    );
    let out = run(
        ARMORCTL,
        &["--config", cfg.to_str().unwrap(), "denials", "--profile", "custom.app"],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.lines().count(), 3, "{s}");
    assert!(
        s.contains("DENIED custom.app open /etc/shadow r comm=cat pid=42"),
        "{s}"
    );
    let out = run(ARMORCTL, &["--config", cfg.to_str().unwrap(), "denials", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);

    if real_parser().is_none() {
        return;
    }
    // The loaded profile, as armord's store holds it.
    let profile = "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.app {\n  include <abstractions/base>\n}\n";
    let sha = armord::source::sha256_hex(profile.as_bytes());
    t.write(&format!("state/store/{sha}"), profile);
    t.write(
        "state/state.json",
        &serde_json::json!({"version": 1, "profiles": {"custom.app": {"file": "/x", "source": "/", "sha256": sha, "mode": "enforce"}}}).to_string(),
    );
    let out = run(ARMORCTL, &["--config", cfg.to_str().unwrap(), "suggest", "custom.app"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "  /etc/shadow r,\n  /var/log/app.log w,\n  capability net_admin,\n"
    );
}

#[test]
fn validate_gives_the_same_verdicts_as_armord() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write(
        "src/good",
        "abi <abi/3.0>,\nprofile custom.good {\n  /etc/hostname r,\n}\n",
    );
    t.write("src/broken", "profile custom.broken {\n  /etc/** rz,\n}\n");
    t.write("src/noprefix", "profile other.name {\n}\n");
    t.write("src/reserved", "profile unconfined {\n}\n");
    t.write("src/dup1", "profile custom.dup {\n}\n");
    t.write("src/dup2", "profile custom.dup {\n  /tmp/x r,\n}\n");
    t.write(
        "src/big",
        &format!("profile custom.big {{\n#{}\n}}\n", "x".repeat(3000)),
    );
    t.write("src/complain", "profile custom.trial flags=(complain) {\n}\n");
    let cfg = t.write("armord.toml", "profile_prefix = \"custom.\"\nmode = \"enforce\"\nmax_file_bytes = 2000\nstate_dir = \"state\"\n[[source]]\npath = \"src\"\n");
    let once = run(ARMORD, &["--simulate", "--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(once.status.code(), Some(2), "{}", text(&once));
    let mut from_armord: Vec<String> = String::from_utf8_lossy(&once.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .collect();
    let names = [
        "good", "broken", "noprefix", "reserved", "dup1", "dup2", "big", "complain",
    ];
    let files: Vec<String> = names
        .iter()
        .map(|n| t.path(&format!("src/{n}")).display().to_string())
        .collect();
    let mut args = vec!["--config", cfg.to_str().unwrap(), "validate"];
    args.extend(files.iter().map(String::as_str));
    let val = run(ARMORCTL, &args);
    assert_eq!(val.status.code(), Some(2), "{}", text(&val));
    let out = String::from_utf8_lossy(&val.stdout);
    assert!(out.contains(&format!("ok: {}", files[0])), "{out}");
    let mut from_validate: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .collect();
    from_armord.sort();
    from_validate.sort();
    assert_eq!(from_validate.len(), 7, "{from_validate:#?}");
    assert_eq!(from_validate, from_armord);
}

#[test]
fn man_pages_and_completions_are_generated() {
    let t = Tree::new();
    let out = run(ARMORCTL, &["generate-assets", t.path("assets").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "man/armorctl.1",
        "man/armorctl-wait.1",
        "man/armord.8",
        "completions/bash/armorctl.bash",
        "completions/zsh/_armorctl",
        "completions/fish/armord.fish",
    ] {
        assert!(t.path(&format!("assets/{f}")).is_file(), "{f}");
    }
    let bash = t.read("assets/completions/bash/armorctl.bash");
    for sub in [
        "status", "list", "sync", "wait", "validate", "denials", "suggest", "audit",
    ] {
        assert!(bash.contains(sub), "{sub} missing from the bash completion");
    }
    assert!(t.read("assets/man/armord.8").contains(".TH armord 8"));
}

#[test]
fn denials_summary_counts_groups_and_names_the_container() {
    let t = Tree::new();
    let line = |i: usize, name: &str| {
        format!(
            r#"audit: type=1400 audit(1700000000.{i}:{i}): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="{name}" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#
        )
    };
    let userns = r#"audit: type=1400 audit(1700000000.9:9): apparmor="DENIED" operation="userns_create" class="namespace" profile="custom.app" pid=43 comm="unshare" requested="userns_create" denied="userns_create""#;
    let entries: Vec<serde_json::Value> = vec![
        relogged(1, &line(1, "/etc/shadow")),
        relogged(2, &line(2, "/etc/shadow")),
        relogged(3, &line(3, "/etc/gshadow")),
        relogged(4, &line(4, "/etc/shadow")),
        relogged(5, userns),
    ];
    let j = fake_journal(&t, &entries);
    let cfg = t.write(
        "armord.toml",
        &format!("state_dir = \"state\"\n[denials]\njournalctl = \"{}\"\n", j.display()),
    );
    let cfg = cfg.to_str().unwrap();
    let out = run(ARMORCTL, &["--config", cfg, "denials", "--summary"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 4, "{s}");
    assert!(lines[0].trim_start().starts_with("COUNT  HOST    PROFILE"), "{s}");
    assert!(lines[1].trim_start().starts_with("3  node-a  custom.app  open"), "{s}");
    assert!(
        lines[1].contains("/etc/shadow") && lines[1].contains("abababababab (pod 1b2c3d4e-"),
        "{s}"
    );
    let out = run(ARMORCTL, &["--config", cfg, "denials", "--summary", "--json"]);
    let groups: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0]["count"], 3);
    assert_eq!(groups[0]["container"], "ab".repeat(32));
    assert_eq!(groups[0]["host"], "node-a");
    assert_eq!(groups[0]["machine_id"], "0123456789abcdef0123456789abcdef");
    // Plain lines: local time, no empty column.
    let out = run(ARMORCTL, &["--config", cfg, "denials"]);
    let s = String::from_utf8_lossy(&out.stdout);
    let last = s.lines().last().unwrap();
    let date = last.split(' ').next().unwrap();
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-', "{last}");
    assert!(!last.contains("  "), "an empty column: {last}");
    assert!(
        last.contains(" node-a DENIED custom.app userns_create userns_create comm=unshare pid=43"),
        "{last}"
    );
}

#[test]
fn entries_any_user_can_write_are_never_denials_nor_suggestions() {
    let t = Tree::new();
    let real = r#"audit: type=1400 audit(1700000000.1:1): apparmor="DENIED" operation="open" class="file" profile="custom.upw" name="/etc/real" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    let fake = r#"audit: type=1400 audit(1700000000.2:2): apparmor="DENIED" operation="mknod" class="file" profile="custom.upw" name="/etc/forged-by-nobody" pid=43 comm="sh" requested_mask="c" denied_mask="c" fsuid=0 ouid=0"#;
    let j = fake_journal(
        &t,
        &[
            relogged(1, real),
            // nobody, from a user session; root, but from another unit.
            forged(2, fake, "65534", "session-3.scope"),
            forged(3, fake, "0", "cron.service"),
            // The same denial again, after them: seen, the forged were read.
            relogged(
                4,
                &real.replace(":1): ", ":4): ").replace("comm=\"cat\"", "comm=\"after\""),
            ),
        ],
    );
    let cfg = t.write(
        "armord.toml",
        &format!("state_dir = \"state\"\n[denials]\njournalctl = \"{}\"\n", j.display()),
    );
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["denials"][..],
        &["denials", "--json"][..],
        &["denials", "--summary"][..],
        &["denials", "--profile", "custom.upw"][..],
    ] {
        let out = run(ARMORCTL, &[&["--config", cfg][..], args].concat());
        let s = text(&out);
        assert!(out.status.success(), "{args:?}: {s}");
        assert!(s.contains("/etc/real"), "{args:?}: {s}");
        assert!(!s.contains("forged-by-nobody"), "{args:?}: {s}");
        assert!(
            s.contains(
                "armorctl: 2 entries imitating armord's, ignored (written by uid 0 (logger): 1, uid 65534 (logger): 1)"
            ),
            "{args:?}: {s}"
        );
    }
    // Followed, journalctl gives every entry (the stand-in applies no
    // matches then): the check of each entry is what keeps the forged out.
    // Read until the entry after the forged ones is shown.
    let mut child = KillOnDrop(
        Command::new(ARMORCTL)
            .args(["--config", cfg, "denials", "--follow"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut s = String::new();
    while !s.contains("comm=after") {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no entry after the forged ones ({e}): {s}"));
        s.push_str(&line);
        s.push('\n');
    }
    drop(child);
    assert!(s.contains("/etc/real") && !s.contains("forged-by-nobody"), "{s}");
    if real_parser().is_none() {
        return;
    }
    let profile = "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.upw {\n  include <abstractions/base>\n}\n";
    let sha = armord::source::sha256_hex(profile.as_bytes());
    t.write(&format!("state/store/{sha}"), profile);
    t.write(
        "state/state.json",
        &serde_json::json!({"version": 1, "profiles": {"custom.upw": {"file": "/x", "source": "/", "sha256": sha, "mode": "enforce"}}}).to_string(),
    );
    let out = run(ARMORCTL, &["--config", cfg, "suggest", "custom.upw"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "  /etc/real r,\n");
    let out = run(ARMORCTL, &["--config", cfg, "suggest", "--spec", "custom.upw"]);
    assert!(!text(&out).contains("forged-by-nobody"), "{}", text(&out));
}

/// journalctl writes a field with unprintable bytes (a process may name
/// itself with one) as an array of bytes: such a denial is still shown.
#[test]
fn a_record_journalctl_writes_as_bytes_is_still_a_denial() {
    let t = Tree::new();
    let line = "audit: type=1400 audit(1700000000.1:1): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.app\" name=\"/etc/hidden\" pid=42 comm=\"x\u{7f}\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0";
    let mut e = relogged(1, line);
    let rec = e["ARMORD_RECORD"].as_str().unwrap().to_owned();
    e["ARMORD_RECORD"] = serde_json::Value::Array(rec.bytes().map(|b| b.into()).collect());
    let j = fake_journal(&t, &[e]);
    let cfg = t.write(
        "armord.toml",
        &format!("state_dir = \"state\"\n[denials]\njournalctl = \"{}\"\n", j.display()),
    );
    let out = run(ARMORCTL, &["--config", cfg.to_str().unwrap(), "denials"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("/etc/hidden"), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("comm=x\\x7f") || !text(&out).contains('\u{7f}'),
        "{}",
        text(&out)
    );
}

#[test]
fn a_journalctl_that_fails_part_way_is_an_error_after_what_it_gave() {
    let t = Tree::new();
    let line = r#"audit: type=1400 audit(1700000000.1:1): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="/etc/shown" pid=42 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
    t.write("journal.json", &format!("{}\n", relogged(1, line)));
    let j = t.write(
        "journalctl",
        &format!(
            "#!/bin/sh\ncat '{}'\necho 'Failed to iterate through journal: Bad message' >&2\nexit 1\n",
            t.path("journal.json").display()
        ),
    );
    std::fs::set_permissions(&j, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = t.write(
        "armord.toml",
        &format!("state_dir = \"state\"\n[denials]\njournalctl = \"{}\"\n", j.display()),
    );
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["denials"][..],
        &["denials", "--summary"],
        &["suggest", "custom.app", "--spec"],
    ] {
        let out = run(ARMORCTL, &[&["--config", cfg][..], args].concat());
        let s = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {s}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("/etc/shown") || args[0] == "suggest",
            "{args:?}: {s}"
        );
        assert!(
            s.contains("failed (exit status: 1): what it read before is shown"),
            "{args:?}: {s}"
        );
    }
}
