//! `armorctl denials`: denials read back from the journal, one node's or a
//! fleet's (journal files shipped by systemd-journal-upload).

use super::journal_read::{Tally, journal_query, journal_records};
use super::summary::Summary;
use super::*;
use crate::journal::Relogged;

/// One re-logged denial as `armorctl denials` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(super) struct Row {
    /// Microseconds since the epoch (the journal's receive time).
    pub when_us: u64,
    pub kind: String,
    /// The node, as journald named it there (`_HOSTNAME`, `_MACHINE_ID`).
    pub host: String,
    pub machine_id: String,
    pub profile: String,
    pub operation: String,
    /// The path, capability or peer the record names.
    pub target: String,
    pub denied: String,
    pub comm: String,
    pub pid: String,
    pub container: String,
    pub pod: String,
}

impl Row {
    pub(super) fn of(entry: &Relogged, rec: &serde_json::Value) -> Row {
        let s = |k: &str| {
            rec.get(k)
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                .unwrap_or_default()
        };
        let first = |ks: &[&str]| ks.iter().map(|k| s(k)).find(|v| !v.is_empty()).unwrap_or_default();
        Row {
            when_us: entry.realtime_us,
            kind: s("kind"),
            host: entry.hostname.clone(),
            machine_id: entry.machine_id.clone(),
            profile: first(&["profile", "label"]),
            operation: s("operation"),
            target: first(&["name", "capname", "peer", "peer_profile", "path", "addr"]),
            denied: first(&["denied", "mask", "requested"]),
            comm: s("comm"),
            pid: s("pid"),
            container: entry.container_id.clone(),
            pod: entry.pod_uid.clone(),
        }
    }

    /// One line, local time and host first (as journalctl's own lines),
    /// and no empty column.
    fn line(&self) -> String {
        let host = if self.host.is_empty() { "-" } else { &self.host };
        let mut parts = vec![
            local_time(self.when_us / 1_000_000),
            escape::text(host).into_owned(),
            self.kind.clone(),
        ];
        for v in [&self.profile, &self.operation, &self.target, &self.denied] {
            if !v.is_empty() {
                parts.push(escape::text(v).into_owned());
            }
        }
        for (k, v) in [("comm", &self.comm), ("pid", &self.pid), ("pod", &self.pod)] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", escape::text(v)));
            }
        }
        if !self.container.is_empty() {
            parts.push(format!("container={}", short_id(&self.container)));
        }
        parts.join(" ")
    }
}

/// The first 12 characters of a 64-digit container ID, as runtimes show it.
pub(super) fn short_id(id: &str) -> &str {
    if id.len() == 64 { id.get(..12).unwrap_or(id) } else { id }
}

/// `2026-11-22 21:46:36` in the local time zone.
#[allow(unsafe_code)]
pub(super) fn local_time(secs: u64) -> String {
    let t = secs as nix::libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack
    // frame; a zeroed `tm` is a valid value of the plain C struct.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !nix::libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return secs.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

pub(super) fn denials(cfg: &config::Config, a: &DenialsArgs, writer: &Writer) -> Result<i32, CliError> {
    let follow = a.follow && !a.summary;
    let input = a.input.open(&cfg.denials.journalctl)?;
    input.warn();
    let mut child = journal_query(cfg, &input, a.profile.as_deref(), a.since.as_deref(), follow)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0u64;
    let mut summary = Summary::new(a.by);
    let mut tally = Tally {
        as_they_come: follow,
        ..Tally::default()
    };
    let read_to_end = journal_records(&mut child, writer, &mut tally, |entry, rec| {
        n += 1;
        if a.summary {
            summary.add(&Row::of(&entry, &rec));
            return true;
        }
        let line = if a.json {
            let mut rec = rec;
            if let Some(obj) = rec.as_object_mut() {
                for (k, v) in [
                    ("container_id", &entry.container_id),
                    ("pod_uid", &entry.pod_uid),
                    ("host", &entry.hostname),
                    ("machine_id", &entry.machine_id),
                ] {
                    if !v.is_empty() {
                        obj.insert(k.into(), v.clone().into());
                    }
                }
            }
            rec.to_string()
        } else {
            Row::of(&entry, &rec).line()
        };
        writeln!(out, "{line}").is_ok()
    });
    let failed = super::journal_read::finished(cfg, &mut child, read_to_end);
    if a.summary {
        let others = summary.others();
        let groups = summary.finish();
        if a.json {
            for g in &groups {
                let _ = writeln!(out, "{}", serde_json::to_string(g).unwrap_or_default());
            }
        } else if !groups.is_empty() {
            let _ = super::summary::write_table(a.by, &groups, &mut std::io::BufWriter::new(&mut out));
        }
        if others > 0 {
            eprintln!(
                "armorctl: {others} more denials fell in groups past the first {}, counted here only",
                super::summary::MAX_GROUPS
            );
        }
    }
    tally.warn();
    failed?;
    if n == 0 && !a.json {
        eprintln!(
            "armorctl: no denials recorded{}",
            a.profile
                .as_ref()
                .map(|p| format!(" for {}", escape::text(p)))
                .unwrap_or_default()
        );
    }
    Ok(input.exit_code())
}

/// A record from the JSON `armorctl audit parse` and ARMORD_RECORD write.
pub fn record_from_json(v: &serde_json::Value) -> Option<Record<'static>> {
    let obj = v.as_object()?;
    let mut rec = Record {
        kind: obj.get("kind")?.as_str()?.to_owned().into(),
        audit_id: obj
            .get("audit_id")
            .and_then(|s| s.as_str())
            .and_then(audit::AuditId::parse),
        fields: Vec::new(),
    };
    for (k, val) in obj {
        if k == "kind" || k == "audit_id" {
            continue;
        }
        let val = match val {
            serde_json::Value::Number(n) => audit::Value::Num(n.as_i64()?),
            serde_json::Value::String(s) => audit::Value::Str(s.clone().into()),
            _ => continue,
        };
        rec.fields.push((k.clone().into(), val));
    }
    Some(rec)
}
