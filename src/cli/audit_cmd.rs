//! `armorctl audit parse`: audit records from files, one JSON object or text line each.

use super::*;

pub(super) fn text_line(r: &Record) -> String {
    let s = |k: &str| r.str(k).map(|v| v.into_owned()).unwrap_or_default();
    let mut out = format!(
        "{} {} {}",
        r.kind,
        r.profile().as_deref().unwrap_or("-"),
        s("operation")
    );
    for k in ["name", "capname", "denied", "mask", "comm", "pid"] {
        if let Some(v) = r.str(k) {
            out.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(id) = r.audit_id {
        out.push_str(&format!(" audit_id={id}"));
    }
    out
}

pub(super) fn audit_parse(file: &PathBuf, format: Format) -> Result<i32, CliError> {
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).map_err(|e| CliError::Io(file.clone(), e))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0;
    for (n, line) in input.split(b'\n').enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| CliError::Io(file.clone(), e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let printed = match (audit::parse(&text), format) {
            (Ok(r), Format::Json) => serde_json::to_string(&r).unwrap_or_default(),
            (Ok(r), Format::Text) => text_line(&r),
            (Err(e), Format::Json) => {
                bad += 1;
                serde_json::json!({ "line": n, "error": e.to_string() }).to_string()
            }
            (Err(e), Format::Text) => {
                bad += 1;
                format!("error: line {n}: {e}")
            }
        };
        if writeln!(out, "{printed}").is_err() {
            return Ok(0);
        }
    }
    let _ = out.flush();
    Ok(if bad > 0 { 2 } else { 0 })
}
