//! Files for other node agents, kept current after every reconcile, each
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
    let mut names: Vec<&str> = published
        .profiles
        .iter()
        .filter(|p| !p.name.is_empty() && p.state != "deferred")
        .map(|p| p.name.as_str())
        .collect();
    names.sort();
    names.dedup();
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
    o
}

/// Write the configured exports; failures are logged, never fatal.
pub fn write(cfg: &Config, published: &Published, counters: &Arc<Mutex<Counters>>, m: &Metrics) {
    if let Some(path) = &cfg.exports.nfd_features_file
        && let Err(e) = crate::state::atomic_write_readable(path, nfd_lines(published).as_bytes())
    {
        log::warn!("export: {e}");
    }
    if let Some(path) = &cfg.exports.prometheus_textfile {
        let c = counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = crate::state::atomic_write_readable(path, prometheus_text(published, &c, m).as_bytes()) {
            log::warn!("export: {e}");
        }
    }
}
