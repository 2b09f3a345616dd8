//! Fault injection: armord killed at every step of an apply, the state
//! directory full or read-only, and the next run converging. The simulated
//! kernel and the fake parser stand in for the system; failpoints
//! (`ARMORD_FAILPOINT`) stop or fail armord at a named step.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn profile(name: &str, version: u32) -> String {
    format!("profile {name} {{\n  /etc/hostname r,\n  # version {version}\n}}\n")
}

const FOREIGN: &str = "other.keep (complain)\n";

fn setup() -> (Tree, std::path::PathBuf) {
    let t = Tree::new();
    let parser = t.fake_parser();
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\n[denials]\nenabled = false\n[parser]\npath = \"{}\"\n[[source]]\npath = \"src\"\n",
            parser.display()
        ),
    );
    t.write("state/simulate/profiles", FOREIGN);
    for n in ["a", "b", "c", "e"] {
        t.write(&format!("src/{n}"), &profile(&format!("custom.{n}"), 1));
    }
    (t, cfg)
}

fn once(cfg: &std::path::Path, failpoint: &str) -> Output {
    Command::new(ARMORD)
        .args([
            "--once",
            "--simulate",
            "--bus",
            "none",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("ARMORD_FAILPOINT", failpoint)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn kernel(t: &Tree) -> BTreeMap<String, String> {
    t.read("state/simulate/profiles")
        .lines()
        .filter_map(|l| l.rsplit_once(" ("))
        .map(|(n, m)| (n.to_owned(), m.trim_end_matches(')').to_owned()))
        .collect()
}

fn manifest(t: &Tree) -> serde_json::Value {
    serde_json::from_str(&t.read("state/state.json")).unwrap()
}

fn sha256(s: &str) -> String {
    armord::source::sha256_hex(s.as_bytes())
}

/// The change every fault case interrupts: b replaced, d added, c and e removed.
fn change(t: &Tree) {
    t.write("src/b", &profile("custom.b", 2));
    t.write("src/d", &profile("custom.d", 1));
    std::fs::remove_file(t.path("src/c")).unwrap();
    std::fs::remove_file(t.path("src/e")).unwrap();
}

fn assert_converged(t: &Tree) {
    let k = kernel(t);
    assert_eq!(
        k.keys().cloned().collect::<Vec<_>>(),
        ["custom.a", "custom.b", "custom.d", "other.keep"],
        "kernel: {k:?}"
    );
    assert_eq!(
        k["other.keep"], "complain",
        "a profile outside the manifest was touched"
    );
    let m = manifest(t);
    let owned: Vec<&String> = m["profiles"].as_object().unwrap().keys().collect();
    assert_eq!(owned, ["custom.a", "custom.b", "custom.d"]);
    assert_eq!(m["profiles"]["custom.b"]["sha256"], sha256(&profile("custom.b", 2)));
    assert!(m.get("pending").is_none(), "{m}");
    assert!(m.get("removing").is_none(), "{m}");
}

#[test]
fn killed_at_every_step_of_an_apply_the_next_run_converges() {
    for point in [
        "state-write",
        "store-write",
        "after-load",
        "between-members",
        "between-removes",
    ] {
        let (t, cfg) = setup();
        let out = once(&cfg, "");
        assert_eq!(out.status.code(), Some(0), "{point}: {}", text(&out));
        change(&t);
        let out = once(&cfg, point);
        assert_eq!(out.status.signal(), Some(9), "{point}: not killed: {}", text(&out));
        // Whatever was done, nothing owned is lost and the foreign profile
        // is untouched.
        let k = kernel(&t);
        assert!(
            k.contains_key("custom.a") && k.contains_key("custom.b"),
            "{point}: {k:?}"
        );
        assert_eq!(k["other.keep"], "complain", "{point}");
        let out = once(&cfg, "");
        assert_eq!(out.status.code(), Some(0), "{point}: {}", text(&out));
        assert_converged(&t);
    }
}

#[test]
fn state_dir_full_or_read_only_is_a_clear_error_and_the_kernel_is_left_alone() {
    for (spec, message) in [
        ("state-write=enospc", "No space left on device"),
        ("state-write=erofs", "Read-only file system"),
    ] {
        let (t, cfg) = setup();
        assert_eq!(once(&cfg, "").status.code(), Some(0));
        let before = t.read("state/simulate/profiles");
        let manifest_before = t.read("state/state.json");
        change(&t);
        let out = once(&cfg, spec);
        let s = text(&out);
        assert_eq!(out.status.code(), Some(1), "{spec}: {s}");
        assert!(s.contains(message), "{spec}: {s}");
        assert!(
            s.contains(t.path("state").to_str().unwrap()),
            "{spec}: names the state dir: {s}"
        );
        assert_eq!(t.read("state/simulate/profiles"), before, "{spec}: kernel changed");
        assert_eq!(t.read("state/state.json"), manifest_before, "{spec}: manifest changed");
        // Space again: the next run does it all.
        assert_eq!(once(&cfg, "").status.code(), Some(0));
        assert_converged(&t);
    }
}

/// The daemon keeps running through a full state dir, says so, and retries.
#[test]
fn daemon_retries_after_the_state_dir_fills_up() {
    let (t, cfg) = setup();
    std::fs::write(
        t.path("armord.toml"),
        t.read("armord.toml")
            .replace("state_dir = \"state\"\n", "state_dir = \"state\"\ndebounce_ms = 50\n"),
    )
    .unwrap();
    let fp = t.write("failpoints", "");
    let log = std::fs::File::create(t.path("armord.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(ARMORD)
            .args(["--simulate", "--bus", "none", "--config", cfg.to_str().unwrap()])
            .env("ARMORD_FAILPOINT_FILE", &fp)
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out: {what}\n{}", t.read("armord.log"));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait("first reconcile", &|| {
        t.try_read("state/state.json")
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .is_some_and(|m| m["profiles"].as_object().is_some_and(|p| p.len() == 4) && m.get("pending").is_none())
    });
    std::fs::write(&fp, "state-write=enospc").unwrap();
    t.write("src/b", &profile("custom.b", 2));
    // The failure, then the retry it schedules: two lines, written in turn.
    wait("the failure logged", &|| {
        t.read("armord.log").contains("No space left on device")
    });
    wait("the retry scheduled", &|| t.read("armord.log").contains("retrying in"));
    assert_eq!(child.0.try_wait().unwrap(), None, "armord exited");
    assert_eq!(
        manifest(&t)["profiles"]["custom.b"]["sha256"],
        sha256(&profile("custom.b", 1))
    );
    std::fs::write(&fp, "").unwrap();
    wait("the retry loads b", &|| {
        t.read("state/state.json").contains(&sha256(&profile("custom.b", 2)))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.0.wait().unwrap().success());
}
