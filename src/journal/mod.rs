//! Denials from the journal: a `journalctl --output=json` follower with a
//! cursor saved after the events it covers are handled, de-duplication of
//! records that arrive over both the audit and the kernel transport, and the
//! structured re-logging of each denial.

mod relog;

mod trust;
pub use relog::{Counters, MESSAGE_ID, RateLimit, SUPPRESSED_MESSAGE_ID, relog, relog_fields};
pub use trust::{Imitations, UNIT, Writer};

use crate::audit::{self, AuditId, Record};
use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The field of armord's re-logged entries that holds the original record's
/// de-duplication key, `BOOT_ID AUDIT_ID`.
pub const AUDIT_KEY_FIELD: &str = "ARMORD_AUDIT_KEY";

/// Whether `fd` has something to read (or has ended) within `wait`.
fn readable_within(fd: &impl std::os::fd::AsFd, wait: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
    // An error (EINTR): read, which blocks as before.
    poll(&mut fds, ms).map_or(true, |n| n > 0)
}

/// The least time between two cursor saves while entries stream in.
const COMMIT_MIN: Duration = Duration::from_millis(100);

/// Lines longer than this are not journal entries we can use: skipped.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Cursor { path: PathBuf, source: std::io::Error },
}

/// The parts of a journal entry the follower uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    pub boot_id: String,
    pub transport: String,
    pub audit_type: Option<u32>,
    pub audit_serial: Option<u64>,
    pub source_realtime_us: Option<u64>,
    /// When journald received it (`__REALTIME_TIMESTAMP`).
    pub realtime_us: Option<u64>,
    pub message: String,
}

pub fn field_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        // journalctl writes non-UTF-8 values as arrays of bytes.
        serde_json::Value::Array(a) => {
            let bytes: Vec<u8> = a.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A field as journalctl writes it: a string, or (for a value that is not
/// UTF-8) an array of bytes, or a number; anything else counts as absent.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RawField<'a> {
    #[serde(borrow)]
    Str(std::borrow::Cow<'a, str>),
    Bytes(Vec<u8>),
    Num(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl RawField<'_> {
    fn into_string(self) -> Option<String> {
        match self {
            RawField::Str(s) => Some(s.into_owned()),
            RawField::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            RawField::Num(n) => Some(n.to_string()),
            RawField::Other(_) => None,
        }
    }
}

/// The fields the follower reads, borrowed from the line where possible;
/// the rest of the entry is skipped unparsed.
#[derive(serde::Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "__CURSOR", borrow)]
    cursor: Option<RawField<'a>>,
    #[serde(rename = "_BOOT_ID", borrow)]
    boot_id: Option<RawField<'a>>,
    #[serde(rename = "_TRANSPORT", borrow)]
    transport: Option<RawField<'a>>,
    #[serde(rename = "_AUDIT_TYPE", borrow)]
    audit_type: Option<RawField<'a>>,
    #[serde(rename = "_AUDIT_ID", borrow)]
    audit_id: Option<RawField<'a>>,
    #[serde(rename = "_SOURCE_REALTIME_TIMESTAMP", borrow)]
    source_realtime: Option<RawField<'a>>,
    #[serde(rename = "__REALTIME_TIMESTAMP", borrow)]
    realtime: Option<RawField<'a>>,
    #[serde(rename = "MESSAGE", borrow)]
    message: Option<RawField<'a>>,
}

/// Parse one line of `journalctl --output=json`.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let r: RawEntry<'_> = serde_json::from_str(line).ok()?;
    let text = |f: Option<RawField<'_>>| f.and_then(RawField::into_string);
    fn num<T: std::str::FromStr>(f: Option<RawField<'_>>) -> Option<T> {
        f.and_then(RawField::into_string)?.parse().ok()
    }
    Some(Entry {
        cursor: text(r.cursor)?,
        boot_id: text(r.boot_id).unwrap_or_default(),
        transport: text(r.transport).unwrap_or_default(),
        audit_type: num(r.audit_type),
        audit_serial: num(r.audit_id),
        source_realtime_us: num(r.source_realtime),
        realtime_us: num(r.realtime),
        message: text(r.message).unwrap_or_default(),
    })
}

/// A denial (or any AppArmor record) ready to be handled once.
#[derive(Debug, Clone)]
pub struct Event {
    pub boot_id: String,
    pub record: Record<'static>,
}

impl Event {
    pub fn key(&self) -> Option<(String, AuditId)> {
        Some((self.boot_id.clone(), self.record.audit_id?))
    }
}

/// What one journal entry is.
#[derive(Debug)]
pub enum Classified {
    Event(Event),
    /// The kernel or auditd says records were lost.
    Lost(u64),
    /// The kernel's console copy of audit records was rate-limited
    /// (`kauditd_printk_skb: N callbacks suppressed`): lost only when the
    /// audit transport does not carry the records.
    ConsoleSuppressed(u64),
    Other,
}

/// Keep AppArmor records from the audit transport (1400, and 1107 for D-Bus)
/// and from the kernel transport; notice loss markers.
pub fn classify(e: &Entry) -> Classified {
    let audit = e.transport == "audit";
    // An AppArmor record is never a loss marker: one search decides.
    let apparmor = e.message.contains("apparmor=");
    if !apparmor
        && (audit || e.transport == "kernel")
        && let Some(n) = audit::loss_marker(&e.message)
    {
        if e.message.contains("callbacks suppressed") {
            return Classified::ConsoleSuppressed(n);
        }
        return Classified::Lost(n);
    }
    let wanted = match e.transport.as_str() {
        "audit" => matches!(e.audit_type, Some(1400 | 1107)) || apparmor,
        "kernel" => apparmor,
        _ => false,
    };
    if !wanted {
        return Classified::Other;
    }
    let Ok(mut record) = audit::parse(&e.message).map(Record::into_owned) else {
        return Classified::Other;
    };
    if record.audit_id.is_none()
        && let (Some(serial), Some(us)) = (e.audit_serial, e.source_realtime_us)
    {
        record.audit_id = Some(AuditId {
            epoch: us / 1_000_000,
            millis: ((us / 1000) % 1000) as u32,
            serial,
        });
    }
    Classified::Event(Event {
        boot_id: e.boot_id.clone(),
        record,
    })
}

/// Remembers recently handled keys (boot id + audit id), bounded.
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<(String, AuditId)>,
    order: VecDeque<(String, AuditId)>,
    cap: usize,
}

impl Dedupe {
    pub fn new(cap: usize) -> Self {
        Dedupe {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }
    /// True the first time a key is offered.
    pub fn first(&mut self, key: (String, AuditId)) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(key.clone());
        self.seen.insert(key);
        true
    }
}

/// How many recently handled keys are remembered: the same record arrives
/// over the audit and the kernel transport within moments of each other, so
/// a window of this many records is ample, and memory stays small and flat.
const DEDUPE_KEYS: usize = 8192;

/// How many recently handled keys are saved with the cursor: a record that
/// arrives over the second transport after a restart is still known.
const SAVED_KEYS: usize = 1024;

/// The cursor file: the cursor on the first line, then recently handled
/// keys, one `BOOT_ID AUDIT_ID` per line.
pub fn load_cursor(path: &Path) -> Option<String> {
    read_cursor_file(path).ok()?.0
}

/// A cursor file's content: the cursor, and the keys handled last.
type SavedCursor = (Option<String>, Vec<(String, AuditId)>);

/// The saved cursor and the keys handled last, for the follower. A file
/// that cannot be read or parsed is set aside (logged), and reading starts
/// as on a first run.
fn load_cursor_file(path: &Path) -> SavedCursor {
    read_cursor_file(path).unwrap_or_else(|why| {
        let aside = crate::state::set_aside(path);
        log::warn!(
            "{}: damaged journal cursor: {why}; {aside}; reading starts afresh",
            crate::escape::path(path)
        );
        (None, Vec::new())
    })
}

/// The cursor file parsed (nothing when there is none), or what is wrong
/// with it.
fn read_cursor_file(path: &Path) -> Result<SavedCursor, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut lines = text.lines();
    let cursor = lines.next().map(str::trim).filter(|s| !s.is_empty());
    let cursor = cursor.ok_or("no cursor on its first line")?.to_owned();
    let mut keys = Vec::new();
    for (i, line) in lines.enumerate() {
        let key = line
            .split_once(' ')
            .and_then(|(boot, id)| Some((boot.to_owned(), AuditId::parse(id)?)));
        keys.push(key.ok_or_else(|| format!("line {}: not `BOOT_ID AUDIT_ID`", i + 2))?);
    }
    Ok((Some(cursor), keys))
}

pub fn save_cursor(path: &Path, cursor: &str, keys: &VecDeque<(String, AuditId)>) -> Result<(), JournalError> {
    let mut text = format!("{cursor}\n");
    let skip = keys.len().saturating_sub(SAVED_KEYS);
    for (boot, id) in keys.iter().skip(skip) {
        text.push_str(&format!("{boot} {id}\n"));
    }
    crate::state::atomic_write(path, text.as_bytes()).map_err(|e| JournalError::Cursor {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Settings of a follower.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    pub journalctl: PathBuf,
    pub cursor_path: PathBuf,
    /// First restart delay after journalctl exits; doubles up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Save the cursor at least this often while events flow.
    pub commit_every: Duration,
    /// Who writes armord's own entries: only theirs seed the record of
    /// what was re-logged.
    pub writer: Writer,
}

/// Lost-event and restart counters the follower keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowerStats {
    pub lost: u64,
    /// When the first loss counted was logged (µs since the epoch).
    pub lost_since_us: Option<u64>,
    pub restarts: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

/// Follows the journal, hands every new AppArmor record to `handle` once,
/// and saves the cursor after the records before it are handled.
pub struct Follower {
    pub cfg: FollowerConfig,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<FollowerStats>>,
    dedupe: Dedupe,
    child: Arc<Mutex<Option<u32>>>,
    /// Without a cursor, read from the oldest entry rather than this boot.
    from_oldest: bool,
    /// journald reads the audit transport: set at start when its socket is
    /// active, and whenever an audit-transport entry comes by.
    pub audit_transport: Arc<AtomicBool>,
    /// When this follower started (µs since the epoch): losses before it
    /// are reported, but not as warnings.
    started_us: u64,
    /// Told of every loss at once: (records lost in all, since when).
    pub on_loss: Option<Box<dyn Fn(u64, u64) + Send>>,
}

impl Follower {
    pub fn new(cfg: FollowerConfig) -> Self {
        Follower {
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(Mutex::new(FollowerStats::default())),
            dedupe: Dedupe::new(DEDUPE_KEYS),
            child: Arc::new(Mutex::new(None)),
            from_oldest: false,
            audit_transport: Arc::new(AtomicBool::new(false)),
            started_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            on_loss: None,
        }
    }

    /// A handle that stops the follower from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            stop: self.stop.clone(),
            child: self.child.clone(),
        }
    }

    /// Where to start reading: after the cursor, or this boot (or the oldest entry).
    fn position(&self, c: &mut Command, cursor: Option<&str>) {
        match cursor {
            Some(cur) => {
                c.arg(format!("--after-cursor={cur}"));
            }
            None if self.from_oldest => {}
            None => {
                c.arg("--boot");
            }
        }
    }

    /// The keys of the records a previous run re-logged past `cursor`: it
    /// handled them and was stopped (killed, crashed) before it saved the
    /// cursor. They are not handled again.
    fn already_relogged(&self, cursor: Option<&str>) -> Vec<(String, AuditId)> {
        let mut c = Command::new(&self.cfg.journalctl);
        // --all: a long or unprintable field comes whole, not as null.
        c.args(["--output=json", "--all", "--no-pager"]);
        self.position(&mut c, cursor);
        c.arg(format!("MESSAGE_ID={MESSAGE_ID}"));
        c.args(self.cfg.writer.matches());
        c.stdin(Stdio::null()).stderr(Stdio::null());
        let out = match c.output() {
            Ok(o) => o.stdout,
            Err(e) => {
                log::warn!("cannot read back re-logged denials: {e}");
                return Vec::new();
            }
        };
        out.split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter(|v| self.cfg.writer.wrote(v))
            .filter_map(|v| v.get(AUDIT_KEY_FIELD).and_then(field_string))
            .filter_map(|k| {
                let (boot, id) = k.split_once(' ')?;
                Some((boot.to_owned(), AuditId::parse(id)?))
            })
            .collect()
    }

    fn spawn(&self, cursor: Option<&str>) -> Result<Child, JournalError> {
        let mut c = Command::new(&self.cfg.journalctl);
        // --all: a record of 4 KiB or more comes whole, not as null.
        c.args(["--output=json", "--all", "--follow", "--no-pager", "--no-tail"]);
        self.position(&mut c, cursor);
        c.args([
            "_TRANSPORT=audit",
            "_AUDIT_TYPE=1400",
            "_AUDIT_TYPE=1107",
            "+",
            "_TRANSPORT=kernel",
        ]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().map_err(|source| JournalError::Spawn {
            program: self.cfg.journalctl.clone(),
            source,
        })
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, FollowerStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run until stopped. Returns the last saved cursor.
    pub fn run(&mut self, mut handle: impl FnMut(&Event)) -> Option<String> {
        self.run_notify(|ev| {
            if let Some(ev) = ev {
                handle(ev)
            }
        })
    }

    /// [`Follower::run`], and `handle(None)` whenever everything read so
    /// far is handled and the next read may wait: the moment to pass on
    /// what was gathered.
    pub fn run_notify(&mut self, mut handle: impl FnMut(Option<&Event>)) -> Option<String> {
        let (mut cursor, keys) = load_cursor_file(&self.cfg.cursor_path);
        for k in keys {
            self.dedupe.first(k);
        }
        for k in self.already_relogged(cursor.as_deref()) {
            self.dedupe.first(k);
        }
        let mut backoff = self.cfg.backoff;
        while !self.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let mut child = match self.spawn(cursor.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("{e}; denials are not followed until it can run");
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                    continue;
                }
            };
            *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child.id());
            let stderr = child.stderr.take();
            let err_thread = std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut e) = stderr {
                    let _ = e.by_ref().take(64 * 1024).read_to_string(&mut s);
                }
                s
            });
            let got_any = match child.stdout.take() {
                Some(out) => self.read(out, &mut cursor, &mut handle),
                None => false,
            };
            let _ = child.kill();
            let status = child.wait().ok();
            *self.child.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let stderr = err_thread.join().unwrap_or_default();
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.stats().restarts += 1;
            if !got_any && cursor.is_some() && stderr.to_lowercase().contains("cursor") {
                log::warn!(
                    "the saved journal cursor is gone (journal vacuumed?): {}; resuming from the oldest entry",
                    stderr.trim()
                );
                cursor = None;
                let _ = std::fs::remove_file(&self.cfg.cursor_path);
                self.from_oldest = true;
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = self.cfg.backoff;
            }
            log::warn!(
                "journalctl exited ({}); restarting in {} ms",
                status.map(|s| s.to_string()).unwrap_or_default(),
                backoff.as_millis()
            );
            self.sleep(backoff);
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
        cursor
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10).min(end - Instant::now()));
        }
    }

    /// Read entries until the stream ends. Returns whether any entry came.
    fn read(
        &mut self,
        out: impl Read + std::os::fd::AsFd,
        cursor: &mut Option<String>,
        handle: &mut impl FnMut(Option<&Event>),
    ) -> bool {
        let mut reader = BufReader::with_capacity(256 * 1024, out);
        let mut line = Vec::with_capacity(4096);
        let mut pending: Option<String> = None;
        let mut last_commit = Instant::now();
        let mut any = false;
        loop {
            line.clear();
            if reader.buffer().is_empty() {
                handle(None);
            }
            // A cursor save held back by COMMIT_MIN is made once the stream
            // has been quiet that long.
            if pending.is_some() && reader.buffer().is_empty() && !readable_within(reader.get_ref(), COMMIT_MIN) {
                if let Some(c) = pending.take() {
                    self.commit(&c, cursor);
                }
                last_commit = Instant::now();
            }
            // Bounded read of one line.
            let n = match read_line_bounded(&mut reader, &mut line, MAX_LINE) {
                Ok(n) => n,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            let Some(text) = line.strip_suffix(b"\n") else {
                // The stream ended mid-line (journalctl died): drop the
                // fragment; it is read again from the cursor.
                break;
            };
            if text.len() > MAX_LINE {
                self.stats().malformed += 1;
                log::warn!("skipped a journal entry of more than {MAX_LINE} bytes");
                continue;
            }
            any = true;
            // Valid UTF-8 (nearly always: journalctl writes other values as
            // byte arrays) is checked the fast way.
            let text = match std::str::from_utf8(text) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => String::from_utf8_lossy(text),
            };
            let Some(entry) = parse_entry(&text) else {
                self.stats().malformed += 1;
                log::warn!("skipped a journal line that is not a JSON entry");
                continue;
            };
            if entry.transport == "audit" {
                self.audit_transport.store(true, Ordering::Relaxed);
            }
            match classify(&entry) {
                Classified::Event(ev) => {
                    let fresh = ev.key().is_none_or(|k| self.dedupe.first(k));
                    if fresh {
                        handle(Some(&ev));
                    } else {
                        self.stats().duplicates += 1;
                    }
                }
                Classified::ConsoleSuppressed(n) if self.audit_transport.load(Ordering::Relaxed) => {
                    log::debug!(
                        "the kernel's console copy skipped {n} audit records; the audit transport carries them: {}",
                        entry.message
                    );
                }
                Classified::Lost(n) | Classified::ConsoleSuppressed(n) => self.lost(n, &entry),
                Classified::Other => {}
            }
            pending = Some(entry.cursor);
            // Commit when the reader has nothing more buffered (not more
            // often than COMMIT_MIN apart: a fast stream empties the buffer
            // often), or every `commit_every`. Entries handled past the
            // saved cursor are known again at start from their re-logged
            // keys, so a later commit never re-logs a record.
            let since = last_commit.elapsed();
            if (reader.buffer().is_empty() && since >= COMMIT_MIN) || since >= self.cfg.commit_every {
                if let Some(c) = pending.take() {
                    self.commit(&c, cursor);
                }
                last_commit = Instant::now();
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        if let Some(c) = pending.take() {
            self.commit(&c, cursor);
        }
        any
    }

    /// Count `n` lost records, said at once: a warning for a loss while armord
    /// runs, information for one from before it started (the boot's flood of
    /// profile loads, say).
    fn lost(&self, n: u64, entry: &Entry) {
        let at = entry.realtime_us.unwrap_or(self.started_us);
        let (total, since) = {
            let mut st = self.stats();
            st.lost += n;
            (st.lost, *st.lost_since_us.get_or_insert(at))
        };
        if let Some(f) = &self.on_loss {
            f(total, since);
        }
        let how = if self.audit_transport.load(Ordering::Relaxed) {
            ""
        } else {
            " (journald does not read the audit transport: enable systemd-journald-audit.socket)"
        };
        if at >= self.started_us {
            log::warn!("the kernel lost {n} audit records{how}: {}", entry.message);
        } else {
            log::info!(
                "the kernel lost {n} audit records before armord started{how}: {}",
                entry.message
            );
        }
    }

    fn commit(&self, c: &str, cursor: &mut Option<String>) {
        match save_cursor(&self.cfg.cursor_path, c, &self.dedupe.order) {
            Ok(()) => *cursor = Some(c.to_owned()),
            Err(e) => log::error!("cannot save the journal cursor: {e}"),
        }
    }
}

/// Read up to and including `\n`, keeping at most `max + 1` bytes of a
/// longer line (the rest is consumed and dropped).
fn read_line_bounded(r: &mut impl BufRead, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        let room = (max + 1).saturating_sub(out.len());
        out.extend_from_slice(&chunk[..n.min(room)]);
        if done && out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        r.consume(n);
        total += n;
        if done {
            return Ok(total);
        }
    }
}

/// Stops a running follower from another thread.
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<u32>>>,
}

impl Stopper {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(pid) = *self.child.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

#[cfg(test)]
mod tests;
