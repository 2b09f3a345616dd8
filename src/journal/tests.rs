use super::cursor::load_cursor_file;
use super::follower::read_line_bounded;
use super::*;
use crate::audit::AuditId;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn audit_entry(i: usize, serial: u64) -> String {
    serde_json::json!({
        "__CURSOR": format!("s=fake;i={i}"),
        "_BOOT_ID": "b1",
        "_TRANSPORT": "audit",
        "_AUDIT_TYPE": "1400",
        "_AUDIT_ID": serial.to_string(),
        "_SOURCE_REALTIME_TIMESTAMP": format!("{}", 1_700_000_000_000_000u64 + serial * 1000),
        "MESSAGE": format!("AVC apparmor=\"DENIED\" operation=\"open\" profile=\"custom.p{}\" name=\"/etc/f{serial}\" pid=10 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0", serial % 7),
    })
    .to_string()
}

fn kernel_entry(i: usize, serial: u64) -> String {
    let us = 1_700_000_000_000_000u64 + serial * 1000;
    serde_json::json!({
        "__CURSOR": format!("s=fake;i={i}"),
        "_BOOT_ID": "b1",
        "_TRANSPORT": "kernel",
        "MESSAGE": format!("audit: type=1400 audit({}.{:03}:{serial}): apparmor=\"DENIED\" operation=\"open\" profile=\"custom.p{}\" name=\"/etc/f{serial}\" pid=10 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0", us / 1_000_000, (us / 1000) % 1000, serial % 7),
    })
    .to_string()
}

fn other_entry(i: usize, msg: &str, transport: &str) -> String {
    serde_json::json!({"__CURSOR": format!("s=fake;i={i}"), "_BOOT_ID": "b1", "_TRANSPORT": transport, "MESSAGE": msg})
        .to_string()
}

#[test]
fn both_transports_give_the_same_key() {
    let a = parse_entry(&audit_entry(1, 42)).unwrap();
    let k = parse_entry(&kernel_entry(2, 42)).unwrap();
    let (Classified::Event(a), Classified::Event(k)) = (classify(&a), classify(&k)) else {
        panic!("not events")
    };
    assert_eq!(a.key(), k.key());
    assert_eq!(a.record.audit_id.unwrap().to_string(), "1700000000.042:42");
    let mut d = Dedupe::new(10);
    assert!(d.first(a.key().unwrap()));
    assert!(!d.first(k.key().unwrap()));
}

#[test]
fn classify_skips_other_records_and_counts_losses() {
    let e = parse_entry(&other_entry(1, "audit: audit_lost=5 audit_rate_limit=0", "kernel")).unwrap();
    assert!(matches!(classify(&e), Classified::Lost(5)));
    let e = parse_entry(&other_entry(2, "usb 1-1: new device", "kernel")).unwrap();
    assert!(matches!(classify(&e), Classified::Other));
    let e = parse_entry(&other_entry(3, "apparmor=\"DENIED\" operation=\"open\"", "stdout")).unwrap();
    assert!(matches!(classify(&e), Classified::Other));
    // Binary MESSAGE as an array of bytes.
    let e = parse_entry(r#"{"__CURSOR":"c","_TRANSPORT":"kernel","MESSAGE":[97,112,112]}"#).unwrap();
    assert_eq!(e.message, "app");
    assert!(parse_entry("{not json").is_none());
    assert!(parse_entry(r#"{"MESSAGE":"no cursor"}"#).is_none());
}

#[test]
fn bounded_lines() {
    let data = format!("{}\nshort\n", "x".repeat(100));
    let mut r = std::io::BufReader::with_capacity(16, data.as_bytes());
    let mut out = Vec::new();
    read_line_bounded(&mut r, &mut out, 10).unwrap();
    assert_eq!(out.len(), 12);
    out.clear();
    read_line_bounded(&mut r, &mut out, 10).unwrap();
    assert_eq!(out, b"short\n");
}

struct FakeJournal {
    dir: tempfile::TempDir,
}

impl FakeJournal {
    fn new(lines: &[String], die_at: &[usize]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("journal.json");
        std::fs::write(&data, lines.join("\n") + "\n").unwrap();
        let die = dir.path().join("die");
        std::fs::write(&die, die_at.iter().map(|n| format!("{n}\n")).collect::<String>()).unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_journalctl");
        let wrapper = dir.path().join("journalctl");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nFAKE_JOURNAL='{}' FAKE_JOURNAL_DIE='{}' FAKE_JOURNAL_LOG='{}' exec '{}' \"$@\"\n",
                data.display(),
                die.display(),
                dir.path().join("calls").display(),
                fake.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeJournal { dir }
    }

    fn config(&self) -> FollowerConfig {
        FollowerConfig {
            journalctl: self.dir.path().join("journalctl"),
            cursor_path: self.dir.path().join("journal.cursor"),
            backoff: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            commit_every: Duration::from_millis(50),
            writer: Writer::simulation(),
        }
    }
}

/// 10,000 records through 5 forced restarts of the follower and 2 crashes
/// of journalctl mid-line: every record handled exactly once.
#[test]
fn ten_thousand_records_exactly_once_through_restarts_and_crashes() {
    const N: u64 = 10_000;
    let mut lines = Vec::new();
    for serial in 1..=N {
        let i = lines.len() + 1;
        // Half come over the audit transport, half over the kernel one;
        // every tenth also arrives over the other transport.
        if serial % 2 == 0 {
            lines.push(audit_entry(i, serial));
        } else {
            lines.push(kernel_entry(i, serial));
        }
        if serial % 10 == 0 {
            let i = lines.len() + 1;
            lines.push(kernel_entry(i, serial));
        }
        if serial % 1000 == 0 {
            let i = lines.len() + 1;
            lines.push(other_entry(i, "systemd[1]: Started something.", "journal"));
            lines.push("{this is not json".to_owned());
        }
    }
    let i = lines.len() + 1;
    lines.push(other_entry(i, "audit: audit_lost=3", "kernel"));
    let total_lines = lines.len();
    let last = parse_entry(lines.last().unwrap()).unwrap().cursor;
    let j = FakeJournal::new(&lines, &[2_500, 7_000]);

    let handled: Arc<Mutex<Vec<AuditId>>> = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(Mutex::new(0u64));
    let count = || handled.lock().unwrap().len();
    let restart_at = [1_000usize, 3_000, 5_000, 6_000, 8_000];
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut f = Follower::new(j.config());
        let stopper = f.stopper();
        let stats = f.stats.clone();
        let h = handled.clone();
        let thread = std::thread::spawn(move || {
            f.run(|ev| h.lock().unwrap().push(ev.record.audit_id.unwrap()));
        });
        // Let it run to the next restart point, or to the end.
        let target = restart_at.get(restarts).copied();
        loop {
            assert!(Instant::now() < deadline, "stuck at {} handled", count());
            let n = count();
            if target.is_some_and(|t| n >= t) || n as u64 >= N {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if target.is_none() {
            // Every line read (a duplicate would be handled by then, and
            // the loss marker after the last record counted), then stop.
            while load_cursor(&j.config().cursor_path).as_deref() != Some(last.as_str()) {
                assert!(Instant::now() < deadline, "the cursor never reached {last}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        stopper.stop();
        thread.join().unwrap();
        *lost.lock().unwrap() += stats.lock().unwrap().lost;
        if target.is_none() {
            break;
        }
        restarts += 1;
    }
    let handled = handled.lock().unwrap();
    let unique: std::collections::BTreeSet<_> = handled.iter().collect();
    assert_eq!(restarts, 5);
    assert_eq!(unique.len() as u64, N, "lost events");
    assert_eq!(handled.len() as u64, N, "events handled twice");
    assert_eq!(*lost.lock().unwrap(), 3);
    // journalctl died twice on its own.
    let die = std::fs::read_to_string(j.dir.path().join("die")).unwrap();
    assert!(die.trim().is_empty(), "the fake did not die where told: {die:?}");
    let calls = std::fs::read_to_string(j.dir.path().join("calls")).unwrap();
    let follows: Vec<&str> = calls.lines().filter(|c| c.contains("--follow")).collect();
    // Six followers, and a restart after each crash that did not coincide
    // with a forced restart (on a fast run both may): six at least.
    assert!(follows.len() >= 6, "{calls}");
    assert!(
        follows.iter().skip(1).all(|c| c.contains("--after-cursor=s=fake;i=")),
        "{calls}"
    );
    // Each follower first read back what it had re-logged past its cursor.
    assert_eq!(
        calls.lines().filter(|c| c.contains("MESSAGE_ID=")).count(),
        6,
        "{calls}"
    );
    assert!(total_lines > N as usize);
}

#[test]
fn a_vanished_cursor_resumes_from_the_oldest_entry() {
    let lines = vec![audit_entry(1, 1), audit_entry(2, 2)];
    let j = FakeJournal::new(&lines, &[]);
    std::fs::write(j.dir.path().join("journal.cursor"), "s=gone;i=99\n").unwrap();
    let mut f = Follower::new(j.config());
    let stopper = f.stopper();
    let handled = Arc::new(Mutex::new(0));
    let h = handled.clone();
    let t = std::thread::spawn(move || f.run(|_| *h.lock().unwrap() += 1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while *handled.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    stopper.stop();
    let cursor = t.join().unwrap();
    assert_eq!(cursor.as_deref(), Some("s=fake;i=2"));
    let calls = std::fs::read_to_string(j.dir.path().join("calls")).unwrap();
    let second = calls.lines().filter(|c| c.contains("--follow")).nth(1).unwrap();
    assert!(
        !second.contains("--after-cursor") && !second.contains("--boot"),
        "{calls}"
    );
}

#[test]
fn rate_limit_suppresses_and_reports() {
    let mut rl = RateLimit::new(2, Duration::from_secs(60));
    let k = || ("p", "open", "/x");
    let t0 = Instant::now();
    assert_eq!(rl.check(k(), t0), (true, 0));
    assert_eq!(rl.check(k(), t0), (true, 0));
    assert_eq!(rl.check(k(), t0), (false, 0));
    assert_eq!(rl.check(k(), t0), (false, 0));
    assert_eq!(rl.check(("q", "open", "/x"), t0), (true, 0));
    // The parts are kept apart: "p" + "open/x" is another key.
    assert_eq!(rl.check(("p", "open\u{0}/x", ""), t0), (true, 0));
    assert_eq!(rl.check(k(), t0 + Duration::from_secs(61)), (true, 2));
}

#[test]
fn rate_limit_stays_bounded_and_keeps_what_it_must_report() {
    use crate::journal::relog::RATE_LIMIT_KEYS;
    let mut rl = RateLimit::new(2, Duration::from_secs(60));
    let names: Vec<String> = (0..=10 * RATE_LIMIT_KEYS).map(|n| format!("/x{n}")).collect();
    let k = |n: usize| ("p", "open", names[n].as_str());
    let t0 = Instant::now();
    // One key over its burst: it has suppressed records to report.
    for _ in 0..5 {
        rl.check(k(0), t0);
    }
    // A flood of distinct keys, each seen once.
    for n in 1..=10 * RATE_LIMIT_KEYS {
        assert_eq!(rl.check(k(n), t0), (true, 0));
        assert!(rl.tracked() <= RATE_LIMIT_KEYS, "{} keys after {n}", rl.tracked());
    }
    // The suppressing key survived the evictions: still suppressed, and its
    // count is reported when its interval ends.
    assert_eq!(rl.check(k(0), t0), (false, 0));
    assert_eq!(rl.check(k(0), t0 + Duration::from_secs(61)), (true, 4));
}

/// Runs a follower until `want` records are handled (or 20 s pass).
fn follow_until(cfg: FollowerConfig, want: usize, between: impl FnOnce()) -> (Vec<AuditId>, FollowerStats) {
    let handled: Arc<Mutex<Vec<AuditId>>> = Arc::new(Mutex::new(Vec::new()));
    let mut f = Follower::new(cfg);
    let stopper = f.stopper();
    let stats = f.stats.clone();
    let h = handled.clone();
    let thread = std::thread::spawn(move || f.run(|ev| h.lock().unwrap().push(ev.record.audit_id.unwrap())));
    between();
    let deadline = Instant::now() + Duration::from_secs(20);
    while handled.lock().unwrap().len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stopper.stop();
    thread.join().unwrap();
    let out = handled.lock().unwrap().clone();
    let stats = stats.lock().unwrap().clone();
    (out, stats)
}

#[test]
fn a_ten_mib_journal_line_is_skipped_and_counted() {
    let huge = format!(
        r#"{{"__CURSOR":"s=fake;i=2","_TRANSPORT":"kernel","MESSAGE":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    let lines = vec![kernel_entry(1, 1), huge, kernel_entry(3, 3)];
    let j = FakeJournal::new(&lines, &[]);
    let (handled, stats) = follow_until(j.config(), 2, || {});
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert_eq!(stats.malformed, 1);
}

#[test]
fn a_missing_journalctl_is_retried_until_it_appears() {
    let j = FakeJournal::new(&[kernel_entry(1, 1), kernel_entry(2, 2)], &[]);
    let real = j.dir.path().join("journalctl");
    let hidden = j.dir.path().join("journalctl.hidden");
    std::fs::rename(&real, &hidden).unwrap();
    let (handled, _) = follow_until(j.config(), 2, || {
        // Several failed spawns (the backoff is 20..100 ms), then it appears.
        std::thread::sleep(Duration::from_millis(300));
        std::fs::rename(&hidden, &real).unwrap();
    });
    assert_eq!(handled.len(), 2);
}

/// Run a follower over `lines` until its saved cursor is the last line's
/// (every line read, a loss marker among them): what it counted lost,
/// since when, and how many times `on_loss` was told.
fn losses(lines: &[String], audit_socket: bool) -> (u64, Option<u64>, usize) {
    let j = FakeJournal::new(lines, &[]);
    let last = parse_entry(lines.last().unwrap()).unwrap().cursor;
    let cursor_path = j.config().cursor_path;
    let mut f = Follower::new(j.config());
    f.audit_transport.store(audit_socket, Ordering::Relaxed);
    let told = Arc::new(Mutex::new(Vec::new()));
    let t2 = told.clone();
    f.on_loss = Some(Box::new(move |lost, since| t2.lock().unwrap().push((lost, since))));
    let stats = f.stats.clone();
    let stopper = f.stopper();
    let handled = Arc::new(Mutex::new(0usize));
    let h = handled.clone();
    let t = std::thread::spawn(move || f.run(|_| *h.lock().unwrap() += 1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while load_cursor(&cursor_path).as_deref() != Some(last.as_str()) {
        assert!(Instant::now() < deadline, "the cursor never reached {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(*handled.lock().unwrap(), 1, "one denial in each case");
    stopper.stop();
    t.join().unwrap();
    let st = stats.lock().unwrap().clone();
    assert_eq!(told.lock().unwrap().last().map(|t| t.0).unwrap_or(0), st.lost);
    (st.lost, st.lost_since_us, told.lock().unwrap().len())
}

#[test]
fn console_suppression_is_loss_only_without_the_audit_transport() {
    let marker = |i: usize| {
        serde_json::json!({"__CURSOR": format!("s=fake;i={i}"), "_BOOT_ID": "b1", "_TRANSPORT": "kernel",
            "__REALTIME_TIMESTAMP": "1700000000500000",
            "MESSAGE": "kauditd_printk_skb: 31 callbacks suppressed"})
        .to_string()
    };
    // No audit transport: the console copy is all there is; 31 are lost,
    // said at once, with since when.
    let (lost, since, told) = losses(&[marker(1), kernel_entry(2, 7)], false);
    assert_eq!((lost, since, told), (31, Some(1_700_000_000_500_000), 1));
    // The socket is active: not loss.
    let (lost, since, told) = losses(&[marker(1), kernel_entry(2, 7)], true);
    assert_eq!((lost, since, told), (0, None, 0));
    // An audit-transport entry seen before the marker says the same.
    let (lost, _, _) = losses(&[audit_entry(1, 7), marker(2)], false);
    assert_eq!(lost, 0);
    // The audit subsystem's own loss is loss either way.
    let real = other_entry(2, "audit: audit_lost=5 audit_rate_limit=0", "kernel");
    let (lost, _, _) = losses(&[audit_entry(1, 7), real], true);
    assert_eq!(lost, 5);
}

#[test]
fn entry_fields_of_every_shape_journalctl_writes() {
    // A string with escapes, bytes for a value that is not UTF-8, a number,
    // and shapes that are no value (null, an object): absent, not an error.
    let e = parse_entry(
        r#"{"__CURSOR":"c\"1","_BOOT_ID":null,"_TRANSPORT":"kernel","_AUDIT_ID":42,"MESSAGE":[97,112,255],"_AUDIT_TYPE":{"x":1}}"#,
    )
    .unwrap();
    assert_eq!(e.cursor, "c\"1");
    assert_eq!(e.boot_id, "");
    assert_eq!(e.audit_serial, Some(42));
    assert_eq!(e.audit_type, None);
    assert_eq!(e.message, "ap\u{fffd}");
    // No cursor, or not JSON: not an entry.
    assert!(parse_entry(r#"{"MESSAGE":"x"}"#).is_none());
    assert!(parse_entry(r#"{"__CURSOR":null}"#).is_none());
    assert!(parse_entry("not json").is_none());
}

/// An entry any process can write (the journal's native protocol, syslog,
/// stdout) is never an AppArmor record, whatever its MESSAGE says: only the
/// audit and kernel transports, which journald sets, count.
#[test]
fn only_the_kernels_transports_carry_records() {
    let msg = r#"apparmor=\"DENIED\" operation=\"open\" profile=\"custom.a\" name=\"/etc/forged\" pid=1 comm=\"x\" requested_mask=\"r\" denied_mask=\"r\""#;
    for transport in ["journal", "syslog", "stdout", "driver", ""] {
        let line = format!(
            r#"{{"__CURSOR":"c","_TRANSPORT":"{transport}","_AUDIT_TYPE":"1400","MESSAGE":"audit: type=1400 audit(1.2:3): {msg}"}}"#
        );
        let e = parse_entry(&line).unwrap();
        assert!(matches!(classify(&e), Classified::Other), "{transport}");
    }
    let line = format!(r#"{{"__CURSOR":"c","_TRANSPORT":"kernel","MESSAGE":"audit: type=1400 audit(1.2:3): {msg}"}}"#);
    assert!(matches!(classify(&parse_entry(&line).unwrap()), Classified::Event(_)));
}

#[test]
fn a_damaged_cursor_file_is_set_aside_and_reading_starts_afresh() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("journal.cursor");
    let aside = d.path().join("journal.cursor.corrupt");
    std::fs::write(&path, "s=3").unwrap();
    assert_eq!(load_cursor_file(&path).0.as_deref(), Some("s=3"));
    std::fs::write(&path, "s=4\nb1 1700000000.001:7\n").unwrap();
    let (cursor, keys) = load_cursor_file(&path);
    assert_eq!((cursor.as_deref(), keys.len()), (Some("s=4"), 1));
    assert!(!aside.exists());
    for damaged in [&b"s=5\nb1 not-an-id\n"[..], b"", b"\n\n", b"s=\xff\n"] {
        std::fs::write(&path, damaged).unwrap();
        let (cursor, keys) = load_cursor_file(&path);
        assert!(cursor.is_none() && keys.is_empty(), "{damaged:?}");
        assert!(!path.exists(), "{damaged:?}");
        assert_eq!(std::fs::read(&aside).unwrap(), damaged);
    }
    // No file: a first run, nothing set aside.
    std::fs::remove_file(&aside).unwrap();
    assert_eq!(load_cursor_file(&path), (None, Vec::new()));
    assert!(!aside.exists());
}

/// The cursor moves only after `before_commit` said what the records
/// before it left is on disk; while it cannot, the cursor stays.
#[test]
fn the_cursor_waits_for_what_the_records_left_to_be_durable() {
    let lines: Vec<String> = (1..=3).map(|i| audit_entry(i, i as u64)).collect();
    for durable in [true, false] {
        let j = FakeJournal::new(&lines, &[]);
        let cursor = j.config().cursor_path;
        let mut f = Follower::new(j.config());
        // Each call: the cursor file as it was when asked.
        let asked: Arc<Mutex<Vec<String>>> = Arc::default();
        let a = asked.clone();
        let seen = cursor.clone();
        f.before_commit = Some(Box::new(move || {
            a.lock()
                .unwrap()
                .push(std::fs::read_to_string(&seen).unwrap_or_default());
            durable
        }));
        let stopper = f.stopper();
        let handled = Arc::new(Mutex::new(0));
        let h = handled.clone();
        let t = std::thread::spawn(move || f.run(|_| *h.lock().unwrap() += 1));
        let deadline = Instant::now() + Duration::from_secs(20);
        while (*handled.lock().unwrap() < 3 || asked.lock().unwrap().is_empty()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stopper.stop();
        t.join().unwrap();
        let asked = asked.lock().unwrap().clone();
        assert!(!asked.is_empty(), "before_commit was never asked");
        // Asked before the cursor named the last record.
        assert!(!asked[0].contains("i=3"), "{asked:?}");
        let saved = std::fs::read_to_string(&cursor).unwrap_or_default();
        assert_eq!(saved.contains("s=fake;i=3"), durable, "durable {durable}: {saved:?}");
    }
}
