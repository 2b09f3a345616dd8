//! `armorctl denials`: denials read back from the journal.

use super::*;

/// Run `journalctl -o json` over armord's denial entries: those with its
/// `MESSAGE_ID` that journald says `writer` wrote (with `writer: None`, all
/// with its `MESSAGE_ID`, to count the imitations).
pub(super) fn journal_query(
    cfg: &config::Config,
    writer: Option<&Writer>,
    profile: Option<&str>,
    since: Option<&str>,
    follow: bool,
) -> Result<std::process::Child, CliError> {
    let mut c = Command::new(&cfg.denials.journalctl);
    // --all: a long record, or one with unprintable bytes (a process may
    // name itself so), comes whole, not as null.
    c.args(["--output=json", "--all", "--no-pager"]);
    c.arg(format!("MESSAGE_ID={MESSAGE_ID}"));
    if let Some(w) = writer {
        c.args(w.matches());
    }
    if let Some(p) = profile {
        c.arg(format!("ARMORD_PROFILE={p}"));
    }
    if let Some(s) = since {
        c.arg(format!("--since={s}"));
    }
    if follow {
        c.arg("--follow");
    }
    c.stdout(Stdio::piped()).stdin(Stdio::null());
    c.spawn()
        .map_err(|e| CliError::Spawn(cfg.denials.journalctl.clone(), e))
}

/// Each re-logged record from the journal (the ARMORD_RECORD field) that
/// journald says `writer` wrote; any other entry is skipped.
pub(super) fn journal_records(
    child: &mut std::process::Child,
    writer: &Writer,
    mut each: impl FnMut(serde_json::Value, serde_json::Value) -> bool,
) {
    let Some(out) = child.stdout.take() else { return };
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if !writer.wrote(&entry) {
            continue;
        }
        let Some(rec) = entry
            .get("ARMORD_RECORD")
            .and_then(crate::journal::field_string)
            .and_then(|s| serde_json::from_str(&s).ok())
        else {
            continue;
        };
        if !each(entry, rec) {
            break;
        }
    }
}

/// The entries with armord's `MESSAGE_ID` that `writer` did not write, by
/// their writer: counted, never shown as denials.
pub(super) fn imitations(
    cfg: &config::Config,
    writer: &Writer,
    profile: Option<&str>,
    since: Option<&str>,
) -> Imitations {
    let mut found = Imitations::default();
    let Ok(mut child) = journal_query(cfg, None, profile, since, false) else {
        return found;
    };
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                && !writer.wrote(&entry)
            {
                found.note(&entry);
            }
        }
    }
    let _ = child.wait();
    found
}

/// One re-logged denial as `armorctl denials` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(super) struct Row {
    /// Microseconds since the epoch (the journal's receive time).
    pub when_us: u64,
    pub kind: String,
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
    pub(super) fn of(entry: &serde_json::Value, rec: &serde_json::Value) -> Row {
        let s = |k: &str| {
            rec.get(k)
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                .unwrap_or_default()
        };
        let first = |ks: &[&str]| ks.iter().map(|k| s(k)).find(|v| !v.is_empty()).unwrap_or_default();
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        Row {
            when_us: field("__REALTIME_TIMESTAMP").parse().unwrap_or(0),
            kind: s("kind"),
            profile: first(&["profile", "label"]),
            operation: s("operation"),
            target: first(&["name", "capname", "peer", "peer_profile", "path", "addr"]),
            denied: first(&["denied", "mask", "requested"]),
            comm: s("comm"),
            pid: s("pid"),
            container: field("ARMORD_CONTAINER_ID"),
            pod: field("ARMORD_POD_UID"),
        }
    }

    /// One line, local time first, and no empty column.
    fn line(&self) -> String {
        let mut parts = vec![local_time(self.when_us / 1_000_000), self.kind.clone()];
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
fn short_id(id: &str) -> &str {
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

/// Denials grouped by (profile, operation, target, denied mask, container).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(super) struct Group {
    pub profile: String,
    pub operation: String,
    pub target: String,
    pub denied: String,
    pub container: String,
    pub pod: String,
    pub count: u64,
    pub first_us: u64,
    pub last_us: u64,
}

pub(super) fn summarize(rows: impl IntoIterator<Item = Row>) -> Vec<Group> {
    let mut by: std::collections::HashMap<(String, String, String, String, String), Group> = Default::default();
    for r in rows {
        let key = (
            r.profile.clone(),
            r.operation.clone(),
            r.target.clone(),
            r.denied.clone(),
            r.container.clone(),
        );
        let g = by.entry(key).or_insert_with(|| Group {
            profile: r.profile.clone(),
            operation: r.operation.clone(),
            target: r.target.clone(),
            denied: r.denied.clone(),
            container: r.container.clone(),
            pod: r.pod.clone(),
            count: 0,
            first_us: r.when_us,
            last_us: r.when_us,
        });
        g.count += 1;
        g.first_us = g.first_us.min(r.when_us);
        g.last_us = g.last_us.max(r.when_us);
        if g.pod.is_empty() {
            g.pod = r.pod;
        }
    }
    let mut out: Vec<Group> = by.into_values().collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| (&a.profile, &a.operation, &a.target).cmp(&(&b.profile, &b.operation, &b.target)))
    });
    out
}

/// The summary as an aligned table.
pub(super) fn summary_table(groups: &[Group]) -> String {
    let header = [
        "COUNT",
        "PROFILE",
        "OPERATION",
        "TARGET",
        "DENIED",
        "FIRST",
        "LAST",
        "CONTAINER",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    for g in groups {
        rows.push([
            g.count.to_string(),
            escape::text(&g.profile).into_owned(),
            escape::text(&g.operation).into_owned(),
            escape::text(&g.target).into_owned(),
            escape::text(&g.denied).into_owned(),
            local_time(g.first_us / 1_000_000),
            local_time(g.last_us / 1_000_000),
            if g.pod.is_empty() {
                short_id(&g.container).to_owned()
            } else {
                format!("{} (pod {})", short_id(&g.container), g.pod)
            },
        ]);
    }
    let mut width = [0usize; 8];
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if i == 0 {
                line.push_str(&format!("{c:>w$}"));
            } else {
                line.push_str(&format!("{c:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn denials(cfg: &config::Config, a: &DenialsArgs, writer: &Writer) -> Result<i32, CliError> {
    let follow = a.follow && !a.summary;
    if let Some(s) = imitations(cfg, writer, a.profile.as_deref(), a.since.as_deref()).summary() {
        eprintln!("armorctl: {s}");
    }
    let mut child = journal_query(cfg, Some(writer), a.profile.as_deref(), a.since.as_deref(), follow)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0;
    let mut rows = Vec::new();
    journal_records(&mut child, writer, |entry, rec| {
        n += 1;
        if a.summary {
            rows.push(Row::of(&entry, &rec));
            return true;
        }
        let line = if a.json {
            let mut rec = rec;
            if let Some(obj) = rec.as_object_mut() {
                for (k, key) in [("container_id", "ARMORD_CONTAINER_ID"), ("pod_uid", "ARMORD_POD_UID")] {
                    if let Some(v) = entry.get(key) {
                        obj.insert(k.into(), v.clone());
                    }
                }
            }
            rec.to_string()
        } else {
            Row::of(&entry, &rec).line()
        };
        writeln!(out, "{line}").is_ok()
    });
    let _ = child.wait();
    if a.summary {
        let groups = summarize(rows);
        if a.json {
            for g in &groups {
                let _ = writeln!(out, "{}", serde_json::to_string(g).unwrap_or_default());
            }
        } else if !groups.is_empty() {
            let _ = write!(out, "{}", summary_table(&groups));
        }
    }
    if n == 0 && !a.json {
        eprintln!(
            "armorctl: no denials recorded{}",
            a.profile
                .as_ref()
                .map(|p| format!(" for {}", escape::text(p)))
                .unwrap_or_default()
        );
    }
    Ok(0)
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
