//! Where `armorctl denials` and `suggest` read armord's re-logged entries
//! (this node's journal, every journal merged, or journal files from a
//! directory or paths, as journalctl reads them), and the one pass that
//! reads them: each entry is armord's only when journald says armord
//! wrote it; the rest are counted, never shown.
//!
//! Each file is opened alone first, so a corrupt, truncated or foreign file
//! is named and skipped: given to journalctl with the others, one such file
//! fails the whole read.

use super::*;
use crate::journal::{Relogged, parse_relogged};
use std::ffi::OsString;
use std::path::Path;

/// The exit code when some journal files were skipped (the rest were read).
pub const EXIT_SKIPPED: i32 = 3;

#[derive(Debug, Args, Default, Clone)]
pub struct JournalInput {
    /// Read the journal files in DIR and its machine-ID subdirectories, as
    /// `journalctl --directory` does (e.g. /var/log/journal/remote);
    /// repeatable.
    #[arg(long, short = 'D', value_name = "DIR")]
    pub directory: Vec<PathBuf>,
    /// Read this journal file; repeatable, and a glob (quoted) is expanded:
    /// `--file '/var/log/journal/remote/*.journal'`.
    #[arg(long, value_name = "PATH")]
    pub file: Vec<String>,
    /// Read every journal journalctl can see on this machine, interleaved,
    /// including remote ones (`journalctl --merge`).
    #[arg(long, short = 'm', conflicts_with_all = ["directory", "file"])]
    pub merge: bool,
}

/// The journalctl arguments that select the input, and the files skipped.
#[derive(Debug, Default)]
pub struct Opened {
    pub args: Vec<OsString>,
    /// (file, why): each named on stderr; the exit code says so.
    pub skipped: Vec<(PathBuf, String)>,
}

impl Opened {
    /// Name each skipped file on stderr.
    pub fn warn(&self) {
        for (f, why) in &self.skipped {
            eprintln!("armorctl: {}: skipped: {}", escape::path(f), escape::text(why));
        }
    }

    pub fn exit_code(&self) -> i32 {
        if self.skipped.is_empty() { 0 } else { EXIT_SKIPPED }
    }
}

/// A journal file's name: `*.journal`, or `*.journal~` (one journald
/// set aside after an unclean shutdown).
fn is_journal_name(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".journal") || n.ends_with(".journal~"))
}

/// A machine ID: 32 lowercase hex digits (journald's per-machine directory).
fn is_machine_id(n: &str) -> bool {
    n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The journal files journalctl reads for `--directory DIR`: those in DIR
/// and in its machine-ID subdirectories; a subdirectory that cannot be
/// read goes to `skipped`.
fn directory_files(dir: &Path, skipped: &mut Vec<(PathBuf, String)>) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && e.file_name().to_str().is_some_and(is_machine_id) {
            match std::fs::read_dir(&p) {
                Ok(sub) => out.extend(sub.flatten().map(|s| s.path()).filter(|s| is_journal_name(s))),
                Err(e) => skipped.push((p, e.to_string())),
            }
        } else if is_journal_name(&p) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

impl JournalInput {
    pub fn is_local(&self) -> bool {
        self.directory.is_empty() && self.file.is_empty() && !self.merge
    }

    /// The files to read, each opened alone by `journalctl` first; an
    /// error only when nothing at all is left to read.
    pub fn open(&self, journalctl: &Path) -> Result<Opened, CliError> {
        let mut opened = Opened::default();
        if self.merge {
            opened.args.push("--merge".into());
            return Ok(opened);
        }
        if self.is_local() {
            return Ok(opened);
        }
        let mut files: Vec<PathBuf> = Vec::new();
        for d in &self.directory {
            match directory_files(d, &mut opened.skipped) {
                Ok(f) if f.is_empty() => opened.skipped.push((d.clone(), "no journal files in it".into())),
                Ok(f) => files.extend(f),
                Err(e) => opened.skipped.push((d.clone(), e)),
            }
        }
        for pattern in &self.file {
            let globbed = pattern.contains(['*', '?', '[']);
            if !globbed {
                files.push(PathBuf::from(pattern));
                continue;
            }
            match glob::glob(pattern) {
                Ok(paths) => {
                    let mut found = 0;
                    for p in paths {
                        match p {
                            Ok(p) => {
                                found += 1;
                                files.push(p);
                            }
                            Err(e) => opened.skipped.push((e.path().to_owned(), e.error().to_string())),
                        }
                    }
                    if found == 0 {
                        opened.skipped.push((PathBuf::from(pattern), "no file matches".into()));
                    }
                }
                Err(e) => opened
                    .skipped
                    .push((PathBuf::from(pattern), format!("not a pattern: {e}"))),
            }
        }
        // A file named twice (a directory and a glob over it) is read once.
        files.sort();
        files.dedup();
        for f in files {
            match probe(journalctl, &f) {
                Ok(()) => {
                    let mut a = OsString::from("--file=");
                    a.push(f.as_os_str());
                    opened.args.push(a);
                }
                Err(why) => opened.skipped.push((f, why)),
            }
        }
        if opened.args.is_empty() {
            opened.warn();
            return Err(CliError::Other("no journal file could be read".into()));
        }
        Ok(opened)
    }
}

/// Whether journalctl can open `file` alone; why not, in its words.
fn probe(journalctl: &Path, file: &Path) -> Result<(), String> {
    match std::fs::metadata(file) {
        Ok(m) if !m.is_file() => return Err("not a regular file".into()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let mut a = OsString::from("--file=");
    a.push(file.as_os_str());
    let out = Command::new(journalctl)
        .arg(a)
        .args(["--header", "--quiet", "--no-pager"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", escape::path(journalctl)))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let why = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("journalctl cannot open it");
    // "Failed to open files: Bad message" → "not a journal file, or corrupt (Bad message)".
    let cause = why.rsplit(": ").next().unwrap_or(why).trim();
    Err(match cause {
        "Bad message" => "corrupt, or not a journal file (Bad message)".into(),
        "No data available" => "truncated, or not a journal file (No data available)".into(),
        "Protocol driver not attached" => "written by a newer journald (unsupported features)".into(),
        _ => cause.to_owned(),
    })
}

/// Run `journalctl -o json` over entries with armord's `MESSAGE_ID` from
/// `input` (journald's fields are checked on each entry as it is read).
pub(super) fn journal_query(
    cfg: &config::Config,
    input: &Opened,
    profile: Option<&str>,
    since: Option<&str>,
    follow: bool,
) -> Result<std::process::Child, CliError> {
    let mut c = Command::new(&cfg.denials.journalctl);
    // --all: a long record, or one with unprintable bytes (a process may
    // name itself so), comes whole, not as null.
    c.args(["--output=json", "--all", "--no-pager"]);
    c.args(&input.args);
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

/// What a read passed over: entries another writer made look like armord's,
/// and armord's own whose record cannot be read.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub imitations: Imitations,
    /// armord's own entries whose record cannot be read.
    pub malformed: u64,
    /// Lines that are no journal entry (not JSON, or longer than MAX_LINE).
    pub unreadable: u64,
    /// Print each imitation as it is read (`--follow`).
    pub as_they_come: bool,
}

impl Tally {
    /// One line each for the imitations and the malformed entries.
    pub fn warn(&self) {
        if let Some(s) = self.imitations.summary() {
            eprintln!("armorctl: {s}");
        }
        if self.unreadable > 0 {
            eprintln!(
                "armorctl: {} {} from journalctl could not be read (not JSON, or over {} bytes), skipped",
                self.unreadable,
                if self.unreadable == 1 { "line" } else { "lines" },
                crate::journal::MAX_LINE
            );
        }
        if self.malformed > 0 {
            eprintln!(
                "armorctl: {} {} from armord had no readable ARMORD_RECORD, skipped",
                self.malformed,
                if self.malformed == 1 { "entry" } else { "entries" }
            );
        }
    }
}

/// The record armord wrote in an entry: a JSON object with a `kind`.
fn record_of(entry: &Relogged) -> Option<serde_json::Value> {
    let rec: serde_json::Value = serde_json::from_str(entry.record.as_deref()?).ok()?;
    rec.get("kind")?.as_str()?;
    Some(rec)
}

/// Imitations named one by one on stderr with `--follow`; past it, only
/// counted (a user may write them as fast as they like).
const NAMED_IMITATIONS: u64 = 10;

/// Read one line of at most `MAX_LINE` bytes into `buf`; a longer one is
/// read past and left empty. False at the end of the output.
fn bounded_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> bool {
    use std::io::Read;
    buf.clear();
    let limit = crate::journal::MAX_LINE as u64 + 1;
    match reader.by_ref().take(limit).read_until(b'\n', buf) {
        Ok(0) | Err(_) => return false,
        Ok(_) => {}
    }
    if buf.len() as u64 == limit && buf.last() != Some(&b'\n') {
        buf.clear();
        // The rest of the long line, a bounded piece at a time.
        let mut rest = Vec::new();
        loop {
            rest.clear();
            match reader.by_ref().take(limit).read_until(b'\n', &mut rest) {
                Ok(0) | Err(_) => return false,
                Ok(_) if rest.last() == Some(&b'\n') => return true,
                Ok(_) => {}
            }
        }
    }
    true
}

/// Each re-logged record read from `child` that journald says `writer`
/// wrote, in order, until `each` says stop; every other entry is counted
/// in `tally`. True when journalctl's output was read to its end.
pub(super) fn journal_records(
    child: &mut std::process::Child,
    writer: &Writer,
    tally: &mut Tally,
    mut each: impl FnMut(Relogged, serde_json::Value) -> bool,
) -> bool {
    let Some(out) = child.stdout.take() else { return true };
    let mut reader = std::io::BufReader::with_capacity(1 << 16, out);
    let mut buf = Vec::new();
    loop {
        if !bounded_line(&mut reader, &mut buf) {
            return true;
        }
        // journalctl writes JSON, so UTF-8; anything else (or a line past
        // MAX_LINE) is no entry.
        let Some(entry) = std::str::from_utf8(&buf).ok().and_then(parse_relogged) else {
            tally.unreadable += 1;
            continue;
        };
        if !writer.wrote_as(entry.uid.as_deref(), entry.unit.as_deref()) {
            tally
                .imitations
                .note_writer(entry.uid.as_deref(), entry.comm.as_deref());
            if tally.as_they_come && tally.imitations.count <= NAMED_IMITATIONS {
                eprintln!(
                    "armorctl: ignored an entry imitating armord's (written by uid {} ({}))",
                    escape::text(entry.uid.as_deref().unwrap_or("?")),
                    escape::text(entry.comm.as_deref().unwrap_or("?"))
                );
            }
            continue;
        }
        let Some(rec) = record_of(&entry) else {
            tally.malformed += 1;
            continue;
        };
        if !each(entry, rec) {
            return false;
        }
    }
}

/// Wait for journalctl; an error when it failed after its output was read
/// to the end (what was shown may be incomplete: its own message said why).
pub(super) fn finished(
    cfg: &config::Config,
    child: &mut std::process::Child,
    read_to_end: bool,
) -> Result<(), CliError> {
    match child.wait() {
        Ok(st) if !st.success() && read_to_end => Err(CliError::Other(format!(
            "{} failed ({st}): what it read before is shown, the rest is not",
            escape::path(&cfg.denials.journalctl)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_is_no_entry_is_counted_and_the_next_is_read() {
        let entry = |uid: &str, rec: &str| {
            serde_json::json!({"_UID": uid, "_SYSTEMD_UNIT": "armord.service", "_COMM": "x", "_HOSTNAME": "h", "ARMORD_RECORD": rec})
                .to_string()
        };
        let good = entry("0", r#"{"kind":"DENIED","name":"/a"}"#);
        let lines = [
            "not json".to_owned(),
            "\u{fffd}".to_owned(),
            entry("0", "[1,2]"),
            entry("0", r#"{"name":"no kind"}"#),
            entry("1000", r#"{"kind":"DENIED","name":"/forged"}"#),
            good,
        ];
        let d = crate::state::private_temp_dir("armorctl-test").unwrap();
        let f = d.join("out");
        let mut bytes = lines.join("\n").into_bytes();
        // A byte that is no UTF-8, inside a line.
        bytes.splice(9..9, [0xff]);
        std::fs::write(&f, bytes).unwrap();
        let mut child = Command::new("cat").arg(&f).stdout(Stdio::piped()).spawn().unwrap();
        let mut tally = Tally::default();
        let mut seen = Vec::new();
        journal_records(&mut child, &Writer::node(), &mut tally, |e, rec| {
            seen.push((e.hostname, rec["name"].as_str().unwrap_or_default().to_owned()));
            true
        });
        let _ = child.wait();
        assert_eq!(seen, [("h".to_owned(), "/a".to_owned())]);
        assert_eq!((tally.unreadable, tally.malformed, tally.imitations.count), (2, 2, 1));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_holds_its_journal_files_and_its_machine_id_subdirectories() {
        let d = crate::state::private_temp_dir("armorctl-test").unwrap();
        let mid = "0123456789abcdef0123456789abcdef";
        std::fs::create_dir_all(d.join(mid)).unwrap();
        std::fs::create_dir_all(d.join("other")).unwrap();
        for f in ["a.journal", "b.journal~", "notes.txt", "other/c.journal"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::write(d.join(mid).join("system.journal"), "").unwrap();
        let mut skipped = Vec::new();
        let files = directory_files(&d, &mut skipped).unwrap();
        assert!(skipped.is_empty());
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [format!("{mid}/system.journal"), "a.journal".into(), "b.journal~".into()]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
