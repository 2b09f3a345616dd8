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
        self.0.push_str(&format!(" {key}={value}"));
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
        let mut fields = String::new();
        let _ = r.key_values().visit(&mut Fields(&mut fields));
        let level = match r.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let _ = writeln!(std::io::stderr().lock(), "{}: {level}: {}{fields}", self.name, r.args());
    }
    fn flush(&self) {}
}

/// Install the logger. `verbose` turns on debug messages.
pub fn init(name: &'static str, verbose: bool) {
    let level = if verbose { LevelFilter::Debug } else { LevelFilter::Info };
    let installed = systemd_journal_logger::connected_to_journal()
        && systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier(name.to_owned()))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok();
    if !installed {
        let _ = log::set_boxed_logger(Box::new(Stderr { name }));
    }
    log::set_max_level(level);
}
