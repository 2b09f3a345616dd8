//! The follower: runs `journalctl --follow`, restarts it with backoff,
//! hands each new AppArmor record to its handler once, counts losses, and
//! saves the cursor after the records before it are handled.

use super::cursor::{load_cursor_file, save_cursor};
use super::records::{DEDUPE_KEYS, Dedupe};
use super::{AUDIT_KEY_FIELD, Classified, Entry, Event, JournalError, MAX_LINE, MESSAGE_ID, Writer};
use super::{classify, field_string, parse_entry};
use crate::audit::{AuditId, record_type};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Asked before the cursor moves: what the records before it left
    /// (the learned rules' log) must be on disk first. False: the cursor
    /// stays, and those records are read again after a restart.
    pub before_commit: Option<Box<dyn Fn() -> bool + Send>>,
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
            before_commit: None,
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
            "_TRANSPORT=audit".to_owned(),
            format!("_AUDIT_TYPE={}", record_type::AVC),
        ]);
        c.arg(format!("_AUDIT_TYPE={}", record_type::USER_AVC));
        c.args(["+", "_TRANSPORT=kernel"]);
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
                handle(ev);
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
            let Ok(n) = read_line_bounded(&mut reader, &mut line, MAX_LINE) else {
                break;
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
        if let Some(durable) = &self.before_commit
            && !durable()
        {
            return;
        }
        match save_cursor(&self.cfg.cursor_path, c, self.dedupe.recent()) {
            Ok(()) => *cursor = Some(c.to_owned()),
            Err(e) => log::error!("cannot save the journal cursor: {e}"),
        }
    }
}

/// Read up to and including `\n`, keeping at most `max + 1` bytes of a
/// longer line (the rest is consumed and dropped).
pub(super) fn read_line_bounded(r: &mut impl BufRead, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
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
