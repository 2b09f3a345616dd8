//! Logging: the journal when stderr is connected to it (structured fields),
//! plain lines on stderr otherwise.

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr {
    name: &'static str,
}

struct Fields<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let value = value.to_string();
        self.0.push_str(&format!(" {key}={}", crate::escape::text(&value)));
        Ok(())
    }
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // One readable line; the structured fields (which repeat what the
        // message says) only with --verbose.
        let mut fields = String::new();
        if log::max_level() >= LevelFilter::Debug {
            let _ = r.key_values().visit(&mut Fields(&mut fields));
        }
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let message = r.args().to_string();
        // One write per line: stderr is unbuffered, and a line written in
        // pieces can interleave with another thread's.
        let line = format!("{}: {level}: {}{fields}\n", self.name, crate::escape::text(&message));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    fn flush(&self) {}
}

/// The journal logger, with the message escaped: a file or profile name
/// never forges a line in `journalctl`'s output. Fields stay as they are:
/// the journal stores them as data, not lines.
struct Journal(systemd_journal_logger::JournalLog);

impl Log for Journal {
    fn enabled(&self, m: &Metadata) -> bool {
        self.0.enabled(m)
    }
    fn log(&self, r: &Record) {
        let message = r.args().to_string();
        let escaped = crate::escape::text(&message);
        self.0.log(
            &Record::builder()
                .args(format_args!("{escaped}"))
                .level(r.level())
                .target(r.target())
                .module_path(r.module_path())
                .file(r.file())
                .line(r.line())
                .key_values(r.key_values())
                .build(),
        );
    }
    fn flush(&self) {
        self.0.flush();
    }
}

/// Whether log entries go to the journal, which stores their fields.
static STRUCTURED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log entries' structured fields are kept (the journal logger).
pub fn structured() -> bool {
    STRUCTURED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Install the logger. `verbose` turns on debug messages.
pub fn init(name: &'static str, verbose: bool) {
    let level = if verbose { LevelFilter::Debug } else { LevelFilter::Info };
    let installed = systemd_journal_logger::connected_to_journal()
        && systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier(name.to_owned()))
            .and_then(|j| log::set_boxed_logger(Box::new(Journal(j))).map_err(std::io::Error::other))
            .is_ok();
    STRUCTURED.store(installed, std::sync::atomic::Ordering::Relaxed);
    if !installed {
        let _ = log::set_boxed_logger(Box::new(Stderr { name }));
    }
    log::set_max_level(level);
}
