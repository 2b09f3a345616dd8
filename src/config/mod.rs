//! Configuration: the effective [`Config`], its defaults, and loading it.
//!
//! `/etc/armord/armord.toml` is read first (when present), then every
//! `/etc/armord/armord.toml.d/*.toml` in lexical order. A key set in a later
//! file wins. `[[source]]` tables accumulate across files; when no file names a
//! source the built-in default (`/etc/armord/profiles.d`) is used.
//!
//! Each file is read into the raw shapes (`raw`), merged key by key with
//! each key's file and line kept (`merge`), and the result turned into a
//! `Config` (`validate`). A new key is a field of `Config`, its default,
//! one line in its raw table and one in its table's validation.

mod merge;
mod raw;
mod validate;

use merge::Layer;
use raw::RawConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/armord/armord.toml";
pub const DEFAULT_SOURCE: &str = "/etc/armord/profiles.d";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/armord";
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/armord";
pub const DEFAULT_SECURITYFS: &str = "/sys/kernel/security/apparmor";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}` (line {line}): {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },
    /// Keys that are each valid and do not fit together.
    #[error("keys {}: {reason}", KeyAt::list(keys))]
    Conflict { keys: Vec<KeyAt>, reason: String },
}

/// A key, and the file and line that set it (`None`: not set, its default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAt {
    pub key: String,
    pub set_at: Option<(PathBuf, usize)>,
}

impl KeyAt {
    fn list(keys: &[KeyAt]) -> String {
        keys.iter().map(KeyAt::to_string).collect::<Vec<_>>().join(" and ")
    }
}

impl std::fmt::Display for KeyAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.set_at {
            Some((path, line)) => write!(f, "`{}` ({}:{line})", self.key, path.display()),
            None => write!(f, "`{}` (default)", self.key),
        }
    }
}

/// How profiles are put into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ForcedMode {
    /// Every profile is loaded in enforce mode; a file that declares complain
    /// mode is refused rather than silently rewritten.
    Enforce,
    /// Every profile is loaded in complain mode (`apparmor_parser -C`).
    Complain,
    /// Profiles are loaded with the flags they declare.
    #[default]
    AsWritten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RemoveInUse {
    /// Keep a profile that still confines a process until its last process exits.
    #[default]
    Defer,
    /// Remove it anyway (the processes become unconfined).
    Force,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutKind {
    /// Detect from what is on disk.
    #[default]
    Auto,
    Plain,
    Configmap,
    GitSync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DenialScope {
    /// Only profiles armord owns.
    #[default]
    Owned,
    /// Every AppArmor profile on the node.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceConfig {
    pub path: PathBuf,
    pub layout: LayoutKind,
    /// Only for git-sync: the name of the link inside the root. Detected when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// A directory inside the ConfigMap data or the git worktree that holds the profiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdir: Option<PathBuf>,
    /// Whether a revision must carry a signed manifest.
    pub signatures: Signatures,
}

/// Whether a source's revisions must be signed (`armord.manifest.sig`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signatures {
    #[default]
    Off,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParserConfig {
    pub path: PathBuf,
    pub timeout_secs: u64,
    /// Compile jobs (`-j`); 0 means one per CPU.
    pub jobs: u32,
    pub cache_dir: PathBuf,
    /// Features file for compiling on a kernel without AppArmor. Empty: the
    /// `policy-features` named by `/etc/apparmor/parser.conf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features_file: Option<PathBuf>,
}

/// Files kept current after every reconcile; each off unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportsConfig {
    /// node-feature-discovery feature file (e.g.
    /// `/etc/kubernetes/node-feature-discovery/features.d/armord`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfd_features_file: Option<PathBuf>,
    /// Prometheus textfile-collector file (e.g.
    /// `/var/lib/prometheus/node-exporter/armord.prom`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus_textfile: Option<PathBuf>,
    /// Write exports into a directory a user other than root can write
    /// (such a user could otherwise replace armord's files there); off:
    /// such a directory is refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shared_directory: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DenialsConfig {
    pub enabled: bool,
    pub journalctl: PathBuf,
    pub scope: DenialScope,
    pub rate_limit_burst: u32,
    pub rate_limit_interval_secs: u64,
    /// Raise the kernel's audit backlog limit to at least this many records
    /// at start, so that a burst of denials is queued, not dropped, before
    /// journald reads it; 0 leaves the kernel's setting alone.
    pub audit_backlog_limit: u32,
}

/// Every profile lint by name (`lint` implements them): what `[lint] off`
/// may name.
pub const LINT_NAMES: &[&str] = &[
    "deny-in-complain",
    "runtime-signal",
    "peer-not-loaded",
    "no-abi",
    "unmediated",
    "spec-exec-missing",
];

/// `[lint]`: profile lints silenced on this node (see `lint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LintConfig {
    pub off: std::collections::BTreeSet<String>,
}

/// `[trial]`: trial → enforce (see `trial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialConfig {
    /// How long a version runs in trial before the gate may promote it.
    #[serde(serialize_with = "crate::human::serialize_duration")]
    pub min_trial: Duration,
    /// Each node's gate for a version opens at an offset in
    /// `[0, fleet_spread)` from the machine ID, the profile and the
    /// version; zero: no spread.
    #[serde(serialize_with = "crate::human::serialize_duration")]
    pub fleet_spread: Duration,
    /// Learned rules kept per profile version.
    pub max_rules: usize,
    /// Profiles with learned rules kept.
    pub max_profiles: usize,
    /// A trial declaration may put a profile enforced by other means into
    /// complain mode (logged); off: it stays enforced.
    pub allow_demotion: bool,
    /// The machine ID the spread is taken from.
    pub machine_id: PathBuf,
}

impl Default for TrialConfig {
    fn default() -> Self {
        TrialConfig {
            min_trial: Duration::from_secs(86400),
            fleet_spread: Duration::ZERO,
            max_rules: 256,
            max_profiles: 4096,
            allow_demotion: false,
            machine_id: "/etc/machine-id".into(),
        }
    }
}

/// Bounds on reading a source (see `source`): the size of one file, and
/// how many files.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_files: usize,
}

impl Limits {
    /// For files named one by one (`armorctl validate`, a signed
    /// revision's manifest): only the size of each is bounded.
    pub fn each_file(max_file_bytes: u64) -> Self {
        Limits {
            max_file_bytes,
            max_files: usize::MAX,
        }
    }
}

/// The effective, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
    pub profile_prefix: String,
    pub mode: ForcedMode,
    pub max_file_bytes: u64,
    pub max_profiles: usize,
    pub takeover: bool,
    pub remove_in_use: RemoveInUse,
    pub state_dir: PathBuf,
    pub securityfs: PathBuf,
    pub proc: PathBuf,
    pub debounce_ms: u64,
    pub debounce_max_ms: u64,
    pub resync_interval_secs: u64,
    /// Public keys (OpenSSH, one a file; a path or a glob in its last
    /// component) that may sign a source's revisions.
    pub trusted_keys: Vec<String>,
    /// Path globs a profile may attach to; `None`: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_attachments: Option<Vec<String>>,
    /// A removal waits until the source has had no change for this long.
    pub removal_settle_ms: u64,
    /// A reconcile that would remove more than this share (percent) of a
    /// source's owned profiles is a mass removal.
    pub mass_removal_percent: u8,
    /// A mass removal waits until the source has stood still this long.
    pub mass_removal_settle_secs: u64,
    pub parser: ParserConfig,
    pub denials: DenialsConfig,
    pub exports: ExportsConfig,
    pub trial: TrialConfig,
    pub lint: LintConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: vec![SourceConfig {
                path: DEFAULT_SOURCE.into(),
                layout: LayoutKind::Auto,
                link: None,
                subdir: None,
                signatures: Default::default(),
            }],
            profile_prefix: String::new(),
            mode: ForcedMode::AsWritten,
            max_file_bytes: 1024 * 1024,
            max_profiles: 10_000,
            takeover: false,
            remove_in_use: RemoveInUse::Defer,
            state_dir: DEFAULT_STATE_DIR.into(),
            securityfs: DEFAULT_SECURITYFS.into(),
            proc: "/proc".into(),
            debounce_ms: 200,
            debounce_max_ms: 2000,
            resync_interval_secs: 300,
            trusted_keys: Vec::new(),
            allowed_attachments: None,
            removal_settle_ms: 2000,
            mass_removal_percent: 50,
            mass_removal_settle_secs: 300,
            parser: ParserConfig {
                path: "apparmor_parser".into(),
                timeout_secs: 120,
                jobs: 0,
                cache_dir: DEFAULT_CACHE_DIR.into(),
                features_file: None,
            },
            denials: DenialsConfig {
                enabled: true,
                journalctl: "journalctl".into(),
                scope: DenialScope::Owned,
                rate_limit_burst: 10,
                rate_limit_interval_secs: 60,
                audit_backlog_limit: 8192,
            },
            exports: ExportsConfig::default(),
            trial: TrialConfig::default(),
            lint: LintConfig::default(),
        }
    }
}

impl Config {
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }
    pub fn debounce_max(&self) -> Duration {
        Duration::from_millis(self.debounce_max_ms)
    }
    pub fn resync_interval(&self) -> Duration {
        Duration::from_secs(self.resync_interval_secs)
    }
    pub fn removal_settle(&self) -> Duration {
        Duration::from_millis(self.removal_settle_ms)
    }
    pub fn mass_removal_settle(&self) -> Duration {
        Duration::from_secs(self.mass_removal_settle_secs)
    }
    /// The bounds on reading a source: `max_file_bytes` a file,
    /// `max_profiles` files.
    pub fn limits(&self) -> Limits {
        Limits {
            max_file_bytes: self.max_file_bytes,
            max_files: self.max_profiles,
        }
    }

    /// Render as TOML, for `armord --check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The files that make up the configuration at `main`: `main` itself when it
/// exists, then `main.d/*.toml` in lexical order.
pub fn config_files(main: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    match std::fs::metadata(main) {
        Ok(_) => files.push(main.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: main.to_owned(),
                source,
            });
        }
    }
    let mut dropin_dir = main.as_os_str().to_owned();
    dropin_dir.push(".d");
    let dropin_dir = PathBuf::from(dropin_dir);
    match std::fs::read_dir(&dropin_dir) {
        Ok(entries) => {
            let mut dropins = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| ConfigError::Read {
                    path: dropin_dir.clone(),
                    source,
                })?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".toml") && !name.starts_with('.') {
                    dropins.push(entry.path());
                }
            }
            dropins.sort();
            files.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: dropin_dir,
                source,
            });
        }
    }
    Ok(files)
}

/// Load `main` and its drop-ins. Missing files are fine: defaults apply.
/// A relative `main` is taken from the working directory.
pub fn load(main: &Path) -> Result<Config, ConfigError> {
    let main = &absolute_from_cwd(main);
    let mut merged = RawConfig::default();
    for file in config_files(main)? {
        merged.layer(raw::parse_file(&file)?);
    }
    validate::validate(merged)
}

/// Load a configuration file named explicitly (`--config`): unlike the
/// default path, it must exist.
pub fn load_given(main: &Path) -> Result<Config, ConfigError> {
    let abs = absolute_from_cwd(main);
    if let Err(source) = std::fs::metadata(&abs) {
        return Err(ConfigError::Read {
            path: main.to_owned(),
            source,
        });
    }
    load(&abs)
}

/// `p` from the working directory, `.` and leading `..` resolved.
pub fn absolute_from_cwd(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_owned();
    }
    match std::env::current_dir() {
        Ok(d) => join_clean(&d, p),
        Err(_) => p.to_owned(),
    }
}

/// `base` joined with `rel`: `.` dropped, and each leading `..` of `rel`
/// taken off `base` (whose own directories are real: the working or a
/// configuration file's directory, resolved), so paths read as written
/// (`/srv/x/.armord-sim`, not `/srv/x/examples/../.armord-sim`). A `..`
/// after a name in `rel` is kept: that name may be a link.
fn join_clean(base: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = base.to_owned();
    let mut leading = true;
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if leading => {
                out.pop();
            }
            other => {
                leading = false;
                out.push(other.as_os_str());
            }
        }
    }
    out
}

/// Load from in-memory texts, for tests: each pair is (name, TOML text).
pub fn load_from_strs(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut merged = RawConfig::default();
    for (name, text) in files {
        merged.layer(raw::parse_str(Path::new(name), text)?);
    }
    validate::validate(merged)
}

#[cfg(test)]
mod tests;
