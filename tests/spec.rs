//! Allow-list specs: golden renderings, every rendered example compiles with
//! the real parser, errors name the spec file and the key, and armord loads a
//! spec like any other profile.

mod common;
use common::*;
use std::path::Path;

fn examples() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".allow.toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn renderings_match_the_golden_files_and_compile() {
    let ex = examples();
    assert!(ex.len() >= 2);
    let t = Tree::new();
    for spec in ex {
        let out = run(ARMORCTL, &["render", spec.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let name = spec
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".allow.toml", ".rendered");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/spec")
            .join(&name);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&golden).unwrap(),
            "{name}"
        );
        let again = run(ARMORCTL, &["render", spec.to_str().unwrap()]);
        assert_eq!(again.stdout, out.stdout, "rendering is not deterministic");
        if let Some(parser) = real_parser() {
            let f = t.write(&name, &String::from_utf8_lossy(&out.stdout));
            let features = armord::apparmor::default_features_file().unwrap();
            let c = std::process::Command::new(parser)
                .arg("-Q")
                .arg("-K")
                .arg("-M")
                .arg(features)
                .arg(&f)
                .output()
                .unwrap();
            assert!(c.status.success(), "{name}: {}", String::from_utf8_lossy(&c.stderr));
        }
    }
}

#[test]
fn bad_specs_name_the_file_and_key_and_good_ones_load() {
    let t = Tree::new();
    t.write(
        "src/custom.app.allow.toml",
        "name = \"custom.app\"\nexec = [\"/usr/bin/app\"]\nnetwork = [\"inet\"]\n",
    );
    t.write(
        "src/custom.bad.allow.toml",
        "name = \"custom.bad\"\nexec = [\"/usr/**\"]\n",
    );
    t.write(
        "src/custom.typo.allow.toml",
        "name = \"custom.typo\"\nexecs = [\"/bin/x\"]\n",
    );
    let out = once_sim(&t, "src");
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(
        s.contains(&format!(
            "error: {}: key `exec[0]`: \"/usr/**\": `**` is not allowed for executables",
            t.path("src/custom.bad.allow.toml").display()
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "error: {}: key `execs`:",
            t.path("src/custom.typo.allow.toml").display()
        )),
        "{s}"
    );
    assert!(
        t.read("state/simulate/profiles").contains("custom.app (enforce)"),
        "{s}"
    );
    // armorctl render reports the same.
    let out = run(
        ARMORCTL,
        &["render", t.path("src/custom.bad.allow.toml").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("custom.bad.allow.toml: key `exec[0]`"),
        "{}",
        text(&out)
    );
}

#[test]
fn suggest_spec_turns_an_exec_denial_into_a_spec_addition() {
    let recs: Vec<armord::audit::Record> = [
        r#"audit: type=1400 audit(1.1:1): apparmor="DENIED" operation="exec" class="file" profile="custom.app" name="/usr/bin/dash" pid=9 comm="app" requested_mask="x" denied_mask="x" fsuid=0 ouid=0"#,
        r#"audit: type=1400 audit(1.1:2): apparmor="DENIED" operation="open" class="file" profile="custom.app" name="/var/lib/app/db" pid=9 comm="app" requested_mask="wc" denied_mask="wc" fsuid=0 ouid=0"#,
        r#"audit: type=1400 audit(1.1:3): apparmor="DENIED" operation="capable" class="cap" profile="custom.app" pid=9 comm="app" capability=13 capname="net_raw""#,
    ]
    .iter()
    .map(|l| armord::audit::parse(l).unwrap())
    .collect();
    assert_eq!(
        armord::spec::suggest(&recs),
        [
            "exec = [\"/usr/bin/dash\"]",
            "write = [\"/var/lib/app/db\"]",
            "capabilities = [\"net_raw\"]"
        ]
    );
}
