//! Hostile profiles and names, all in one source next to a good profile:
//! each is refused (or loaded, where it is harmless) with one clear line that
//! names the file, and the good profile loads regardless. Uses the real
//! parser (`--simulate`), as CI installs it. SECURITY.md lists the same cases.

mod common;
use common::*;

const GOOD: &str =
    "include <tunables/global>\nprofile custom.good {\n  include <abstractions/base>\n  /etc/hostname r,\n}\n";

/// (file, content, what the output must say about it; None: loads).
fn cases() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let long = format!("profile custom.{} {{}}\n", "x".repeat(4096));
    vec![
        (
            "nul",
            b"profile custom.nul {\n  /etc/x r,\0\n}\n".to_vec(),
            Some("contains a NUL byte at offset"),
        ),
        ("latin1", b"profile custom.caf\xe9 {}\n".to_vec(), Some("not UTF-8")),
        ("slash", b"profile /usr/bin/custom-tool {}\n".to_vec(), None),
        ("dotdot", b"profile \"../../etc/passwd\" {}\n".to_vec(), None),
        ("space", b"profile \"custom.my app\" {}\n".to_vec(), None),
        (
            "newline",
            b"profile \"custom.a\\ncustom.good\" {}\n".to_vec(),
            Some("escape sequence or control character"),
        ),
        ("long", long.into_bytes(), Some("over the limit of 1024")),
        (
            "hats",
            b"profile custom.hats {\n  ^hat {}\n  profile child {}\n}\n".to_vec(),
            None,
        ),
        (
            "unconfined",
            b"profile unconfined {}\n".to_vec(),
            Some("uses a reserved name"),
        ),
        (
            "docker",
            b"profile docker-default {}\n".to_vec(),
            Some("belongs to a container runtime"),
        ),
        (
            "containerd",
            b"profile cri-containerd.apparmor.d {}\n".to_vec(),
            Some("belongs to a container runtime"),
        ),
        (
            "namespace",
            b"profile :otherns:custom.x {}\n".to_vec(),
            Some("names a policy namespace"),
        ),
        (
            "include-shadow",
            b"profile custom.inc {\n  include \"/etc/shadow\"\n}\n".to_vec(),
            Some("line 2: include \"/etc/shadow\": outside the system's AppArmor directories"),
        ),
        (
            "include-dotdot",
            b"profile custom.inc2 {\n  #include <../../../etc/shadow>\n}\n".to_vec(),
            Some("`..` and empty paths are not allowed"),
        ),
        (
            "include-relative",
            b"include \"other\"\nprofile custom.inc3 {}\n".to_vec(),
            Some("relative quoted include"),
        ),
        ("empty", b"# nothing here\n".to_vec(), Some("holds no profile")),
    ]
}

#[test]
fn hostile_profiles_are_refused_one_line_each_and_the_rest_loads() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/good", GOOD);
    for (name, content, _) in cases() {
        let p = t.path(&format!("src/{name}"));
        std::fs::write(p, content).unwrap();
    }
    let out = once_sim(&t, "src");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    let kernel = t.read("state/simulate/profiles");
    assert!(kernel.contains("custom.good (enforce)\n"), "{kernel}");
    for (name, _, expect) in cases() {
        let file = t.path(&format!("src/{name}"));
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| l.contains(&format!("{}:", file.display())))
            .collect();
        match expect {
            Some(why) => {
                assert_eq!(lines.len(), 1, "{name}: one line each, got {lines:?}\n{s}");
                assert!(lines[0].contains(why), "{name}: {lines:?}");
            }
            None => assert!(lines.is_empty(), "{name}: {lines:?}"),
        }
    }
    // The harmless ones are loaded under exactly their names; hats and
    // children come with their parent.
    for n in [
        "/usr/bin/custom-tool",
        "../../etc/passwd",
        "custom.my app",
        "custom.hats",
        "custom.hats//child",
        "custom.hats//hat",
    ] {
        assert!(kernel.contains(&format!("{n} (enforce)\n")), "{n}: {kernel}");
    }
    // Nothing the refused files name reached the kernel.
    for n in [
        "custom.a",
        "unconfined",
        "docker-default",
        "cri-containerd.apparmor.d",
        "custom.inc",
        "custom.x",
    ] {
        assert!(
            !kernel.lines().any(|l| l.starts_with(&format!("{n} "))),
            "{n}: {kernel}"
        );
    }

    // Removing the files removes exactly their profiles, children with them
    // (four of five at once: allowed as a mass removal here).
    t.write("none.toml", "mass_removal_percent = 100\nremoval_settle_ms = 100\n");
    for n in ["space", "hats", "slash", "dotdot"] {
        std::fs::remove_file(t.path(&format!("src/{n}"))).unwrap();
    }
    let out = once_sim(&t, "src");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let kernel = t.read("state/simulate/profiles");
    assert_eq!(kernel, "custom.good (enforce)\n", "{}", text(&out));
}

/// A runtime's profile already in the kernel is left alone, and taking it
/// over needs `takeover = true`.
#[test]
fn runtime_profiles_need_takeover() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/docker", "profile docker-default {\n  /etc/hostname r,\n}\n");
    t.write("state/simulate/profiles", "docker-default (enforce)\n");
    let out = once_sim(&t, "src");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("belongs to a container runtime"), "{}", text(&out));
    t.write("none.toml", "takeover = true\n");
    let out = once_sim(&t, "src");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("replaced: docker-default") || text(&out).contains("loaded: docker-default"));
}
