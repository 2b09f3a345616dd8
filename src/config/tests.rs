//! The configuration as files give it: merging, defaults, every refusal.

use super::*;

#[test]
fn defaults_need_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&dir.path().join("armord.toml")).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.sources[0].path, PathBuf::from(DEFAULT_SOURCE));
}

#[test]
fn dropins_merge_in_lexical_order_later_wins() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("armord.toml");
    std::fs::write(&main, "profile_prefix = \"a.\"\nmax_profiles = 5\n[parser]\njobs = 2\n").unwrap();
    std::fs::create_dir(dir.path().join("armord.toml.d")).unwrap();
    std::fs::write(dir.path().join("armord.toml.d/20-b.toml"), "profile_prefix = \"b.\"\n").unwrap();
    std::fs::write(
        dir.path().join("armord.toml.d/10-a.toml"),
        "profile_prefix = \"x.\"\n[parser]\njobs = 3\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("armord.toml.d/ignored.conf"), "garbage").unwrap();
    let c = load(&main).unwrap();
    assert_eq!(c.profile_prefix, "b.");
    assert_eq!(c.max_profiles, 5);
    assert_eq!(c.parser.jobs, 3);
}

#[test]
fn sources_accumulate_and_replace_the_default() {
    let c = load_from_strs(&[
        ("a.toml", "[[source]]\npath = \"/srv/a\"\n"),
        (
            "b.toml",
            "[[source]]\npath = \"/srv/b\"\nlayout = \"git-sync\"\nlink = \"current\"\nsubdir = \"profiles\"\n",
        ),
    ])
    .unwrap();
    assert_eq!(c.sources.len(), 2);
    assert_eq!(c.sources[1].layout, LayoutKind::GitSync);
    assert_eq!(c.sources[1].subdir.as_deref(), Some(Path::new("profiles")));
}

#[test]
fn unknown_key_names_file_and_line() {
    let e = load_from_strs(&[("/etc/armord/armord.toml", "\nprofile_prefx = \"x\"\n")]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("/etc/armord/armord.toml:2: "), "{msg}");
    assert!(msg.contains("profile_prefx"), "{msg}");
}

#[test]
fn unknown_key_in_table_is_refused() {
    let e = load_from_strs(&[("c.toml", "[parser]\ntimeout = 3\n")]).unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");
}

#[test]
fn bad_values_name_file_and_key() {
    let cases = [
        ("max_profiles = 0\n", "max_profiles"),
        ("[parser]\ntimeout_secs = 0\n", "parser.timeout_secs"),
        ("[[source]]\npath = \"/a\"\nsubdir = \"../x\"\n", "source.subdir"),
        (
            "[[source]]\npath = \"/a\"\nlayout = \"plain\"\nlink = \"l\"\n",
            "source.link",
        ),
        ("[[source]]\npath = \"/a\"\n[[source]]\npath = \"/a\"\n", "source.path"),
        ("debounce_ms = 500\ndebounce_max_ms = 100\n", "debounce_max_ms"),
        ("mass_removal_percent = 101\n", "mass_removal_percent"),
        ("allowed_attachments = [\"usr/bin/*\"]\n", "allowed_attachments"),
        ("trusted_keys = [\"\"]\n", "trusted_keys"),
    ];
    for (text, key) in cases {
        let e = load_from_strs(&[("/x/c.toml", text)]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/x/c.toml: key `"), "{text}: {msg}");
        assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
    }
}

#[test]
fn required_signatures_need_a_trusted_key() {
    let e = load_from_strs(&[("/x/c.toml", "[[source]]\npath = \"/s\"\nsignatures = \"required\"\n")]).unwrap_err();
    assert!(
        e.to_string().contains("`source.signatures`") && e.to_string().contains("/s requires signatures"),
        "{e}"
    );
    let c = load_from_strs(&[(
        "/etc/armord/armord.toml",
        "trusted_keys = [\"trusted-keys.d/*.pub\"]\n[[source]]\npath = \"/s\"\nsignatures = \"required\"\n",
    )])
    .unwrap();
    assert_eq!(c.trusted_keys, ["/etc/armord/trusted-keys.d/*.pub"]);
    assert_eq!(c.sources[0].signatures, Signatures::Required);
}

#[test]
fn relative_paths_are_relative_to_the_file() {
    let c = load_from_strs(&[(
        "/etc/armord/armord.toml.d/10.toml",
        "state_dir = \"../state\"\n[[source]]\npath = \"p\"\n[parser]\npath = \"apparmor_parser\"\ncache_dir = \"c\"\n",
    )])
    .unwrap();
    // Written as the user reads it: the leading `..` taken off.
    assert_eq!(c.state_dir, Path::new("/etc/armord/state"));
    assert_eq!(c.sources[0].path, Path::new("/etc/armord/armord.toml.d/p"));
    assert_eq!(c.parser.path, Path::new("apparmor_parser"));
    assert_eq!(c.parser.cache_dir, Path::new("/etc/armord/armord.toml.d/c"));
    let e = load_from_strs(&[("rel.toml", "state_dir = \"x\"\n")]).unwrap_err();
    assert!(e.to_string().contains("`state_dir`"), "{e}");
}

#[test]
fn bad_enum_value_is_an_error() {
    let e = load_from_strs(&[("c.toml", "mode = \"strict\"\n")]).unwrap_err();
    assert!(e.to_string().contains("strict"), "{e}");
}

#[test]
fn effective_config_round_trips_through_toml() {
    let c = load_from_strs(&[(
        "c.toml",
        "profile_prefix = \"custom.\"\n[[source]]\npath = \"/srv/p\"\nsubdir = \"x\"\n[parser]\nfeatures_file = \"/f\"\n",
    )])
    .unwrap();
    let text = c.to_toml();
    assert!(text.contains("state_dir = \"/var/lib/armord\""), "{text}");
    let again = load_from_strs(&[("printed.toml", &text)]).unwrap();
    assert_eq!(again, c);
}

#[test]
fn a_refused_value_names_its_line_in_the_file_that_set_it() {
    let e = load_from_strs(&[
        ("/x/a.toml", "[parser]\ntimeout_secs = 3\n"),
        ("/x/b.toml", "takeover = true\n\n[parser]\njobs = 2\ntimeout_secs = 0\n"),
    ])
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/x/b.toml: key `parser.timeout_secs` (line 5): must be greater than 0"
    );
    // The later file's value is the one judged.
    assert!(load_from_strs(&[("/x/a.toml", "max_profiles = 0\n"), ("/x/b.toml", "max_profiles = 3\n")]).is_ok());
}

#[test]
fn a_source_table_keeps_the_line_of_each_of_its_keys() {
    let e = load_from_strs(&[("/x/c.toml", "[[source]]\npath = \"/a\"\n\nsubdir = \"/abs\"\n")]).unwrap_err();
    assert!(
        e.to_string().starts_with("/x/c.toml: key `source.subdir` (line 4): "),
        "{e}"
    );
    let e = load_from_strs(&[("/x/c.toml", "[[source]]\nlayout = \"plain\"\n")]).unwrap_err();
    assert!(
        e.to_string().starts_with("/x/c.toml:") && e.to_string().contains("path"),
        "{e}"
    );
}

#[test]
fn keys_that_do_not_fit_together_are_named_with_the_files_that_set_them() {
    let e = load_from_strs(&[
        ("/x/a.toml", "removal_settle_ms = 9000\n"),
        ("/x/b.toml", "\nmass_removal_settle_secs = 5\n"),
    ])
    .unwrap_err();
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "keys `mass_removal_settle_secs` (/x/b.toml:2) and `removal_settle_ms` (/x/a.toml:1): \
         5s is shorter than removal_settle_ms (9000 ms)"
    );
    let e = load_from_strs(&[("/x/c.toml", "removal_settle_ms = 400000\n")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("keys `mass_removal_settle_secs` (default) and `removal_settle_ms` (/x/c.toml:1): "),
        "{e}"
    );
    let e = load_from_strs(&[("/x/c.toml", "[[source]]\npath = \"/s\"\nsignatures = \"required\"\n")]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("keys `source.signatures` (/x/c.toml:3) and `trusted_keys` (default): "),
        "{e}"
    );
}

#[test]
fn a_prefix_with_white_space_or_a_control_character_is_refused_saying_so() {
    for prefix in ["a b.", "a\\tb.", "a\\u0001b."] {
        let e = load_from_strs(&[("/x/c.toml", &format!("profile_prefix = \"{prefix}\"\n"))]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/x/c.toml: key `profile_prefix` (line 1): "), "{msg}");
        assert!(
            msg.ends_with("must not contain white space or control characters"),
            "{msg}"
        );
    }
}

#[test]
fn every_path_key_says_the_same_when_it_is_not_absolute() {
    for (text, key) in [
        ("state_dir = \"x\"\n", "state_dir"),
        ("[parser]\nfeatures_file = \"f\"\n", "parser.features_file"),
        (
            "[exports]\nprometheus_textfile = \"p\"\n",
            "exports.prometheus_textfile",
        ),
        ("[[source]]\npath = \"s\"\n", "source.path"),
    ] {
        let e = load_from_strs(&[("rel.toml", text)]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
        assert!(msg.ends_with(" is not an absolute path"), "{msg}");
    }
}

#[test]
fn limits_are_the_file_size_and_profile_count_bounds() {
    let c = load_from_strs(&[("/x/c.toml", "max_file_bytes = 7\nmax_profiles = 3\n")]).unwrap();
    let l = c.limits();
    assert_eq!((l.max_file_bytes, l.max_files), (7, 3));
}

#[test]
fn a_relative_path_from_the_working_directory_reads_as_written() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(absolute_from_cwd(Path::new("./a/b")), cwd.join("a/b"));
    assert_eq!(absolute_from_cwd(Path::new("/abs/./x")), Path::new("/abs/./x"));
    let mut up = cwd.clone();
    up.pop();
    assert_eq!(absolute_from_cwd(Path::new("../y")), up.join("y"));
}

#[test]
fn trial_settings_are_read_and_checked() {
    let c = load_from_strs(&[(
        "/x/c.toml",
        "[trial]\nmin_trial = \"2h\"\nfleet_spread = \"1d\"\nmax_rules = 10\nallow_demotion = true\n",
    )])
    .unwrap();
    assert_eq!(c.trial.min_trial, std::time::Duration::from_secs(7200));
    assert_eq!(c.trial.fleet_spread, std::time::Duration::from_secs(86400));
    assert_eq!((c.trial.max_rules, c.trial.allow_demotion), (10, true));
    let again = load_from_strs(&[("printed.toml", &c.to_toml())]).unwrap();
    assert_eq!(again, c);
    let cases = [
        ("[trial]\nmin_trial = \"soon\"\n", "trial.min_trial", "not a duration"),
        ("[trial]\nmin_trial = \"-1h\"\n", "trial.min_trial", "not a duration"),
        (
            "[trial]\nmin_trial = \"91d\"\n",
            "trial.min_trial",
            "longer than the most allowed, 90d",
        ),
        ("[trial]\nfleet_spread = \"5w\"\n", "trial.fleet_spread", "unknown unit"),
        ("[trial]\nmax_rules = 0\n", "trial.max_rules", "from 1 to"),
        (
            "[trial]\nmax_profiles = 2000000\n",
            "trial.max_profiles",
            "from 1 to 1000000",
        ),
    ];
    for (text, key, why) in cases {
        let msg = load_from_strs(&[("/x/c.toml", text)]).unwrap_err().to_string();
        assert!(
            msg.starts_with("/x/c.toml: key `") && msg.contains(&format!("`{key}`")),
            "{text}: {msg}"
        );
        assert!(msg.contains(why), "{text}: {msg}");
    }
}
