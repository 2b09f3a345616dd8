//! `armorctl doctor`: the host and armord checked for the traps that hide
//! AppArmor denials or make profiles mean something else, one line per
//! check (`ok`, `warning`, `error`), the fact seen, and for every line that
//! is not ok the exact fix. Exit 0 with no error, 1 with one, 2 when it
//! could not run.
//!
//! The host is read under a root (`/`, or `--root` for tests) and through
//! the tools on PATH (`systemctl`, `systemd-analyze`, the parser), so each
//! check runs against fixture trees and fake tools.

mod armord;
mod host;
#[cfg(test)]
mod tests;

use super::*;
use std::path::{Path, PathBuf};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Error,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One check's line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// A short, stable name (`audit-socket`).
    pub check: &'static str,
    pub level: Level,
    /// What was seen.
    pub fact: String,
    /// For a line that is not ok: the command or config line that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(check: &'static str, fact: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Ok,
            fact: fact.into(),
            fix: None,
        }
    }

    pub fn warning(check: &'static str, fact: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Warning,
            fact: fact.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn error(check: &'static str, fact: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            level: Level::Error,
            fact: fact.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The host as doctor reads it: files under `root`, tools from `path`.
pub struct Host {
    pub root: PathBuf,
    /// PATH for the tools (None: the process's own).
    pub path: Option<std::ffi::OsString>,
    /// Running as root: what only root may read is read.
    pub root_user: bool,
}

impl Host {
    pub fn real(root: Option<PathBuf>) -> Host {
        Host {
            root: root.unwrap_or_else(|| PathBuf::from("/")),
            path: None,
            root_user: nix::unistd::geteuid().is_root(),
        }
    }

    /// An absolute path of the host, under the root.
    pub fn p(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn read(&self, abs: impl AsRef<Path>) -> std::io::Result<String> {
        std::fs::read_to_string(self.p(abs))
    }

    pub fn exists(&self, abs: impl AsRef<Path>) -> bool {
        self.p(abs).exists()
    }

    /// A tool's standard output and whether it succeeded; None when it
    /// could not be run at all.
    pub fn tool(&self, program: &str, args: &[&str]) -> Option<(bool, String)> {
        let mut c = std::process::Command::new(program);
        c.args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(p) = &self.path {
            c.env("PATH", p);
        }
        let out = c.output().ok()?;
        Some((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// A program by name on the host (under the root): the first of the
    /// usual directories that has it.
    pub fn program(&self, name: &str) -> Option<PathBuf> {
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| self.p(p).is_file())
    }
}

/// Every check of the host and of armord, in order.
pub async fn checks(host: &Host, cfg: &config::Config, to: Option<&Endpoint>) -> Vec<Check> {
    let mut out = host::checks(host, cfg);
    out.extend(armord::checks(host, cfg, to).await);
    out
}

/// One line a check: level, name, fact; the fix indented below.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{:<7} {}: {}\n",
            c.level.word(),
            c.check,
            escape::text(&c.fact)
        ));
        if let Some(fix) = &c.fix {
            s.push_str(&format!("        fix: {}\n", escape::text(fix)));
        }
    }
    s
}

/// The exit code: 1 with an error, else 0.
pub fn exit_code(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.level == Level::Error))
}

pub(super) fn doctor(
    cfg: &config::Config,
    to: Option<&Endpoint>,
    json: bool,
    root: Option<PathBuf>,
) -> Result<i32, CliError> {
    let host = Host::real(root);
    let checks = runtime()?.block_on(checks(&host, cfg, to));
    if json {
        let v = serde_json::json!({
            "root": host.root,
            "as_root": host.root_user,
            "checks": checks,
        });
        outln!("{v}");
    } else {
        out!("{}", render(&checks));
        if !host.root_user {
            outln!("(not run as root: the checks that need root say so; run `sudo armorctl doctor` for all of them)");
        }
    }
    Ok(exit_code(&checks))
}
