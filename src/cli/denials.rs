//! `armorctl denials`: denials read back from the journal.

use super::*;

/// Run `journalctl -o json` over armord's denial entries.
pub(super) fn journal_query(
    cfg: &config::Config,
    profile: Option<&str>,
    since: Option<&str>,
    follow: bool,
) -> Result<std::process::Child, CliError> {
    let mut c = Command::new(&cfg.denials.journalctl);
    c.args(["--output=json", "--no-pager"]);
    c.arg(format!("MESSAGE_ID={MESSAGE_ID}"));
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

/// Each re-logged record from the journal (the ARMORD_RECORD field).
pub(super) fn journal_records(
    child: &mut std::process::Child,
    mut each: impl FnMut(serde_json::Value, serde_json::Value) -> bool,
) {
    let Some(out) = child.stdout.take() else { return };
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(rec) = entry
            .get("ARMORD_RECORD")
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
        else {
            continue;
        };
        if !each(entry, rec) {
            break;
        }
    }
}

pub(super) fn denials(cfg: &config::Config, a: &DenialsArgs) -> Result<i32, CliError> {
    let mut child = journal_query(cfg, a.profile.as_deref(), a.since.as_deref(), a.follow)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0;
    journal_records(&mut child, |entry, rec| {
        n += 1;
        let line = if a.json {
            rec.to_string()
        } else {
            let s = |k: &str| {
                rec.get(k)
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .unwrap_or_default()
            };
            let when = entry
                .get("__REALTIME_TIMESTAMP")
                .and_then(|v| v.as_str())
                .and_then(|us| us.parse::<u64>().ok())
                .map(|us| format!("{}", us / 1_000_000))
                .unwrap_or_default();
            format!(
                "{when} {} {} {} {} {} comm={} pid={}",
                s("kind"),
                if rec.get("profile").is_some() {
                    s("profile")
                } else {
                    s("label")
                },
                s("operation"),
                if rec.get("name").is_some() {
                    s("name")
                } else {
                    s("capname")
                },
                if rec.get("denied").is_some() {
                    s("denied")
                } else {
                    s("mask")
                },
                s("comm"),
                s("pid")
            )
        };
        writeln!(out, "{line}").is_ok()
    });
    let _ = child.wait();
    if n == 0 && !a.json {
        eprintln!(
            "armorctl: no denials recorded{}",
            a.profile.as_ref().map(|p| format!(" for {p}")).unwrap_or_default()
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
