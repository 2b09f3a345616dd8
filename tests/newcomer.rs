//! What a new user meets in the first hour, through the real binaries:
//! armorctl against a simulation, configuration paths, a closed pipe,
//! help texts, render, audit parse's output, error forms, log lines.

mod common;
use common::*;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A simulation's configuration in a tree: state under `sim/`, one source.
fn sim_config(t: &Tree, parser: &str) -> std::path::PathBuf {
    t.write("p/custom.a", "profile custom.a {\n  /etc/** r,\n}\n");
    t.write(
        "conf/armord.toml",
        &format!(
            "state_dir = \"../sim\"\n[[source]]\npath = \"../p\"\n[parser]\npath = \"{parser}\"\n[denials]\nenabled = false\n"
        ),
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn armorctl_reaches_a_simulation_without_any_bus() {
    let t = Tree::new();
    let parser = t.fake_parser();
    let cfg = sim_config(&t, parser.to_str().unwrap());
    let child = Command::new(ARMORD)
        .args(["--simulate", "--config", cfg.to_str().unwrap()])
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = KillOnDrop(child);
    let cfg_s = cfg.to_str().unwrap();
    wait_until("armorctl status over the simulation socket", || {
        run(ARMORCTL, &["--simulate", "--config", cfg_s, "status"])
            .status
            .code()
            == Some(0)
    });
    // The options work before and after the command.
    let out = run(ARMORCTL, &["list", "--simulate", "--config", cfg_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("custom.a\tenforce\tloaded"), "{}", text(&out));
    let out = run(ARMORCTL, &["--simulate", "--config", cfg_s, "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A broken change: list says both what runs and what is wrong, and the
    // daemon's warning says the last good version stays loaded.
    t.write("p/custom.a", "profile custom.a {\n  BROKEN\n}\n");
    wait_until("the broken file reported", || {
        run(ARMORCTL, &["--simulate", "--config", cfg_s, "status"])
            .status
            .code()
            == Some(2)
    });
    let out = run(ARMORCTL, &["--simulate", "--config", cfg_s, "list"]);
    assert!(
        text(&out).contains("custom.a\tenforce\tloaded (last good), file invalid\t"),
        "{}",
        text(&out)
    );
    // The socket lies in the state directory the configuration names,
    // written as the user wrote it: no `conf/..` in the path. Only its
    // owner may use it, whatever the umask; another user is told so.
    assert!(t.path("sim/armord.sock").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.path("sim/armord.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    if nix::unistd::geteuid().is_root() {
        for d in [t.dir.path().to_owned(), t.path("sim")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let copy = t.path("armorctl");
        std::fs::copy(ARMORCTL, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&copy)
            .args(["--simulate", "--config", cfg_s, "status"])
            .output()
            .unwrap();
        assert!(text(&out).contains("permission denied"), "{}", text(&out));
    }
    // Stopped: the socket goes with it; the log had no D-Bus warning and
    // one readable line per event.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = daemon.0.wait();
    let mut log = String::new();
    daemon.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(!t.path("sim/armord.sock").exists());
    assert!(!log.contains("D-Bus: not available"), "{log}");
    assert!(!log.contains("conf/.."), "{log}");
    assert!(log.contains("loaded profile custom.a\n"), "{log}");
    assert!(
        log.contains("syntax error") && log.contains("(the last good version of `custom.a` stays loaded)"),
        "{log}"
    );
    assert!(!log.contains("action="), "{log}");
    // Nothing there any more: not running, said at once.
    let out = run(ARMORCTL, &["--simulate", "--config", cfg_s, "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("armord is not running"), "{}", text(&out));
}

#[test]
fn no_bus_says_what_to_do_and_wait_does_not_wait_for_it() {
    let started = Instant::now();
    let out = Command::new(ARMORCTL)
        .args(["wait", "--timeout", "5m"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "wait waited for a bus that is not there"
    );
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out);
    assert!(e.contains("cannot reach the D-Bus system bus"), "{e}");
    assert!(e.contains("armorctl --simulate"), "{e}");
    // `none` is no bus to reach armord on.
    let out = run(ARMORCTL, &["--bus", "none", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("invalid value 'none'"), "{}", text(&out));
}

#[test]
fn a_relative_config_is_taken_from_the_working_directory() {
    let t = Tree::new();
    let parser = t.fake_parser();
    let _ = sim_config(&t, parser.to_str().unwrap());
    let out = Command::new(ARMORCTL)
        .current_dir(t.dir.path())
        .args(["--config", "conf/armord.toml", "validate", "p/custom.a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = Command::new(ARMORD)
        .current_dir(t.dir.path())
        .args(["--config", "conf/armord.toml", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "state_dir = \"{}\"",
        t.dir.path().canonicalize().unwrap().join("sim").display()
    );
    assert!(shown.contains(&want), "{shown}");
}

#[test]
fn a_mistyped_config_is_an_error_the_default_may_be_absent() {
    let out = run(ARMORD, &["--config", "/nonexistent/armord.toml", "--check-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("/nonexistent/armord.toml: cannot read"),
        "{}",
        text(&out)
    );
    let t = Tree::new();
    let out = Command::new(ARMORD)
        .current_dir(t.dir.path())
        .args(["--simulate", "--once", "--config", "examples/armord.tml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("examples/armord.tml: cannot read"),
        "{}",
        text(&out)
    );
    let f = t.path("p.allow.toml");
    let out = run(
        ARMORCTL,
        &["--config", "/nonexistent.toml", "validate", f.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("/nonexistent.toml: cannot read"), "{}", text(&out));
}

#[test]
fn a_version_loaded_without_a_parser_is_checked_once_there_is_one() {
    let t = Tree::new();
    // BROKEN: the fake parser's syntax error at this line.
    t.write("p/custom.a", "profile custom.a {\n  BROKEN\n}\n");
    let conf = |parser: &str| {
        t.write(
            "c.toml",
            &format!(
                "state_dir = \"sim\"\n[[source]]\npath = \"p\"\n[parser]\npath = \"{parser}\"\n[denials]\nenabled = false\n"
            ),
        )
    };
    let once = |cfg: &std::path::Path| {
        run(
            ARMORD,
            &[
                "--simulate",
                "--once",
                "--bus",
                "none",
                "--config",
                cfg.to_str().unwrap(),
            ],
        )
    };
    let cfg = conf("/nonexistent/apparmor_parser");
    let out = once(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("loaded unchecked"), "{}", text(&out));
    // The parser is installed: the unchanged file is checked, and found wrong.
    let parser = t.fake_parser();
    let cfg = conf(parser.to_str().unwrap());
    let out = once(&cfg);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("1 invalid"), "{}", text(&out));
    assert!(!text(&out).contains("1 unchanged"), "{}", text(&out));
    // Fixed: loaded, and checked for good.
    t.write("p/custom.a", "profile custom.a {\n  /etc/** r,\n}\n");
    let out = once(&cfg);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = once(&cfg);
    assert!(text(&out).contains("1 unchanged"), "{}", text(&out));
    // The manifest, which must be there, no longer marks anything unchecked.
    let m: serde_json::Value = serde_json::from_str(&t.read("sim/state.json")).unwrap();
    assert!(m["profiles"]["custom.a"].is_object(), "{m}");
    assert!(m.get("unchecked").is_none(), "{m}");
}

#[test]
fn a_closed_pipe_ends_armorctl_quietly() {
    let t = Tree::new();
    let mut lines = String::new();
    for i in 0..5000 {
        lines.push_str(&format!(
            "type=AVC msg=audit(1700000000.1:{i}): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/x{i}\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\"\n"
        ));
    }
    let f = t.write("a.log", &lines);
    for _ in 0..5 {
        let mut child = Command::new(ARMORCTL)
            .args(["audit", "parse", f.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut one = [0u8; 1];
        child.stdout.as_mut().unwrap().read_exact(&mut one).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The same for a command that prints with outln!: render.
    let spec = t.write(
        "custom.x.allow.toml",
        "name = \"custom.x\"\nexec = [\"/usr/bin/true\"]\n",
    );
    for _ in 0..5 {
        let mut child = Command::new(ARMORCTL)
            .args([
                "render",
                spec.to_str().unwrap(),
                spec.to_str().unwrap(),
                spec.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(101), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn help_describes_every_argument_and_offline_commands_show_no_daemon_options() {
    for args in [
        &["validate", "--help"][..],
        &["render", "--help"],
        &["suggest", "--help"],
        &["list", "--help"],
        &["audit", "parse", "--help"],
        &["denials", "--help"],
        &["verify", "--help"],
        &["sign", "--help"],
    ] {
        let out = run(ARMORCTL, args);
        let h = String::from_utf8_lossy(&out.stdout).to_string();
        // Every argument and option line has a description after it.
        for line in h.lines().filter(|l| l.starts_with("  ")) {
            let t = line.trim();
            if t.starts_with('-') || t.starts_with('<') || t.starts_with('[') {
                let rest = t.split("  ").skip(1).collect::<String>();
                assert!(!rest.trim().is_empty(), "armorctl {args:?}: no description: {line}");
            }
        }
        if matches!(args[0], "render" | "audit" | "sign") {
            assert!(!h.contains("--config"), "armorctl {args:?} shows --config:\n{h}");
        }
        if args[0] != "list" {
            assert!(!h.contains("--bus"), "armorctl {args:?} shows --bus:\n{h}");
        }
    }
}

#[test]
fn render_takes_many_specs_and_toml_errors_read_file_line_message() {
    let t = Tree::new();
    let a = t.write("a.allow.toml", "name = \"custom.a\"\nexec = [\"/usr/bin/true\"]\n");
    let b = t.write("b.allow.toml", "name = \"custom.b\"\nexec = [\"/usr/bin/false\"]\n");
    let bad = t.write("c.allow.toml", "name = \"custom.c\"\n\n\nexec = [/usr/bin/x]\n");
    let out = run(ARMORCTL, &["render", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("profile custom.a") && s.contains("profile custom.b"), "{s}");
    let out = run(ARMORCTL, &["render", a.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(&format!("{}:4: ", bad.display())), "{e}");
    assert!(!e.contains("(toml)") && !e.contains("line 4"), "{e}");
    // validate and the daemon say the same.
    let out = run(ARMORCTL, &["validate", bad.to_str().unwrap()]);
    assert!(text(&out).contains(&format!("{}:4: ", bad.display())), "{}", text(&out));
}

#[test]
fn audit_parse_output_is_even() {
    let t = Tree::new();
    let f = t.write(
        "mixed.log",
        "type=AVC msg=audit(1.1:1): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/a\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\"\n\
         garbage\n\
         [ 1.0] audit: type=1400 audit(1.1:2): apparmor=\"DENIED\" operation=\"open\" profile=\"p\" name=\"/b\" pid=1 comm=\"c\" requested_mask=\"r\" denied_mask=\"r\"\n\
         type=UNKNOWN[1503] msg=audit(1.1:3): operation=\"exec\" denied_mask=\"x\" name=\"/bin/ping\" pid=3 profile=\"p\"\n\
         type=USER_AVC msg=audit(1.1:4): pid=1 uid=0 msg='apparmor=\"DENIED\" operation=\"dbus_method_call\" bus=\"system\" member=\"Hello\" mask=\"send\" name=\"org.x\" pid=2 label=\"p\" peer_label=\"unconfined\" exe=\"/bin/x\"'\n",
    );
    let out = run(ARMORCTL, &["audit", "parse", f.to_str().unwrap()]);
    let v: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["type"], "AVC");
    assert_eq!(v[0]["type_number"], 1400);
    assert_eq!(v[1]["line"], 2);
    assert!(v[1]["error"].is_string());
    assert_eq!(v[2]["type"], "AVC");
    assert_eq!(v[2]["type_number"], 1400);
    assert_eq!(v[3]["type"], "APPARMOR_DENIED");
    assert_eq!(v[3]["type_number"], 1503);
    assert_eq!(v[4]["type"], "USER_AVC");
    assert_eq!(v[4]["profile"], "p");
}
