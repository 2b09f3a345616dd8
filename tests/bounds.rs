//! The sync-directory writer's bounds, tried as a hostile writer would,
//! through the real binary (`armord --once --simulate`) and the real
//! parser: `profile_prefix` and `takeover` (children of someone else's
//! profile), `allowed_attachments` (aliases, quoting, includes on the
//! header's line, `**` under `*`), `mode = "enforce"` (every spelling of
//! complain, children and hats), a revision directory outside the source,
//! a configuration tightened after a load, `abi` outside the include
//! policy, and a file that once crashed armord. SECURITY.md lists each.

mod common;
use common::*;
use std::os::unix::fs::symlink;

const BOUNDED: &str = "state_dir = \"state\"\nprofile_prefix = \"custom.\"\nmode = \"enforce\"\nallowed_attachments = [\"/opt/**\", \"/usr/local/bin/*\"]\n[denials]\nenabled = false\n[[source]]\npath = \"src\"\n";

fn once(t: &Tree, cfg: &str) -> (i32, String) {
    once_config(&t.write("armord.toml", cfg))
}

/// The lines that name `file`.
fn about<'a>(s: &'a str, t: &Tree, file: &str) -> Vec<&'a str> {
    let p = t.path(&format!("src/{file}")).display().to_string();
    s.lines()
        .filter(|l| l.starts_with("error: ") && l.contains(&format!("{p}:")))
        .collect()
}

/// Each file refused with a line that says `why`, the good one loaded, and
/// nothing but the good one in the kernel.
fn refused_each(files: &[(&str, &str, &str)]) {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/good", "profile custom.good /opt/app/bin/run {\n}\n");
    for (name, content, _) in files {
        t.write(&format!("src/{name}"), content);
    }
    let (code, s) = once(&t, BOUNDED);
    assert_eq!(code, 2, "{s}");
    for (name, _, why) in files {
        let lines = about(&s, &t, name);
        assert_eq!(lines.len(), 1, "{name}: one line, got {lines:?}\n{s}");
        assert!(lines[0].contains(why), "{name}: {lines:?}");
    }
    let k = t.read("state/simulate/profiles");
    assert_eq!(k, "custom.good (enforce)\n", "{s}");
}

#[test]
fn a_file_that_once_crashed_armord_is_one_error_and_the_rest_loads() {
    refused_each(&[
        ("lone", "profile\n", "Lexer found unexpected character"),
        ("lone2", "profile", "syntax error"),
    ]);
}

#[test]
fn children_and_hats_of_a_profile_the_file_does_not_define_are_refused() {
    refused_each(&[
        (
            "child",
            "profile custom.y {}\nprofile nvidia_modprobe//kmod flags=(unconfined) {}\n",
            "`nvidia_modprobe//kmod` is a child or hat of `nvidia_modprobe`",
        ),
        (
            "child2",
            "profile custom.z {}\nprofile nvidia_modprobe//kmod { /** rwlkmix, }\n",
            "is a child or hat of `nvidia_modprobe`",
        ),
        ("hat", "profile custom.w {}\nprofile other//^h {}\n", "of `other`"),
    ]);
}

#[test]
fn attachments_are_judged_as_the_kernel_matches_them() {
    let why = "which allowed_attachments (/opt/**, /usr/local/bin/*) does not cover";
    refused_each(&[
        ("direct", "profile custom.direct /usr/sbin/sshd {}\n", why),
        (
            "alias",
            "alias /opt/a/ -> /usr/sbin/,\nprofile custom.al /opt/a/sshd {}\n",
            "attaches to /usr/sbin/sshd",
        ),
        (
            "quote",
            "profile custom.q \"/usr/sbin/sshd\"{ }\n",
            "attaches to /usr/sbin/sshd",
        ),
        (
            "incline",
            "#include <tunables/global> profile custom.inc2 /usr/sbin/sshd {}\n",
            "attaches to /usr/sbin/sshd",
        ),
        (
            "escaped",
            "profile custom.e1 {\n  \"/tmp/a\\\"b\" r,\n}\nprofile custom.e2 /usr/sbin/sshd {}\n",
            "`custom.e2` attaches to /usr/sbin/sshd",
        ),
        ("doublestar", "profile custom.ds /usr/local/bin/** {}\n", why),
        (
            "variable",
            "@{T}=/usr/sbin/sshd\nprofile custom.var @{T} {}\n",
            "attaches to /usr/sbin/sshd",
        ),
        (
            "alternation",
            "profile custom.alt /{opt/x,usr/sbin/sshd} {}\n",
            "attaches to /usr/sbin/sshd",
        ),
        ("byname", "/usr/sbin/sshd {}\n", "attaches to /usr/sbin/sshd"),
        (
            "childattach",
            "profile custom.pa {\n  profile child /usr/sbin/sshd {}\n}\n",
            "attaches to /usr/sbin/sshd",
        ),
    ]);
}

#[test]
fn every_profile_enforces_under_mode_enforce() {
    let why = "mode = \"enforce\" is configured";
    refused_each(&[
        ("flags", "profile custom.f /opt/f flags=(complain) {}\n", why),
        ("bare", "profile custom.m (complain) { /tmp/** r, }\n", why),
        ("spaced", "profile custom.s flags = (complain) {}\n", why),
        (
            "unconfined",
            "profile custom.u flags=(unconfined) {}\n",
            "declares unconfined mode",
        ),
        ("kill", "profile custom.k flags=(kill) {}\n", "declares kill mode"),
        (
            "child",
            "profile custom.m2 {\n  profile inner flags=(complain) {}\n}\n",
            "`custom.m2//inner` declares complain mode",
        ),
        (
            "hat",
            "profile custom.h {\n  ^hat flags=(complain) {}\n}\n",
            "`custom.h//hat` declares complain mode",
        ),
    ]);
}

#[test]
fn abi_follows_the_include_policy() {
    refused_each(&[
        (
            "abs",
            "abi \"/etc/shadow\",\nprofile custom.a {}\n",
            "outside the system's AppArmor directories",
        ),
        ("dots", "abi <../../../etc/shadow>,\nprofile custom.b {}\n", "`..`"),
        ("split", "abi\n  <../../x>,\nprofile custom.c {}\n", "`..`"),
    ]);
}

#[test]
fn within_the_bounds_everything_loads() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/a", "abi <abi/3.0>,\ninclude <tunables/global>\nprofile custom.a /opt/app/** {\n  include <abstractions/base>\n  ^hat {}\n  profile child /opt/app/helper {}\n}\n");
    t.write(
        "src/b",
        "alias /usr/ -> /opt/usr/,\nprofile custom.b /usr/local/bin/tool {}\n",
    );
    t.write("src/c", "profile custom.c {}\n");
    let (code, s) = once(
        &t,
        &BOUNDED.replace("/usr/local/bin/*\"]", "/usr/local/bin/*\", \"/opt/usr/local/bin/*\"]"),
    );
    assert_eq!(code, 0, "{s}");
    let k = t.read("state/simulate/profiles");
    for n in [
        "custom.a (enforce)",
        "custom.a//hat (enforce)",
        "custom.a//child (enforce)",
        "custom.b (enforce)",
        "custom.c (enforce)",
    ] {
        assert!(k.contains(n), "{n}: {k}\n{s}");
    }
}

#[test]
fn a_revision_directory_outside_the_source_is_never_read() {
    let t = Tree::new();
    t.write("secret/p", "profile custom.secret {}\n");
    std::fs::create_dir_all(t.path("cm")).unwrap();
    symlink(t.path("secret"), t.path("cm/..x")).unwrap();
    symlink("..x", t.path("cm/..data")).unwrap();
    symlink("..data/p", t.path("cm/p")).unwrap();
    std::fs::create_dir_all(t.path("gs/.worktrees")).unwrap();
    symlink(t.path("secret"), t.path("gs/.worktrees/abc")).unwrap();
    symlink(".worktrees/abc", t.path("gs/current")).unwrap();
    // A good source beside them: the kernel's file is there to look at.
    t.write("plain/ok", "profile custom.ok {}\n");
    let cfg = "state_dir = \"state\"\n[denials]\nenabled = false\n[[source]]\npath = \"cm\"\n[[source]]\npath = \"gs\"\nlink = \"current\"\n[[source]]\npath = \"plain\"\n";
    let (code, s) = once(&t, cfg);
    assert_ne!(code, 0, "{s}");
    assert!(!s.contains("custom.secret"), "{s}");
    assert!(s.contains("symlink or not a directory"), "{s}");
    assert_eq!(t.read("state/simulate/profiles"), "custom.ok (enforce)\n", "{s}");
}

#[test]
fn a_tightened_configuration_judges_what_is_loaded() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/trial", "profile custom.trial /usr/sbin/sshd flags=(complain) {}\n");
    t.write("src/fine", "profile custom.fine /opt/x {}\n");
    let open = "state_dir = \"state\"\n[denials]\nenabled = false\n[[source]]\npath = \"src\"\n";
    let (code, s) = once(&t, open);
    assert_eq!(code, 0, "{s}");
    assert!(t.read("state/simulate/profiles").contains("custom.trial (complain)"));
    // Tightened: the loaded profile is judged again, reported, and kept
    // (it keeps protecting its names; nothing is unloaded by a config change).
    let (code, s) = once(&t, BOUNDED);
    assert_eq!(code, 2, "{s}");
    let lines = about(&s, &t, "trial");
    assert_eq!(lines.len(), 1, "{s}");
    assert!(
        lines[0].contains("attaches to /usr/sbin/sshd") || lines[0].contains("complain mode"),
        "{s}"
    );
    assert!(about(&s, &t, "fine").is_empty(), "{s}");
    let k = t.read("state/simulate/profiles");
    assert!(
        k.contains("custom.trial (complain)") && k.contains("custom.fine (enforce)"),
        "{k}"
    );
    // Without the cached compile, the same verdict (a new compile).
    std::fs::remove_dir_all(t.path("state/cache")).unwrap();
    let (code, s2) = once(&t, BOUNDED);
    assert_eq!(code, 2, "{s2}");
    assert_eq!(about(&s2, &t, "trial"), lines, "{s2}");
}

#[test]
fn a_hat_at_the_top_level_is_judged_by_its_name() {
    if real_parser().is_none() {
        return;
    }
    let t = Tree::new();
    t.write("src/hat", "hat /usr/sbin/sshd {\n}\n");
    t.write("src/caret", "^/usr/sbin/sshd {\n}\n");
    t.write("src/ok", "profile /opt/tool {\n}\n");
    let cfg = BOUNDED.replace("profile_prefix = \"custom.\"\n", "");
    let (code, s) = once(&t, &cfg);
    assert_eq!(code, 2, "{s}");
    for f in ["hat", "caret"] {
        let lines = about(&s, &t, f);
        assert_eq!(lines.len(), 1, "{f}: {s}");
        assert!(lines[0].contains("attaches to /usr/sbin/sshd"), "{f}: {lines:?}");
    }
    assert_eq!(t.read("state/simulate/profiles"), "/opt/tool (enforce)\n");
}

#[test]
fn the_parser_never_opens_an_include_outside_the_policy() {
    let t = Tree::new();
    t.write("outside/x", "profile custom.included {}\n");
    let x = t.path("outside/x").display().to_string();
    let dots = x
        .trim_start_matches('/')
        .split('/')
        .map(|_| "\\x2e\\x2e")
        .collect::<Vec<_>>()
        .join("/");
    let cases = [
        (
            "hex",
            format!("include \"/etc/apparmor.d/{dots}{x}\"\nprofile custom.a {{}}\n"),
            "escape sequences",
        ),
        (
            "abi",
            format!("abi \"/etc/apparmor.d/{dots}{x}\",\nprofile custom.b {{}}\n"),
            "escape sequences",
        ),
        (
            "hash",
            format!("profile custom.c {{\n /tmp/a#b r, include \"{x}\"\n}}\n"),
            "outside",
        ),
        (
            "quote",
            format!("profile custom.d {{\n \"/tmp/a\n# \" r,  include \"{x}\"\n}}\n"),
            "outside",
        ),
    ];
    for (name, text, _) in &cases {
        t.write(&format!("src/{name}"), text);
    }
    t.write("src/good", "profile custom.good /opt/app/bin/run {\n}\n");
    let (code, s) = once(&t, BOUNDED);
    assert_eq!(code, 2, "{s}");
    for (name, _, why) in &cases {
        let lines = about(&s, &t, name);
        assert_eq!(lines.len(), 1, "{name}: {s}");
        assert!(
            lines[0].contains(why) && lines[0].contains("include policy"),
            "{name}: {lines:?}"
        );
    }
    assert!(!s.contains("custom.included"), "{s}");
}
