//! Each lint with a fixture that shows it (tests/fixtures/lint) and the
//! same fixture changed so that it does not.

use super::*;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lint")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn host() -> Host {
    Host {
        loaded: ["custom.app", "custom.a"].into_iter().map(String::from).collect(),
        features: ["namespaces", "network", "network/af_unix", "signal"]
            .into_iter()
            .map(String::from)
            .collect(),
        default_abi: "the ABI of /usr/share/apparmor-features/features".into(),
    }
}

fn names(lints: &[Lint]) -> Vec<&'static str> {
    lints.iter().map(|l| l.name).collect()
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

#[test]
fn deny_rules_in_a_complaining_profile_are_said_to_block() {
    let text = fixture("deny-in-complain.profile");
    let l = profile(&text, false, &host(), &none());
    assert_eq!(names(&l), ["deny-in-complain"]);
    assert_eq!(l[0].line, Some(7), "the rule, not the comment");
    assert!(l[0].message.starts_with("1 deny rules"), "{l:?}");
    // Enforced: nothing to say. Forced into complain (or in trial): said.
    let enforced = text.replace("flags=(complain) ", "");
    assert!(profile(&enforced, false, &host(), &none()).is_empty());
    assert_eq!(names(&profile(&enforced, true, &host(), &none())), ["deny-in-complain"]);
}

#[test]
fn a_container_profile_must_let_a_confined_runtime_signal_it() {
    let text = fixture("runtime-signal.profile");
    // runc not confined here: nothing to say.
    assert!(profile(&text, false, &host(), &none()).is_empty());
    let mut h = host();
    h.loaded.insert("runc".into());
    let l = profile(&text, false, &h, &none());
    assert_eq!(names(&l), ["runtime-signal"]);
    assert_eq!(l[0].fix, "add `signal (receive) peer=runc,`");
    let fixed = text.replace("  /** rw,", "  signal (receive) peer=runc,\n  /** rw,");
    assert!(profile(&fixed, false, &h, &none()).is_empty());
    // A signal rule with no peer and no permissions allows it too; a send
    // only rule does not.
    assert!(profile(&text.replace("  /** rw,", "  signal,\n  /** rw,"), false, &h, &none()).is_empty());
    assert!(
        !profile(
            &text.replace("  /** rw,", "  signal (send) peer=runc,\n  /** rw,"),
            false,
            &h,
            &none()
        )
        .is_empty()
    );
    // A profile that attaches to a program is not a container's.
    let attached = text.replace("flags=(attach_disconnected)", "/usr/bin/x");
    assert!(profile(&attached, false, &h, &none()).is_empty());
}

#[test]
fn a_peer_not_loaded_or_stacked_is_said() {
    let text = fixture("peer-not-loaded.profile");
    let l = profile(&text, false, &host(), &none());
    assert_eq!(names(&l), ["peer-not-loaded", "peer-not-loaded"], "{l:?}");
    assert_eq!((l[0].line, l[1].line), (Some(3), Some(4)));
    assert!(l[0].message.contains("custom.gone"));
    assert!(l[1].message.contains("stack"));
    let fixed = text
        .replace("custom.gone", "custom.a")
        .replace("custom.app//&runc", "custom.app");
    assert!(profile(&fixed, false, &host(), &none()).is_empty());
}

#[test]
fn no_abi_line_says_what_the_parser_assumes() {
    let text = fixture("no-abi.profile");
    let l = profile(&text, false, &host(), &none());
    assert_eq!(names(&l), ["no-abi"]);
    assert!(l[0].message.contains("/usr/share/apparmor-features/features"));
    assert!(profile(&format!("abi <abi/3.0>,\n{text}"), false, &host(), &none()).is_empty());
}

#[test]
fn a_rule_the_kernel_does_not_mediate_is_said() {
    let text = fixture("unmediated.profile");
    assert!(profile(&text, false, &host(), &none()).is_empty());
    let mut old_kernel = host();
    old_kernel.features.remove("namespaces");
    let l = profile(&text, false, &old_kernel, &none());
    assert_eq!(names(&l), ["unmediated"]);
    assert_eq!(l[0].line, Some(3));
    // Features not known: nothing is said.
    old_kernel.features.clear();
    assert!(profile(&text, false, &old_kernel, &none()).is_empty());
}

#[test]
fn a_spec_that_runs_a_missing_program_is_said() {
    let text = fixture("spec-exec-missing.allow.toml");
    let s = crate::spec::Spec::parse(&text).unwrap();
    let l = spec(&s, |p| p == "/usr/bin/true", &none());
    assert_eq!(names(&l), ["spec-exec-missing"]);
    assert!(l[0].message.contains("/usr/bin/nginxx"));
    assert!(spec(&s, |_| true, &none()).is_empty());
}

#[test]
fn a_file_or_the_configuration_silences_a_lint() {
    let text = fixture("no-abi.profile");
    let silenced_text = format!("# armord: lint-off no-abi, deny-in-complain\n{text}");
    assert_eq!(
        silenced(&silenced_text),
        ["deny-in-complain".to_owned(), "no-abi".to_owned()].into()
    );
    let off = silenced(&silenced_text);
    assert!(profile(&silenced_text, false, &host(), &off).is_empty());
    let global: BTreeSet<String> = ["no-abi".to_owned()].into();
    assert!(profile(&text, false, &host(), &global).is_empty());
    for n in NAMES {
        assert!(!n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    }
}

proptest::proptest! {
    /// The kept list answers as the parsed list would, whatever its lines,
    /// searched or from its set.
    #[test]
    fn the_kernel_list_kept_as_text_answers_as_the_parsed_list(
        lines in proptest::collection::vec(("[a-c ()/]{1,6}", "(enforce|complain|kill)?"), 0..12),
        asked in "[a-c ()/]{0,6}",
    ) {
        let text: String = lines.iter().map(|(n, m)| format!("{n} ({m})\n")).collect();
        let parsed = crate::apparmor::parse_profiles_file(std::path::Path::new("profiles"), &text).unwrap();
        // Asked a few times, searched; asked many, the set made once.
        let kept = super::LoadedList::from_text(&text);
        for round in 0..4 {
            for (n, _) in &lines {
                proptest::prop_assert_eq!(
                    kept.contains(n),
                    parsed.contains_key(n.as_str()),
                    "{:?} in {:?}, round {}", n, text, round
                );
            }
            proptest::prop_assert_eq!(kept.contains(&asked), parsed.contains_key(asked.as_str()));
            for _ in 0..super::SEARCHES_BEFORE_SET / 2 {
                let _ = kept.contains("custom.none");
            }
        }
        proptest::prop_assert!(kept.set.get().is_some());
    }
}
