//! The system's AppArmor: the `Parser` and `Kernel` traits, the real
//! `apparmor_parser` runner, the securityfs/proc reader and the simulated kernel.

mod attach;
pub mod compiled;
mod dfa;
mod direct;
pub mod features;
mod glob;
mod kernel;
mod lexical;
pub mod listed;
mod mode;
mod parser;
mod precheck;
mod scan;
mod sim;

pub use attach::{Globs, Outside, dfa_within, name_within};
pub use compiled::{CompiledProfile, names_in_policy, read_policy};
pub use dfa::Dfa;
pub use direct::DirectLoad;
pub use glob::{attachment_violation, glob_covers};
pub use kernel::{ProcReader, SecurityFs, parse_label, parse_profiles_file};
pub use lexical::blank_comments;
pub use mode::Mode;
pub use parser::{ParserRunner, default_features_file, parse_diagnostics, run_with_timeout};
pub use precheck::{INCLUDE_ROOTS, escaped_name, include_violation, policy_violation};
pub use scan::{DeclaredProfile, declared_profiles, names_a_file_may_define};
pub use sim::SimKernel;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One message from the parser, attributed to a file and line where it says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: {}", file.display(), self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParserError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("{program} did not finish within {:.1}s and was killed", .timeout.as_secs_f64())]
    Timeout {
        program: PathBuf,
        timeout: std::time::Duration,
    },
    #[error("{program} was killed by signal {signal}")]
    Signal { program: PathBuf, signal: i32 },
    #[error("{program} failed (exit {code}): {}", summary(.diagnostics))]
    Failed {
        program: PathBuf,
        code: i32,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("{program}: {message}")]
    Output { program: PathBuf, message: String },
}

fn summary(d: &[Diagnostic]) -> String {
    match d.first() {
        Some(first) if d.len() > 1 => format!("{first} (and {} more)", d.len() - 1),
        Some(first) => first.to_string(),
        None => "no message".into(),
    }
}

impl ParserError {
    /// The diagnostics a failed run printed (empty for timeouts and crashes).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ParserError::Failed { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
    /// Did the parser reject the input (as opposed to failing to run)?
    pub fn is_rejection(&self) -> bool {
        matches!(self, ParserError::Failed { .. })
    }
    /// Can no file be judged (the parser cannot run at all)?
    pub fn is_fatal(&self) -> bool {
        matches!(self, ParserError::Spawn { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "AppArmor is not available: {path} does not exist (is the apparmor LSM enabled and securityfs mounted? try --simulate)"
    )]
    NotAvailable { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Per-file result of asking the parser for profile names: the names, or
/// why the parser could not give them (a rejection, a timeout, a crash).
pub type NamesResult = Result<Vec<String>, ParserError>;

/// Options that apply to every compile and load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Force complain mode (`-C`).
    pub complain: bool,
}

/// The policy compiler.
pub trait Parser: Send + Sync {
    /// Names of the profiles (top level and children) in each file. Files are
    /// given in one batch; the answer has one entry per file, in order.
    fn names(&self, files: &[PathBuf]) -> Result<Vec<NamesResult>, ParserError>;
    /// Compile without loading. Fails if any file fails.
    fn compile(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError>;
    /// Compile and load (add or replace) into the kernel.
    fn load(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError>;
    /// Whether a compile leaves each good file's compiled policy (the
    /// real parser, in its cache): every bound is then judged from it.
    fn leaves_policy(&self) -> bool {
        false
    }
    /// The compiled policy a compile run of this process left for `file`.
    fn compiled(&self, _file: &std::path::Path) -> Option<Vec<u8>> {
        None
    }
    /// The compiled policy the parser's cache holds for `file` from any
    /// earlier run (a content armord already loaded).
    fn cached(&self, _file: &std::path::Path) -> Option<Vec<u8>> {
        None
    }
    /// Compile `files` to their policy, one entry per file (`None`: none
    /// came back), for files whose compile left none where `compiled`
    /// reads it (a cache that cannot be written).
    fn dump(&self, files: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>, ParserError> {
        Ok(vec![None; files.len()])
    }
    /// Whether `compile` and `load` check a file (false: a simulation
    /// without `apparmor_parser`, which takes any file as it is).
    fn checks(&self) -> bool {
        true
    }
}

/// The kernel's view of loaded policy and the processes it confines.
pub trait Kernel: Send + Sync {
    /// Every loaded profile (top level and children) and its mode.
    fn loaded(&self) -> Result<BTreeMap<String, Mode>, KernelError>;
    /// Remove a profile (and its children) by name.
    fn remove(&self, name: &str) -> Result<(), KernelError>;
    /// PIDs confined by each top-level profile name.
    fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, KernelError>;
    /// The policy revision, which changes whenever the loaded policy does;
    /// `None` where the kernel has none to read.
    fn revision(&self) -> Option<u64> {
        None
    }
}

/// The top-level profile a name belongs to: `a//b` → `a`.
pub fn top_level(name: &str) -> &str {
    name.split("//").next().unwrap_or(name)
}
