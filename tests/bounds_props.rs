//! For random profile files built from the grammar's pieces (headers,
//! flags in every spelling, children, hats, aliases, variables, includes,
//! comments, quotes and escapes), what armord decides from the compiled
//! policy equals what the file means: the names the parser's own `--names`
//! gives, the mode each profile was written with, and whether everything
//! it attaches to lies within the allowed globs. The real parser compiles
//! each file; a file it rejects proves nothing and is rejected as a case
//! (proptest draws another, and fails when too many are rejected).

mod common;
use armord::apparmor::{Mode, default_features_file, read_policy};
use armord::config::ForcedMode;
use armord::reconcile::Bounds;
use common::*;
use proptest::prelude::*;

const ALLOWED: [&str; 2] = ["/opt/**", "/usr/local/bin/*"];

/// Whether an executable path is inside ALLOWED (written out by hand, not
/// with armord's matcher).
fn allowed(path: &str) -> bool {
    path.strip_prefix("/opt/").is_some_and(|r| !r.is_empty())
        || path
            .strip_prefix("/usr/local/bin/")
            .is_some_and(|r| !r.is_empty() && !r.contains('/'))
}

#[derive(Debug, Clone)]
struct Prof {
    /// The attachment as written, and the executables it attaches to.
    attach: Option<(String, Vec<String>)>,
    /// The flags as written, and the mode they mean.
    flags: (String, &'static str),
    children: Vec<Prof>,
    hats: Vec<(String, &'static str)>,
    /// A rule or comment that hides a header from a careless scan.
    noise: String,
}

fn flags() -> impl Strategy<Value = (String, &'static str)> {
    prop::sample::select(vec![
        (String::new(), "enforce"),
        ("flags=(complain)".into(), "complain"),
        ("(complain)".into(), "complain"),
        ("flags = (complain)".into(), "complain"),
        ("flags=(attach_disconnected, complain)".into(), "complain"),
        ("flags=(unconfined)".into(), "unconfined"),
        ("flags=(kill)".into(), "kill"),
        ("flags=(audit)".into(), "enforce"),
        ("flags=(enforce)".into(), "enforce"),
    ])
}

/// Attachments with what they mean, given the file's preamble: `@{V}` is
/// `/usr/sbin/sshd /opt/v`, and the alias maps `/opt/a/` to `/usr/sbin/`.
fn attach(alias: bool) -> impl Strategy<Value = Option<(String, Vec<String>)>> {
    let mut v: Vec<Option<(String, Vec<String>)>> = vec![
        None,
        Some(("/opt/app/x".into(), vec!["/opt/app/x".into()])),
        Some(("/usr/local/bin/t".into(), vec!["/usr/local/bin/t".into()])),
        Some(("/usr/sbin/sshd".into(), vec!["/usr/sbin/sshd".into()])),
        Some(("\"/usr/sbin/sshd\"".into(), vec!["/usr/sbin/sshd".into()])),
        Some(("\"/opt/q x\"".into(), vec!["/opt/q x".into()])),
        Some(("/usr/local/bin/**".into(), vec!["/usr/local/bin/a/b".into()])),
        Some(("/usr/local/bin/*".into(), vec!["/usr/local/bin/z".into()])),
        Some(("/opt/{a,b}/c".into(), vec!["/opt/a/c".into(), "/opt/b/c".into()])),
        Some(("/{opt/x,usr/bin/y}".into(), vec!["/opt/x".into(), "/usr/bin/y".into()])),
        Some(("@{V}".into(), vec!["/usr/sbin/sshd".into(), "/opt/v".into()])),
        Some(("/opt/v".into(), vec!["/opt/v".into()])),
    ];
    if alias {
        v.push(Some((
            "/opt/a/sshd".into(),
            vec!["/opt/a/sshd".into(), "/usr/sbin/sshd".into()],
        )));
    } else {
        v.push(Some(("/opt/a/sshd".into(), vec!["/opt/a/sshd".into()])));
    }
    prop::sample::select(v)
}

fn noise() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        String::new(),
        "  # profile hidden /usr/sbin/sshd flags=(complain) {\n".into(),
        "  \"/tmp/a\\\"b\" r,\n".into(),
        "  /etc/{passwd,group} r,\n".into(),
        "  @{PROC}/@{pid}/stat r,\n".into(),
        "  include <abstractions/base>\n".into(),
        "  # }\n".into(),
    ])
}

fn prof(alias: bool, depth: u32) -> BoxedStrategy<Prof> {
    let children = if depth == 0 {
        Just(vec![]).boxed()
    } else {
        prop::collection::vec(prof(alias, depth - 1), 0..2).boxed()
    };
    (
        attach(alias),
        flags(),
        children,
        // Hats only in top-level profiles: the parser compiles a child's hat
        // as `child//hat`, a hat of a top-level `child` (refused; see
        // tests/bounds.rs).
        prop::collection::vec(flags(), 0..if depth == 0 { 1 } else { 2 }),
        noise(),
    )
        .prop_map(|(attach, flags, children, hats, noise)| Prof {
            attach,
            flags,
            children,
            hats,
            noise,
        })
        .boxed()
}

fn render(p: &Prof, name: &str, out: &mut String, indent: &str) {
    let a = p.attach.as_ref().map(|(a, _)| format!(" {a}")).unwrap_or_default();
    let f = if p.flags.0.is_empty() {
        String::new()
    } else {
        format!(" {}", p.flags.0)
    };
    out.push_str(&format!("{indent}profile {name}{a}{f} {{\n{indent}{}", p.noise));
    for (i, c) in p.children.iter().enumerate() {
        render(c, &format!("c{i}"), out, &format!("{indent}  "));
    }
    for (i, (hf, _)) in p.hats.iter().enumerate() {
        out.push_str(&format!("{indent}  ^h{i} {hf} {{\n{indent}  }}\n"));
    }
    out.push_str(&format!("{indent}}}\n"));
}

/// (full name, mode, attaches to) of a profile.
type Meant = (String, &'static str, Vec<String>);

/// What every profile in the file means.
fn meaning(p: &Prof, name: &str, out: &mut Vec<Meant>) {
    let execs = match &p.attach {
        Some((_, e)) => e.clone(),
        None => vec![],
    };
    out.push((name.to_owned(), p.flags.1, execs));
    for (i, c) in p.children.iter().enumerate() {
        meaning(c, &format!("{name}//c{i}"), out);
    }
    for (i, (_, m)) in p.hats.iter().enumerate() {
        out.push((format!("{name}//h{i}"), m, vec![]));
    }
}

fn file() -> impl Strategy<Value = (String, Vec<Meant>)> {
    any::<bool>().prop_flat_map(|alias| {
        (prop::collection::vec(prof(alias, 1), 1..3), any::<bool>()).prop_map(move |(profs, tunables)| {
            let mut text = String::from("# profile commented /usr/sbin/sshd {\n@{V}=/usr/sbin/sshd /opt/v\n");
            // The tunables define @{PROC} and what abstractions/base uses;
            // where and how they are included varies.
            text.push_str(if tunables {
                "include <tunables/global>\n"
            } else {
                "#include <tunables/global>\n"
            });
            if alias {
                text.push_str("alias /opt/a/ -> /usr/sbin/,\n");
            }
            let mut m = Vec::new();
            for (i, p) in profs.iter().enumerate() {
                render(p, &format!("custom.p{i}"), &mut text, "");
                meaning(p, &format!("custom.p{i}"), &mut m);
            }
            (text, m)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn decisions_equal_what_the_compiled_file_means((text, meant) in file()) {
        let Some(parser) = real_parser() else { return Ok(()) };
        let Some(features) = default_features_file() else {
            assert!(std::env::var_os("CI").is_none(), "CI must install apparmor: no features file (/usr/share/apparmor-features/features)");
            return Ok(());
        };
        let t = Tree::new();
        let f = t.write("p", &text);
        let out = std::process::Command::new(&parser).arg("-M").arg(&features).arg("-S").arg(&f).output().unwrap();
        prop_assume!(out.status.success(), "the parser rejects it");
        let profiles = read_policy(&out.stdout).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        // Names: the parser's own --names.
        let names = std::process::Command::new(&parser).arg("-M").arg(&features).arg("-N").arg(&f).output().unwrap();
        let mut want: Vec<String> = String::from_utf8_lossy(&names.stdout).lines().map(str::to_owned).collect();
        let mut got: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
        want.sort();
        got.sort();
        prop_assert_eq!(&got, &want, "{}", text);
        // Modes: as written.
        for (name, mode, _) in &meant {
            let p = profiles.iter().find(|p| &p.name == name);
            prop_assert!(p.is_some(), "{} missing\n{}", name, text);
            prop_assert_eq!(p.unwrap().mode.as_str(), *mode, "{}\n{}", name, text);
        }
        // The judgement under mode = "enforce" and the globs.
        let globs: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
        let bounded = Bounds::new(ForcedMode::Enforce, Some(globs.clone())).judge(&profiles);
        let ok_modes = meant.iter().all(|(_, m, _)| *m == "enforce");
        let ok_attach = meant.iter().all(|(_, _, e)| e.iter().all(|p| allowed(p)));
        prop_assert_eq!(bounded.is_ok(), ok_modes && ok_attach, "{:?}\n{}", bounded, text);
        let attach_only = Bounds::new(ForcedMode::AsWritten, Some(globs)).judge(&profiles);
        prop_assert_eq!(attach_only.is_ok(), ok_attach, "{:?}\n{}", attach_only, text);
        let modes_only = Bounds::new(ForcedMode::Enforce, None).judge(&profiles);
        prop_assert_eq!(modes_only.is_ok(), ok_modes, "{:?}\n{}", modes_only, text);
        if let Some(p) = profiles.iter().find(|p| p.mode != Mode::Enforce) {
            prop_assert!(modes_only.unwrap_err().contains("mode = \"enforce\""), "{}", p.name);
        }
    }
}
