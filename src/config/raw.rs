//! The raw shapes: what one configuration file may say, every key optional
//! and unknown keys refused, and reading a file into them.
//!
//! A key is declared here once, as an [`Origin`] of its TOML type; its
//! default and its rules are in `validate`.

use super::merge::{ConfigFile, Layer, Origin, Place, line_at, table};
use super::{ConfigError, DenialScope, ForcedMode, LayoutKind, RemoveInUse, Signatures};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Key<T> = Option<Origin<T>>;

table! {
    /// The top level of a file.
    #[derive(Default)]
    struct RawConfig {
        #[serde(default)]
        source: Vec<RawSource>,
        profile_prefix: Key<String>,
        mode: Key<ForcedMode>,
        max_file_bytes: Key<u64>,
        max_profiles: Key<usize>,
        takeover: Key<bool>,
        remove_in_use: Key<RemoveInUse>,
        state_dir: Key<PathBuf>,
        securityfs: Key<PathBuf>,
        proc: Key<PathBuf>,
        debounce_ms: Key<u64>,
        debounce_max_ms: Key<u64>,
        resync_interval_secs: Key<u64>,
        trusted_keys: Key<Vec<String>>,
        allowed_attachments: Key<Vec<String>>,
        removal_settle_ms: Key<u64>,
        mass_removal_percent: Key<u8>,
        mass_removal_settle_secs: Key<u64>,
        #[serde(default)]
        parser: RawParser,
        #[serde(default)]
        denials: RawDenials,
        #[serde(default)]
        exports: RawExports,
        #[serde(default)]
        trial: RawTrial,
        #[serde(default)]
        lint: RawLint,
    }
}

table! {
    /// A `[[source]]` table; these accumulate across files.
    struct RawSource {
        path: Origin<PathBuf>,
        layout: Key<LayoutKind>,
        link: Key<String>,
        subdir: Key<PathBuf>,
        signatures: Key<Signatures>,
    }
}

table! {
    /// `[parser]`.
    #[derive(Default)]
    struct RawParser {
        path: Key<PathBuf>,
        timeout_secs: Key<u64>,
        jobs: Key<u32>,
        cache_dir: Key<PathBuf>,
        features_file: Key<PathBuf>,
    }
}

table! {
    /// `[denials]`.
    #[derive(Default)]
    struct RawDenials {
        enabled: Key<bool>,
        journalctl: Key<PathBuf>,
        scope: Key<DenialScope>,
        rate_limit_burst: Key<u32>,
        rate_limit_interval_secs: Key<u64>,
        audit_backlog_limit: Key<u32>,
    }
}

table! {
    /// `[exports]`.
    #[derive(Default)]
    struct RawExports {
        nfd_features_file: Key<PathBuf>,
        prometheus_textfile: Key<PathBuf>,
        shared_directory: Key<bool>,
    }
}

table! {
    /// `[trial]`.
    #[derive(Default)]
    struct RawTrial {
        min_trial: Key<String>,
        fleet_spread: Key<String>,
        max_rules: Key<usize>,
        max_profiles: Key<usize>,
        allow_demotion: Key<bool>,
        machine_id: Key<PathBuf>,
    }
}

table! {
    /// `[lint]`.
    #[derive(Default)]
    struct RawLint {
        off: Key<Vec<String>>,
    }
}

/// Read and parse one file.
pub(super) fn parse_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(path, &text)
}

/// Parse `text`, the content of `path`; every key it sets remembers both.
pub(super) fn parse_str(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: toml_message(text, &e),
    })?;
    let place = Place {
        file: Arc::new(ConfigFile::new(path)),
        text,
    };
    raw.place(&place, "");
    Ok(raw)
}

/// `LINE: message` (the caller puts the file first: `FILE:LINE: message`),
/// or ` message` where the error has no place.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => format!("{}: {msg}", line_at(text, span.start)),
        None => format!(" {msg}"),
    }
}
