//! The committed fuzz corpora, replayed through the fuzz targets' checks:
//! every input the fuzzers kept (and every crash they once found) stays a
//! regression test without libFuzzer.

#[path = "fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails its check", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
}

#[test]
fn audit_parse_corpus() {
    replay("audit_parse", checks::audit_parse);
}

#[test]
fn config_load_corpus() {
    replay("config_load", checks::config_load);
}

#[test]
fn source_snapshot_corpus() {
    replay("source_snapshot", checks::source_snapshot);
}

#[test]
fn profile_text_corpus() {
    replay("profile_text", checks::profile_text);
}

#[test]
fn compiled_policy_corpus() {
    replay("compiled_policy", checks::compiled_policy);
}
