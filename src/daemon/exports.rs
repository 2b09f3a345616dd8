//! Files for other node agents, kept current after every reconcile (a
//! change's 200 ms later, once for a burst), each
//! written atomically: a node-feature-discovery feature file (node labels
//! that tell the scheduler which profiles a node has) and a Prometheus
//! textfile-collector file for node_exporter.

use crate::config::Config;
use crate::dbus::Published;
use crate::journal::Counters;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Cumulative figures the loop keeps.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub reconciles: u64,
    pub last_duration_secs: f64,
    pub parser_failures: u64,
    /// Owned profiles put back after a removal behind armord's back.
    pub drift_repairs: u64,
    /// Rules each owned profile's loaded version learned.
    pub learned: std::collections::BTreeMap<String, usize>,
    /// Every trial, with its state and gate time.
    pub trials: Vec<crate::reconcile::TrialStatus>,
}

/// The NFD label prefix: NFD accepts `feature.node.kubernetes.io/` without
/// extra configuration.
pub const NFD_PREFIX: &str = "feature.node.kubernetes.io/apparmor-";

/// A Kubernetes label name (the part after `/`) for a profile: at most 63
/// characters of `[A-Za-z0-9._-]`, starting and ending alphanumeric. Names
/// that cannot be written that way get none.
pub fn label_name(profile: &str) -> Option<String> {
    let name = format!("apparmor-{profile}");
    let ok = name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    ok.then_some(name)
}

pub fn nfd_lines(published: &Published) -> String {
    // Only owned profiles have a name; the rows are kept by it, in order.
    let names = published
        .profiles
        .owned
        .iter()
        .filter(|(_, r)| r.state != "deferred")
        .map(|(n, _)| n.as_str());
    let mut out = String::new();
    for n in names {
        if let Some(l) = label_name(n) {
            let _ = writeln!(out, "feature.node.kubernetes.io/{l}=true");
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn prometheus_text(published: &Published, counters: &Counters, m: &Metrics) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# HELP armord_profiles Profiles by state after the last reconcile.");
    let _ = writeln!(o, "# TYPE armord_profiles gauge");
    let mut counts: Vec<(&String, &u32)> = published.counts.iter().collect();
    counts.sort();
    for (state, n) in counts {
        let _ = writeln!(o, "armord_profiles{{state=\"{}\"}} {n}", escape(state));
    }
    // Each family's HELP and TYPE right before its own samples, as the
    // text format requires.
    let rows = &published.profiles;
    let mut problems: Vec<crate::dbus::ProfileInfo> = rows
        .owned
        .iter()
        .filter(|(_, r)| r.state != "loaded")
        .map(|(n, r)| r.info(n))
        .chain(rows.files.iter().filter(|p| p.state != "loaded").cloned())
        .collect();
    problems.sort_by(|a, b| (&a.state, &a.name, &a.file).cmp(&(&b.state, &b.name, &b.file)));
    let _ = writeln!(
        o,
        "# HELP armord_profile_problem A profile or file not simply loaded: invalid (the last good version stays loaded), conflict, refused, loadfailed, removefailed, deferred or held."
    );
    let _ = writeln!(o, "# TYPE armord_profile_problem gauge");
    for p in problems.iter().filter(|p| p.state != "unavailable") {
        let _ = writeln!(
            o,
            "armord_profile_problem{{profile=\"{}\",file=\"{}\",state=\"{}\"}} 1",
            escape(&p.name),
            escape(&p.file),
            escape(&p.state)
        );
    }
    let _ = writeln!(
        o,
        "# HELP armord_source_unavailable A configured source that cannot be read (its last-good policy is kept)."
    );
    let _ = writeln!(o, "# TYPE armord_source_unavailable gauge");
    for p in problems.iter().filter(|p| p.state == "unavailable") {
        let _ = writeln!(o, "armord_source_unavailable{{source=\"{}\"}} 1", escape(&p.file));
    }
    let _ = writeln!(
        o,
        "# HELP armord_ready 1 when the last reconcile left the node ready: every file loaded, nothing held."
    );
    let _ = writeln!(o, "# TYPE armord_ready gauge");
    let _ = writeln!(o, "armord_ready {}", u8::from(published.state == "ready"));
    let _ = writeln!(
        o,
        "# HELP armord_profile_version Each profile armord owns, by the first 12 hex digits of its loaded version's SHA-256 (a fleet mid-rollout shows two)."
    );
    let _ = writeln!(o, "# TYPE armord_profile_version gauge");
    for p in published
        .profiles
        .iter()
        .filter(|p| !p.name.is_empty() && !p.sha256.is_empty())
    {
        let _ = writeln!(
            o,
            "armord_profile_version{{profile=\"{}\",version=\"{}\",mode=\"{}\"}} 1",
            escape(&p.name),
            escape(p.sha256.get(..12).unwrap_or(&p.sha256)),
            escape(&p.mode)
        );
    }
    let _ = writeln!(o, "# HELP armord_reconciles_total Reconciles run since start.");
    let _ = writeln!(o, "# TYPE armord_reconciles_total counter");
    let _ = writeln!(o, "armord_reconciles_total {}", m.reconciles);
    let _ = writeln!(
        o,
        "# HELP armord_reconcile_duration_seconds Duration of the last reconcile."
    );
    let _ = writeln!(o, "# TYPE armord_reconcile_duration_seconds gauge");
    let _ = writeln!(o, "armord_reconcile_duration_seconds {}", m.last_duration_secs);
    let _ = writeln!(
        o,
        "# HELP armord_parser_failures_total Files the parser rejected or failed on, since start."
    );
    let _ = writeln!(o, "# TYPE armord_parser_failures_total counter");
    let _ = writeln!(o, "armord_parser_failures_total {}", m.parser_failures);
    let _ = writeln!(
        o,
        "# HELP armord_drift_repairs_total Owned profiles put back after a removal behind armord's back, since start."
    );
    let _ = writeln!(o, "# TYPE armord_drift_repairs_total counter");
    let _ = writeln!(o, "armord_drift_repairs_total {}", m.drift_repairs);
    let _ = writeln!(
        o,
        "# HELP armord_learned_rules Rules the loaded version of a profile learned: what it would have denied."
    );
    let _ = writeln!(o, "# TYPE armord_learned_rules gauge");
    for (profile, n) in &m.learned {
        let _ = writeln!(o, "armord_learned_rules{{profile=\"{}\"}} {n}", escape(profile));
    }
    let _ = writeln!(
        o,
        "# HELP armord_trial Profiles in trial or promoted from one, by state (trial, held, promoted)."
    );
    let _ = writeln!(o, "# TYPE armord_trial gauge");
    for t in &m.trials {
        let _ = writeln!(
            o,
            "armord_trial{{profile=\"{}\",state=\"{}\"}} 1",
            escape(&t.name),
            t.state
        );
    }
    let _ = writeln!(
        o,
        "# HELP armord_trial_gate_seconds When this node's promotion gate opens for the profile's version (seconds since the epoch)."
    );
    let _ = writeln!(o, "# TYPE armord_trial_gate_seconds gauge");
    for t in &m.trials {
        let _ = writeln!(
            o,
            "armord_trial_gate_seconds{{profile=\"{}\"}} {}",
            escape(&t.name),
            t.gate_us / 1_000_000
        );
    }
    let _ = writeln!(
        o,
        "# HELP armord_denials_total AppArmor records seen, by profile and kind, since start."
    );
    let _ = writeln!(o, "# TYPE armord_denials_total counter");
    for (profile, kinds) in &counters.by_profile {
        for (kind, n) in kinds {
            let _ = writeln!(
                o,
                "armord_denials_total{{profile=\"{}\",kind=\"{}\"}} {n}",
                escape(profile),
                escape(kind)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP armord_audit_lost_total Audit records the kernel reported lost."
    );
    let _ = writeln!(o, "# TYPE armord_audit_lost_total counter");
    let _ = writeln!(o, "armord_audit_lost_total {}", counters.lost);
    let _ = writeln!(
        o,
        "# HELP armord_audit_lost_since_seconds When the first lost audit record was reported (0: none)."
    );
    let _ = writeln!(o, "# TYPE armord_audit_lost_since_seconds gauge");
    let _ = writeln!(
        o,
        "armord_audit_lost_since_seconds {}",
        counters.lost_since_us.unwrap_or(0) / 1_000_000
    );
    let _ = writeln!(
        o,
        "# HELP armord_export_timestamp_seconds When armord wrote this file; it rewrites it at least every minute, so an old value means armord is down."
    );
    let _ = writeln!(o, "# TYPE armord_export_timestamp_seconds gauge");
    let _ = writeln!(
        o,
        "armord_export_timestamp_seconds {}",
        crate::trial::now_us() / 1_000_000
    );
    o
}

/// Why armord will not write into the directory of `path`: a user other
/// than root (or armord's own user) owns it or any directory above it, or
/// can write to it, or to a directory above it without the sticky bit; such
/// a user could replace or redirect armord's file. A directory that does
/// not exist yet is judged by the nearest one above it that does.
pub fn shared_directory(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent()?;
    // The directory as it resolves now, or the nearest that exists.
    let mut existing = dir.to_path_buf();
    let resolved = loop {
        match std::fs::canonicalize(&existing) {
            Ok(c) => break c,
            Err(_) => match existing.parent() {
                Some(p) => existing = p.to_path_buf(),
                None => return Some(format!("{}: no directory of it exists", crate::escape::path(path))),
            },
        }
    };
    let mut first = true;
    for d in resolved.ancestors() {
        let Ok(m) = std::fs::symlink_metadata(d) else { continue };
        if let Some(who) = crate::state::writable_by_others(&m, !first) {
            return Some(format!(
                "{}: the directory {} can be written by {who} (mode {:o}), who could replace or redirect armord's file there; \
                 not written (set exports.shared_directory = true to write there anyway)",
                crate::escape::path(path),
                crate::escape::path(d),
                m.mode() & 0o7777
            ));
        }
        first = false;
    }
    None
}

/// Write the configured exports; failures are logged, never fatal.
pub fn write(cfg: &Config, published: &Published, counters: &Arc<Mutex<Counters>>, m: &Metrics) {
    let allowed = |path: &std::path::Path| {
        let refused = (!cfg.exports.shared_directory)
            .then(|| shared_directory(path))
            .flatten();
        if let Some(why) = &refused {
            // Once per path and process: it is said again after a restart.
            static SAID: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
            let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
            if !said.iter().any(|p| p == path) {
                said.push(path.to_owned());
                log::error!("export: {why}");
            }
        }
        refused.is_none()
    };
    if let Some(path) = &cfg.exports.nfd_features_file
        && allowed(path)
        && let Err(e) = crate::state::atomic_write_readable(path, nfd_lines(published).as_bytes())
    {
        log::warn!("export: {e}");
    }
    if let Some(path) = &cfg.exports.prometheus_textfile
        && allowed(path)
    {
        let c = counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = crate::state::atomic_write_readable(path, prometheus_text(published, &c, m).as_bytes()) {
            log::warn!("export: {e}");
        }
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;
    use crate::dbus::ProfileInfo;

    fn info(name: &str, state: &str, file: &str) -> ProfileInfo {
        ProfileInfo {
            name: name.into(),
            mode: "enforce".into(),
            state: state.into(),
            file: file.into(),
            sha256: if name.is_empty() {
                String::new()
            } else {
                "ab".repeat(32)
            },
            error: String::new(),
        }
    }

    #[test]
    fn what_the_alerts_read_is_exported_by_profile_and_source() {
        let published = Published {
            state: "degraded".into(),
            profiles: crate::dbus::ProfileRows {
                owned: [
                    info("custom.ok", "loaded", "/p/custom.ok"),
                    info("custom.bad", "invalid", "/p/custom.bad"),
                    info("custom.gone", "held", "/p/custom.gone"),
                ]
                .into_iter()
                .map(|i| (i.name.clone(), crate::dbus::Row::of(&i)))
                .collect(),
                files: vec![
                    info("", "refused", "/p/new\"file"),
                    info("", "unavailable", "/srv/policy"),
                ],
            },
            ..Published::default()
        };
        let text = prometheus_text(&published, &Counters::default(), &Metrics::default());
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        for want in [
            r#"armord_profile_problem{profile="custom.bad",file="/p/custom.bad",state="invalid"} 1"#,
            r#"armord_profile_problem{profile="",file="/p/new\"file",state="refused"} 1"#,
            r#"armord_profile_problem{profile="custom.gone",file="/p/custom.gone",state="held"} 1"#,
            r#"armord_source_unavailable{source="/srv/policy"} 1"#,
            r#"armord_profile_version{profile="custom.ok",version="abababababab",mode="enforce"} 1"#,
            "armord_ready 0",
        ] {
            assert!(lines.contains(&want), "{want} missing:\n{text}");
        }
        assert!(!text.contains(r#"profile="custom.ok",file"#), "{text}");
        // Every sample follows its own family's TYPE line.
        let mut family = "";
        for l in text.lines() {
            if let Some(t) = l.strip_prefix("# TYPE ") {
                family = t.split(' ').next().unwrap();
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{l} follows the TYPE of {family}");
            }
        }
        let now = crate::trial::now_us() / 1_000_000;
        let at: u64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("armord_export_timestamp_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(now.abs_diff(at) <= 1, "{at} vs {now}");
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_can_write_is_refused_unless_configured() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("textfile");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("armord.prom");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(shared_directory(&file), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = shared_directory(&file).unwrap();
        assert!(
            why.contains("every user") && why.contains("exports.shared_directory"),
            "{why}"
        );
        let mut cfg = Config::default();
        cfg.exports.prometheus_textfile = Some(file.clone());
        let counters = Arc::new(Mutex::new(Counters::default()));
        write(&cfg, &Published::default(), &counters, &Metrics::default());
        assert!(!file.exists());
        cfg.exports.shared_directory = true;
        write(&cfg, &Published::default(), &counters, &Metrics::default());
        assert!(file.exists());
        if nix::unistd::geteuid().is_root() {
            // Owned by another user, even read-only (its owner may chmod).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert!(shared_directory(&file).unwrap().contains("uid 65534"));
            // A root-owned directory under one another user owns (who
            // could swap it for a symlink).
            nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(d.path(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            assert!(shared_directory(&file).unwrap().contains("uid 65534"));
            nix::unistd::chown(d.path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
            // Not there yet: judged by the directory above.
            assert_eq!(shared_directory(&dir.join("sub/armord.prom")), None);
        }
    }
}
