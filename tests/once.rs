//! `armord --once`, `--simulate` and `--check-config`, run as the real binary.

mod common;
use common::*;

const GOOD: &str = "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.good {\n  include <abstractions/base>\n  /etc/hostname r,\n}\n";
const GOOD_V2: &str = "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.good {\n  include <abstractions/base>\n  /etc/hostname r,\n  /etc/hosts r,\n}\n";
const BROKEN: &str = "abi <abi/3.0>,\nprofile custom.broken {\n  /etc/** r,\n  this is not a rule,\n}\n";

#[test]
fn simulate_once_with_the_real_parser() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("profiles.d/good", GOOD);
    t.write("profiles.d/broken", BROKEN);

    // A valid and a broken profile: the valid one loads, exit 2, the broken
    // file is printed with its line.
    let out = once_sim(&t, "profiles.d");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert_eq!(t.read("state/simulate/profiles"), "custom.good (enforce)\n");
    let broken = t.path("profiles.d/broken");
    assert!(
        s.contains(&format!("error: {}:4: syntax error", broken.display())),
        "{s}"
    );
    assert!(s.contains("loaded: custom.good"), "{s}");

    // Fixed: exit 0, both loaded.
    t.write(
        "profiles.d/broken",
        "abi <abi/3.0>,\nprofile custom.broken {\n  /etc/** r,\n}\n",
    );
    let out = once_sim(&t, "profiles.d");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        t.read("state/simulate/profiles"),
        "custom.broken (enforce)\ncustom.good (enforce)\n"
    );

    // Break a loaded file: the old version stays loaded, the error is reported.
    let store_before = std::fs::read_dir(t.path("state/store")).unwrap().count();
    t.write("profiles.d/good", &GOOD_V2.replace("/etc/hosts r,", "/etc/hosts rz,"));
    let out = once_sim(&t, "profiles.d");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(
        s.contains(&format!("{}:6:", t.path("profiles.d/good").display())),
        "{s}"
    );
    assert_eq!(
        t.read("state/simulate/profiles"),
        "custom.broken (enforce)\ncustom.good (enforce)\n"
    );
    let manifest: serde_json::Value = serde_json::from_str(&t.read("state/state.json")).unwrap();
    let sha = manifest["profiles"]["custom.good"]["sha256"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(t.path("state/store").join(sha)).unwrap(), GOOD);
    assert_eq!(std::fs::read_dir(t.path("state/store")).unwrap().count(), store_before);

    // A good change replaces it.
    t.write("profiles.d/good", GOOD_V2);
    let out = once_sim(&t, "profiles.d");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("replaced: custom.good"));
}

#[test]
fn once_against_a_fake_kernel_loads_and_refuses_takeover() {
    let t = Tree::new();
    let parser = t.fake_parser();
    std::fs::write(t.path("secfs/profiles"), "nscd (enforce)\n").unwrap();
    t.write("profiles.d/a", "profile custom.a {\n}\n");
    t.write("profiles.d/dd", "profile nscd {\n}\n");
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\n[[source]]\npath = \"profiles.d\"\n[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n",
            parser.display()
        ),
    );
    let out = run(ARMORD, &["--once", "--config", cfg.to_str().unwrap()]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(
        s.contains("profile `nscd` is already loaded and armord does not own it"),
        "{s}"
    );
    assert_eq!(t.read("secfs/profiles"), "nscd (enforce)\ncustom.a (enforce)\n");
}

#[test]
fn fatal_errors_exit_1() {
    let t = Tree::new();
    // No AppArmor in the kernel, no --simulate.
    let cfg = t.write(
        "a.toml",
        "securityfs = \"nothing-here\"\nstate_dir = \"state\"\n[parser]\npath = \"/bin/true\"\n",
    );
    let out = run(ARMORD, &["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("AppArmor is not available"), "{}", text(&out));
    // No parser.
    let cfg = t.write(
        "b.toml",
        "state_dir = \"state\"\n[parser]\npath = \"/nonexistent/apparmor_parser\"\n",
    );
    let out = run(ARMORD, &["--once", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("apparmor_parser not found: /nonexistent/apparmor_parser"),
        "{}",
        text(&out)
    );
    // State dir not writable (a file in the way).
    t.write("blocker", "");
    t.write("none.toml", "");
    let out = run(
        ARMORD,
        &[
            "--simulate",
            "--once",
            "--state-dir",
            t.path("blocker/state").to_str().unwrap(),
            "--config",
            t.path("none.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("blocker/state"), "{}", text(&out));
}

#[test]
fn check_config_prints_effective_config_or_errors() {
    let t = Tree::new();
    let cfg = t.write("armord.toml", "profile_prefix = \"custom.\"\n");
    t.write("armord.toml.d/50-site.toml", "takeover = true\n");
    let out = run(ARMORD, &["--check-config", "--config", cfg.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        s.contains("profile_prefix = \"custom.\"") && s.contains("takeover = true"),
        "{s}"
    );
    t.write("armord.toml.d/60-bad.toml", "[denials]\nscope = \"everything\"\n");
    let out = run(ARMORD, &["--check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out);
    assert!(s.contains("60-bad.toml:2: ") && s.contains("everything"), "{s}");
}

#[test]
fn simulate_never_touches_system_paths() {
    let t = Tree::new();
    t.write("profiles.d/a", "profile custom.a {\n}\n");
    t.write("none.toml", "");
    // No state dir given: the simulation picks one under XDG_STATE_HOME.
    let out = std::process::Command::new(ARMORD)
        .args([
            "--simulate",
            "--once",
            "--source",
            t.path("profiles.d").to_str().unwrap(),
            "--config",
            t.path("none.toml").to_str().unwrap(),
        ])
        .env("XDG_STATE_HOME", t.path("xdg"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(t.read("xdg/armord-simulate/simulate/profiles").contains("custom.a"));
}

#[test]
fn shipped_conffile_documents_every_key_and_parses_uncommented() {
    let shipped =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/armord.toml"))
            .unwrap();
    let t = Tree::new();
    let as_is = t.write("as-is.toml", &shipped);
    let out = run(ARMORD, &["--check-config", "--config", as_is.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // Uncomment every documented key: the result must still be valid.
    let uncommented: String = shipped
        .lines()
        .map(|l| {
            let rest = l.strip_prefix('#').unwrap_or(l);
            let is_key = rest.starts_with("[[source]]")
                || rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if l.starts_with('#') && is_key {
                rest.to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let full = t.write("uncommented.toml", &uncommented);
    let out = run(ARMORD, &["--check-config", "--config", full.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{uncommented}", text(&out));
    let effective = String::from_utf8_lossy(&out.stdout);
    // Every key of the effective configuration is documented in the file.
    for line in effective.lines() {
        if let Some((k, _)) = line.split_once(" = ") {
            assert!(
                shipped.contains(&format!("#{k} = ")),
                "{k} is not documented in packaging/armord.toml"
            );
        }
    }
}
