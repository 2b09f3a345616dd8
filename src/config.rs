//! Configuration: raw TOML shapes per file, merged in order, then validated.
//!
//! `/etc/armord/armord.toml` is read first (when present), then every
//! `/etc/armord/armord.toml.d/*.toml` in lexical order. A key set in a later
//! file wins. `[[source]]` tables accumulate across files; when no file names a
//! source the built-in default (`/etc/armord/profiles.d`) is used.

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
    #[error("{path}: key `{key}`: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
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
    pub fn manifest_path(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.state_dir.join("store")
    }
    pub fn cursor_path(&self) -> PathBuf {
        self.state_dir.join("journal.cursor")
    }

    /// Render as TOML, for `armord --check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

// ---- raw shapes: one per file, every key optional ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    source: Vec<RawSource>,
    profile_prefix: Option<String>,
    mode: Option<ForcedMode>,
    max_file_bytes: Option<u64>,
    max_profiles: Option<usize>,
    takeover: Option<bool>,
    remove_in_use: Option<RemoveInUse>,
    state_dir: Option<PathBuf>,
    securityfs: Option<PathBuf>,
    proc: Option<PathBuf>,
    debounce_ms: Option<u64>,
    debounce_max_ms: Option<u64>,
    resync_interval_secs: Option<u64>,
    trusted_keys: Option<Vec<String>>,
    allowed_attachments: Option<Vec<String>>,
    removal_settle_ms: Option<u64>,
    mass_removal_percent: Option<u8>,
    mass_removal_settle_secs: Option<u64>,
    parser: Option<RawParser>,
    denials: Option<RawDenials>,
    exports: Option<RawExports>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExports {
    nfd_features_file: Option<PathBuf>,
    prometheus_textfile: Option<PathBuf>,
    shared_directory: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: PathBuf,
    #[serde(default)]
    layout: LayoutKind,
    link: Option<String>,
    subdir: Option<PathBuf>,
    #[serde(default)]
    signatures: Signatures,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParser {
    path: Option<PathBuf>,
    timeout_secs: Option<u64>,
    jobs: Option<u32>,
    cache_dir: Option<PathBuf>,
    features_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDenials {
    enabled: Option<bool>,
    journalctl: Option<PathBuf>,
    scope: Option<DenialScope>,
    rate_limit_burst: Option<u32>,
    rate_limit_interval_secs: Option<u64>,
    audit_backlog_limit: Option<u32>,
}

fn parse_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(path, &text)
}

fn parse_str(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: toml_message(text, &e),
    })?;
    if let Some(dir) = path.parent() {
        // The directory as it really is, so that `..` means its parent.
        let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        raw.rebase(&real);
    }
    Ok(raw)
}

/// A relative path in a configuration file is relative to that file's
/// directory. A bare program name (`apparmor_parser`) stays a name, looked up
/// on PATH.
fn rebase_path(p: &mut PathBuf, dir: &Path) {
    if p.is_relative() && !p.as_os_str().is_empty() {
        *p = join_clean(dir, p);
    }
}

fn rebase_program(p: &mut PathBuf, dir: &Path) {
    if p.components().count() > 1 {
        rebase_path(p, dir);
    }
}

impl RawConfig {
    fn rebase(&mut self, dir: &Path) {
        for s in &mut self.source {
            rebase_path(&mut s.path, dir);
        }
        for p in [&mut self.state_dir, &mut self.securityfs, &mut self.proc]
            .into_iter()
            .flatten()
        {
            rebase_path(p, dir);
        }
        if let Some(parser) = &mut self.parser {
            for p in [&mut parser.cache_dir, &mut parser.features_file].into_iter().flatten() {
                rebase_path(p, dir);
            }
            if let Some(p) = &mut parser.path {
                rebase_program(p, dir);
            }
        }
        if let Some(p) = self.denials.as_mut().and_then(|d| d.journalctl.as_mut()) {
            rebase_program(p, dir);
        }
        if let Some(e) = &mut self.exports {
            for p in [&mut e.nfd_features_file, &mut e.prometheus_textfile]
                .into_iter()
                .flatten()
            {
                rebase_path(p, dir);
            }
        }
    }
}

/// `LINE: message` (the caller puts the file first: `FILE:LINE: message`),
/// or ` message` where the error has no place.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{line}: {msg}")
        }
        None => format!(" {msg}"),
    }
}

/// A key that was set, and the file that set it (for error messages).
struct Origin<T> {
    value: T,
    file: PathBuf,
}

macro_rules! merge {
    ($dst:expr, $src:expr, $file:expr) => {
        if let Some(v) = $src {
            $dst = Some(Origin {
                value: v,
                file: $file.to_owned(),
            });
        }
    };
}

#[derive(Default)]
struct Merged {
    sources: Vec<Origin<RawSource>>,
    profile_prefix: Option<Origin<String>>,
    mode: Option<Origin<ForcedMode>>,
    max_file_bytes: Option<Origin<u64>>,
    max_profiles: Option<Origin<usize>>,
    takeover: Option<Origin<bool>>,
    remove_in_use: Option<Origin<RemoveInUse>>,
    state_dir: Option<Origin<PathBuf>>,
    securityfs: Option<Origin<PathBuf>>,
    proc: Option<Origin<PathBuf>>,
    debounce_ms: Option<Origin<u64>>,
    debounce_max_ms: Option<Origin<u64>>,
    resync_interval_secs: Option<Origin<u64>>,
    trusted_keys: Option<Origin<Vec<String>>>,
    allowed_attachments: Option<Origin<Vec<String>>>,
    removal_settle_ms: Option<Origin<u64>>,
    mass_removal_percent: Option<Origin<u8>>,
    mass_removal_settle_secs: Option<Origin<u64>>,
    parser_path: Option<Origin<PathBuf>>,
    parser_timeout_secs: Option<Origin<u64>>,
    parser_jobs: Option<Origin<u32>>,
    parser_cache_dir: Option<Origin<PathBuf>>,
    parser_features_file: Option<Origin<PathBuf>>,
    denials_enabled: Option<Origin<bool>>,
    denials_journalctl: Option<Origin<PathBuf>>,
    denials_scope: Option<Origin<DenialScope>>,
    denials_burst: Option<Origin<u32>>,
    denials_interval: Option<Origin<u64>>,
    denials_backlog: Option<Origin<u32>>,
    nfd_features_file: Option<Origin<PathBuf>>,
    prometheus_textfile: Option<Origin<PathBuf>>,
    exports_shared_directory: Option<Origin<bool>>,
}

impl Merged {
    fn add(&mut self, file: &Path, raw: RawConfig) {
        for s in raw.source {
            self.sources.push(Origin {
                value: s,
                file: file.to_owned(),
            });
        }
        merge!(self.profile_prefix, raw.profile_prefix, file);
        merge!(self.mode, raw.mode, file);
        merge!(self.max_file_bytes, raw.max_file_bytes, file);
        merge!(self.max_profiles, raw.max_profiles, file);
        merge!(self.takeover, raw.takeover, file);
        merge!(self.remove_in_use, raw.remove_in_use, file);
        merge!(self.state_dir, raw.state_dir, file);
        merge!(self.securityfs, raw.securityfs, file);
        merge!(self.proc, raw.proc, file);
        merge!(self.debounce_ms, raw.debounce_ms, file);
        merge!(self.debounce_max_ms, raw.debounce_max_ms, file);
        merge!(self.resync_interval_secs, raw.resync_interval_secs, file);
        merge!(self.trusted_keys, raw.trusted_keys, file);
        merge!(self.allowed_attachments, raw.allowed_attachments, file);
        merge!(self.removal_settle_ms, raw.removal_settle_ms, file);
        merge!(self.mass_removal_percent, raw.mass_removal_percent, file);
        merge!(self.mass_removal_settle_secs, raw.mass_removal_settle_secs, file);
        let p = raw.parser.unwrap_or_default();
        merge!(self.parser_path, p.path, file);
        merge!(self.parser_timeout_secs, p.timeout_secs, file);
        merge!(self.parser_jobs, p.jobs, file);
        merge!(self.parser_cache_dir, p.cache_dir, file);
        merge!(self.parser_features_file, p.features_file, file);
        let d = raw.denials.unwrap_or_default();
        merge!(self.denials_enabled, d.enabled, file);
        merge!(self.denials_journalctl, d.journalctl, file);
        merge!(self.denials_scope, d.scope, file);
        merge!(self.denials_burst, d.rate_limit_burst, file);
        merge!(self.denials_interval, d.rate_limit_interval_secs, file);
        merge!(self.denials_backlog, d.audit_backlog_limit, file);
        let e = raw.exports.unwrap_or_default();
        merge!(self.nfd_features_file, e.nfd_features_file, file);
        merge!(self.prometheus_textfile, e.prometheus_textfile, file);
        merge!(self.exports_shared_directory, e.shared_directory, file);
    }
}

fn invalid(file: &Path, key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: file.to_owned(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn absolute(o: Option<Origin<PathBuf>>, key: &str, default: PathBuf) -> Result<PathBuf, ConfigError> {
    match o {
        None => Ok(default),
        Some(o) if o.value.is_absolute() => Ok(o.value),
        Some(o) => Err(invalid(
            &o.file,
            key,
            format!("{} is not an absolute path", o.value.display()),
        )),
    }
}

fn positive<T: PartialOrd + Default + Copy>(o: Option<Origin<T>>, key: &str, default: T) -> Result<T, ConfigError> {
    match o {
        None => Ok(default),
        Some(o) if o.value > T::default() => Ok(o.value),
        Some(o) => Err(invalid(&o.file, key, "must be greater than 0")),
    }
}

fn optional_absolute(o: Option<Origin<PathBuf>>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    match o {
        None => Ok(None),
        Some(o) if o.value.is_absolute() => Ok(Some(o.value)),
        Some(o) => Err(invalid(&o.file, key, "must be an absolute path")),
    }
}

fn value<T>(o: Option<Origin<T>>, default: T) -> T {
    o.map(|o| o.value).unwrap_or(default)
}

fn validate(m: Merged) -> Result<Config, ConfigError> {
    let d = Config::default();
    let mut sources = Vec::new();
    for o in m.sources {
        let s = o.value;
        if !s.path.is_absolute() {
            return Err(invalid(
                &o.file,
                "source.path",
                format!("{} is not an absolute path", s.path.display()),
            ));
        }
        if let Some(link) = &s.link {
            if s.layout != LayoutKind::GitSync && s.layout != LayoutKind::Auto {
                return Err(invalid(&o.file, "source.link", "only a git-sync source has a link"));
            }
            if link.is_empty() || link.contains('/') || link == "." || link == ".." {
                return Err(invalid(
                    &o.file,
                    "source.link",
                    format!("{link:?} is not a file name inside the source"),
                ));
            }
        }
        if let Some(sub) = &s.subdir
            && (sub.is_absolute() || sub.components().any(|c| !matches!(c, std::path::Component::Normal(_))))
        {
            return Err(invalid(
                &o.file,
                "source.subdir",
                format!("{} must be a relative path without `..`", sub.display()),
            ));
        }
        if sources.iter().any(|x: &SourceConfig| x.path == s.path) {
            return Err(invalid(
                &o.file,
                "source.path",
                format!("{} is listed twice", s.path.display()),
            ));
        }
        sources.push(SourceConfig {
            path: s.path,
            layout: s.layout,
            link: s.link,
            subdir: s.subdir,
            signatures: s.signatures,
        });
    }
    if sources.is_empty() {
        sources = d.sources.clone();
    }
    let profile_prefix = value(m.profile_prefix, d.profile_prefix);
    if profile_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            Path::new("(merged)"),
            "profile_prefix",
            "must not contain white space",
        ));
    }
    let debounce_ms = value(m.debounce_ms, d.debounce_ms);
    let debounce_max_ms = match m.debounce_max_ms {
        Some(o) if o.value < debounce_ms => {
            return Err(invalid(
                &o.file,
                "debounce_max_ms",
                format!("{} is less than debounce_ms ({debounce_ms})", o.value),
            ));
        }
        o => value(o, d.debounce_max_ms.max(debounce_ms)),
    };
    let features_file = match m.parser_features_file {
        None => None,
        Some(o) if o.value.is_absolute() => Some(o.value),
        Some(o) => {
            return Err(invalid(&o.file, "parser.features_file", "must be an absolute path"));
        }
    };
    let parser_path = match m.parser_path {
        None => d.parser.path,
        Some(o) if o.value.as_os_str().is_empty() => {
            return Err(invalid(&o.file, "parser.path", "must not be empty"));
        }
        Some(o) => o.value,
    };
    let trusted_keys = match m.trusted_keys {
        None => Vec::new(),
        Some(o) => {
            let base = o.file.parent().map(Path::to_owned).unwrap_or_default();
            let mut keys = Vec::new();
            for k in o.value {
                if k.is_empty() {
                    return Err(invalid(&o.file, "trusted_keys", "an entry is empty"));
                }
                // Relative to the file that names it, like every path.
                keys.push(if Path::new(&k).is_absolute() {
                    k
                } else {
                    base.join(&k).to_string_lossy().into_owned()
                });
            }
            keys
        }
    };
    if trusted_keys.is_empty()
        && let Some(s) = sources.iter().find(|s| s.signatures == Signatures::Required)
    {
        return Err(invalid(
            Path::new("(merged)"),
            "source.signatures",
            format!(
                "{} requires signatures, and trusted_keys names no key",
                s.path.display()
            ),
        ));
    }
    let allowed_attachments = match m.allowed_attachments {
        None => None,
        Some(o) => {
            if let Some(bad) = o.value.iter().find(|g| !g.starts_with('/')) {
                return Err(invalid(
                    &o.file,
                    "allowed_attachments",
                    format!("{bad:?} is not an absolute path glob"),
                ));
            }
            Some(o.value)
        }
    };
    let removal_settle_ms = value(m.removal_settle_ms, d.removal_settle_ms);
    let mass_removal_percent = match m.mass_removal_percent {
        Some(o) if o.value > 100 => {
            return Err(invalid(
                &o.file,
                "mass_removal_percent",
                format!("{} is not a percentage (0 to 100)", o.value),
            ));
        }
        o => value(o, d.mass_removal_percent),
    };
    let mass_removal_settle_secs = value(m.mass_removal_settle_secs, d.mass_removal_settle_secs);
    if mass_removal_settle_secs.saturating_mul(1000) < removal_settle_ms {
        return Err(invalid(
            Path::new("(merged)"),
            "mass_removal_settle_secs",
            format!("{mass_removal_settle_secs}s is shorter than removal_settle_ms ({removal_settle_ms} ms)"),
        ));
    }
    Ok(Config {
        sources,
        profile_prefix,
        mode: value(m.mode, d.mode),
        max_file_bytes: positive(m.max_file_bytes, "max_file_bytes", d.max_file_bytes)?,
        max_profiles: positive(m.max_profiles, "max_profiles", d.max_profiles)?,
        takeover: value(m.takeover, d.takeover),
        remove_in_use: value(m.remove_in_use, d.remove_in_use),
        state_dir: absolute(m.state_dir, "state_dir", d.state_dir)?,
        securityfs: absolute(m.securityfs, "securityfs", d.securityfs)?,
        proc: absolute(m.proc, "proc", d.proc)?,
        debounce_ms,
        debounce_max_ms,
        resync_interval_secs: positive(m.resync_interval_secs, "resync_interval_secs", d.resync_interval_secs)?,
        trusted_keys,
        allowed_attachments,
        removal_settle_ms,
        mass_removal_percent,
        mass_removal_settle_secs,
        parser: ParserConfig {
            path: parser_path,
            timeout_secs: positive(m.parser_timeout_secs, "parser.timeout_secs", d.parser.timeout_secs)?,
            jobs: value(m.parser_jobs, d.parser.jobs),
            cache_dir: absolute(m.parser_cache_dir, "parser.cache_dir", d.parser.cache_dir)?,
            features_file,
        },
        denials: DenialsConfig {
            enabled: value(m.denials_enabled, d.denials.enabled),
            journalctl: value(m.denials_journalctl, d.denials.journalctl),
            scope: value(m.denials_scope, d.denials.scope),
            rate_limit_burst: positive(m.denials_burst, "denials.rate_limit_burst", d.denials.rate_limit_burst)?,
            rate_limit_interval_secs: positive(
                m.denials_interval,
                "denials.rate_limit_interval_secs",
                d.denials.rate_limit_interval_secs,
            )?,
            audit_backlog_limit: value(m.denials_backlog, d.denials.audit_backlog_limit),
        },
        exports: ExportsConfig {
            nfd_features_file: optional_absolute(m.nfd_features_file, "exports.nfd_features_file")?,
            prometheus_textfile: optional_absolute(m.prometheus_textfile, "exports.prometheus_textfile")?,
            shared_directory: value(m.exports_shared_directory, d.exports.shared_directory),
        },
    })
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
    let mut merged = Merged::default();
    for file in config_files(main)? {
        let raw = parse_file(&file)?;
        merged.add(&file, raw);
    }
    validate(merged)
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
fn absolute_from_cwd(p: &Path) -> PathBuf {
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
    let mut merged = Merged::default();
    for (name, text) in files {
        let path = Path::new(name);
        merged.add(path, parse_str(path, text)?);
    }
    validate(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(&dir.path().join("armord.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.sources[0].path, PathBuf::from(DEFAULT_SOURCE));
    }

    #[test]
    fn dropins_merge_in_lexical_order_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("armord.toml");
        std::fs::write(&main, "profile_prefix = \"a.\"\nmax_profiles = 5\n[parser]\njobs = 2\n").unwrap();
        std::fs::create_dir(dir.path().join("armord.toml.d")).unwrap();
        std::fs::write(dir.path().join("armord.toml.d/20-b.toml"), "profile_prefix = \"b.\"\n").unwrap();
        std::fs::write(
            dir.path().join("armord.toml.d/10-a.toml"),
            "profile_prefix = \"x.\"\n[parser]\njobs = 3\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("armord.toml.d/ignored.conf"), "garbage").unwrap();
        let c = load(&main).unwrap();
        assert_eq!(c.profile_prefix, "b.");
        assert_eq!(c.max_profiles, 5);
        assert_eq!(c.parser.jobs, 3);
    }

    #[test]
    fn sources_accumulate_and_replace_the_default() {
        let c = load_from_strs(&[
            ("a.toml", "[[source]]\npath = \"/srv/a\"\n"),
            (
                "b.toml",
                "[[source]]\npath = \"/srv/b\"\nlayout = \"git-sync\"\nlink = \"current\"\nsubdir = \"profiles\"\n",
            ),
        ])
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.sources[1].layout, LayoutKind::GitSync);
        assert_eq!(c.sources[1].subdir.as_deref(), Some(Path::new("profiles")));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = load_from_strs(&[("/etc/armord/armord.toml", "\nprofile_prefx = \"x\"\n")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/etc/armord/armord.toml:2: "), "{msg}");
        assert!(msg.contains("profile_prefx"), "{msg}");
    }

    #[test]
    fn unknown_key_in_table_is_refused() {
        let e = load_from_strs(&[("c.toml", "[parser]\ntimeout = 3\n")]).unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }

    #[test]
    fn bad_values_name_file_and_key() {
        let cases = [
            ("max_profiles = 0\n", "max_profiles"),
            ("[parser]\ntimeout_secs = 0\n", "parser.timeout_secs"),
            ("[[source]]\npath = \"/a\"\nsubdir = \"../x\"\n", "source.subdir"),
            (
                "[[source]]\npath = \"/a\"\nlayout = \"plain\"\nlink = \"l\"\n",
                "source.link",
            ),
            ("[[source]]\npath = \"/a\"\n[[source]]\npath = \"/a\"\n", "source.path"),
            ("debounce_ms = 500\ndebounce_max_ms = 100\n", "debounce_max_ms"),
            ("mass_removal_percent = 101\n", "mass_removal_percent"),
            ("allowed_attachments = [\"usr/bin/*\"]\n", "allowed_attachments"),
            ("trusted_keys = [\"\"]\n", "trusted_keys"),
        ];
        for (text, key) in cases {
            let e = load_from_strs(&[("/x/c.toml", text)]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("/x/c.toml: key `"), "{text}: {msg}");
            assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
        }
    }

    #[test]
    fn required_signatures_need_a_trusted_key() {
        let e = load_from_strs(&[("/x/c.toml", "[[source]]\npath = \"/s\"\nsignatures = \"required\"\n")]).unwrap_err();
        assert!(
            e.to_string().contains("`source.signatures`") && e.to_string().contains("/s requires signatures"),
            "{e}"
        );
        let c = load_from_strs(&[(
            "/etc/armord/armord.toml",
            "trusted_keys = [\"trusted-keys.d/*.pub\"]\n[[source]]\npath = \"/s\"\nsignatures = \"required\"\n",
        )])
        .unwrap();
        assert_eq!(c.trusted_keys, ["/etc/armord/trusted-keys.d/*.pub"]);
        assert_eq!(c.sources[0].signatures, Signatures::Required);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let c = load_from_strs(&[(
            "/etc/armord/armord.toml.d/10.toml",
            "state_dir = \"../state\"\n[[source]]\npath = \"p\"\n[parser]\npath = \"apparmor_parser\"\ncache_dir = \"c\"\n",
        )])
        .unwrap();
        // Written as the user reads it: the leading `..` taken off.
        assert_eq!(c.state_dir, Path::new("/etc/armord/state"));
        assert_eq!(c.sources[0].path, Path::new("/etc/armord/armord.toml.d/p"));
        assert_eq!(c.parser.path, Path::new("apparmor_parser"));
        assert_eq!(c.parser.cache_dir, Path::new("/etc/armord/armord.toml.d/c"));
        let e = load_from_strs(&[("rel.toml", "state_dir = \"x\"\n")]).unwrap_err();
        assert!(e.to_string().contains("`state_dir`"), "{e}");
    }

    #[test]
    fn bad_enum_value_is_an_error() {
        let e = load_from_strs(&[("c.toml", "mode = \"strict\"\n")]).unwrap_err();
        assert!(e.to_string().contains("strict"), "{e}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let c = load_from_strs(&[(
            "c.toml",
            "profile_prefix = \"custom.\"\n[[source]]\npath = \"/srv/p\"\nsubdir = \"x\"\n[parser]\nfeatures_file = \"/f\"\n",
        )])
        .unwrap();
        let text = c.to_toml();
        assert!(text.contains("state_dir = \"/var/lib/armord\""), "{text}");
        let again = load_from_strs(&[("printed.toml", &text)]).unwrap();
        assert_eq!(again, c);
    }
}
