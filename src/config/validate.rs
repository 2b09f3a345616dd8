//! Validation: the merged raw configuration turned into a [`Config`]. Each
//! key's default comes from [`Config::default`] and its rules are here,
//! once: one function a table, helpers for the common rules, and the
//! checks that span keys at the end.

use super::merge::Origin;
use super::raw::{RawConfig, RawDenials, RawExports, RawLint, RawParser, RawSource, RawTrial};
use super::{
    Config, ConfigError, DenialsConfig, ExportsConfig, KeyAt, LayoutKind, LintConfig, ParserConfig, Signatures,
    SourceConfig, TrialConfig, join_clean,
};
use std::path::{Component, Path, PathBuf};

type Key<T> = Option<Origin<T>>;

/// The effective configuration, or the first key that is wrong.
pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let d = Config::default();
    let trusted_at = key_at(&raw.trusted_keys, "trusted_keys");
    let removal_at = [
        key_at(&raw.mass_removal_settle_secs, "mass_removal_settle_secs"),
        key_at(&raw.removal_settle_ms, "removal_settle_ms"),
    ];
    let trusted_keys = trusted_keys(raw.trusted_keys)?;
    let no_keys = trusted_keys.is_empty().then_some(&trusted_at);
    let debounce_ms = value(raw.debounce_ms, d.debounce_ms);
    let config = Config {
        sources: sources(raw.source, no_keys, d.sources)?,
        profile_prefix: profile_prefix(raw.profile_prefix, d.profile_prefix)?,
        mode: value(raw.mode, d.mode),
        max_file_bytes: positive(raw.max_file_bytes, d.max_file_bytes)?,
        max_profiles: positive(raw.max_profiles, d.max_profiles)?,
        takeover: value(raw.takeover, d.takeover),
        remove_in_use: value(raw.remove_in_use, d.remove_in_use),
        state_dir: absolute(raw.state_dir, d.state_dir)?,
        securityfs: absolute(raw.securityfs, d.securityfs)?,
        proc: absolute(raw.proc, d.proc)?,
        debounce_ms,
        debounce_max_ms: debounce_max(raw.debounce_max_ms, debounce_ms, d.debounce_max_ms)?,
        resync_interval_secs: positive(raw.resync_interval_secs, d.resync_interval_secs)?,
        trusted_keys,
        allowed_attachments: allowed_attachments(raw.allowed_attachments)?,
        removal_settle_ms: value(raw.removal_settle_ms, d.removal_settle_ms),
        mass_removal_percent: percent(raw.mass_removal_percent, d.mass_removal_percent)?,
        mass_removal_settle_secs: value(raw.mass_removal_settle_secs, d.mass_removal_settle_secs),
        parser: parser(raw.parser, d.parser)?,
        denials: denials(raw.denials, d.denials)?,
        exports: exports(raw.exports, d.exports)?,
        trial: trial(raw.trial, d.trial)?,
        lint: lint(raw.lint)?,
    };
    mass_removal_waits_longer(&config, removal_at)?;
    Ok(config)
}

/// `[[source]]` tables, in the order the files list them; none: `default`.
/// `no_keys`: `trusted_keys` names no key, so no source may require
/// signatures.
fn sources(
    raw: Vec<RawSource>,
    no_keys: Option<&KeyAt>,
    default: Vec<SourceConfig>,
) -> Result<Vec<SourceConfig>, ConfigError> {
    let mut sources = Vec::new();
    for s in raw {
        let s = source(s, &sources, no_keys)?;
        sources.push(s);
    }
    Ok(if sources.is_empty() { default } else { sources })
}

/// One source: an absolute directory listed once; a link only for
/// git-sync, a file name; a subdirectory inside it.
fn source(s: RawSource, earlier: &[SourceConfig], no_keys: Option<&KeyAt>) -> Result<SourceConfig, ConfigError> {
    let path = absolute_path(s.path)?;
    let layout = value(s.layout, LayoutKind::Auto);
    if let Some(link) = &s.link {
        if layout != LayoutKind::GitSync && layout != LayoutKind::Auto {
            return Err(link.invalid("only a git-sync source has a link"));
        }
        let name = &link.value;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(link.invalid(format!("{name:?} is not a file name inside the source")));
        }
    }
    if let Some(sub) = &s.subdir
        && (sub.value.is_absolute() || sub.value.components().any(|c| !matches!(c, Component::Normal(_))))
    {
        return Err(sub.invalid(format!("{} must be a relative path without `..`", sub.value.display())));
    }
    if earlier.iter().any(|x| x.path == path.value) {
        return Err(path.invalid(format!("{} is listed twice", path.value.display())));
    }
    if let (Some(sig), Some(keys)) = (&s.signatures, no_keys)
        && sig.value == Signatures::Required
    {
        return Err(ConfigError::Conflict {
            keys: vec![sig.key_at(), keys.clone()],
            reason: format!(
                "{} requires signatures, and trusted_keys names no key",
                path.value.display()
            ),
        });
    }
    Ok(SourceConfig {
        path: path.value,
        layout,
        link: s.link.map(|o| o.value),
        subdir: s.subdir.map(|o| o.value),
        signatures: value(s.signatures, Signatures::Off),
    })
}

/// `profile_prefix` starts every name armord loads: no white space, no
/// control character.
fn profile_prefix(o: Key<String>, default: String) -> Result<String, ConfigError> {
    match o {
        Some(o) if o.value.chars().any(|c| c.is_whitespace() || c.is_control()) => Err(o.invalid(format!(
            "{:?} must not contain white space or control characters",
            o.value
        ))),
        o => Ok(value(o, default)),
    }
}

/// `debounce_max_ms` is at least `debounce_ms`; unset, the default or
/// `debounce_ms`, whichever is longer.
fn debounce_max(o: Key<u64>, debounce_ms: u64, default: u64) -> Result<u64, ConfigError> {
    match o {
        Some(o) if o.value < debounce_ms => {
            Err(o.invalid(format!("{} is less than debounce_ms ({debounce_ms})", o.value)))
        }
        o => Ok(value(o, default.max(debounce_ms))),
    }
}

/// `trusted_keys`: no entry empty; a relative one is relative to the
/// directory of the file that names it.
fn trusted_keys(o: Key<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let Some(o) = o else {
        return Ok(Vec::new());
    };
    if o.value.iter().any(String::is_empty) {
        return Err(o.invalid("an entry is empty"));
    }
    let base = o.file.path.parent().unwrap_or(Path::new(""));
    Ok(o.value
        .iter()
        .map(|k| {
            if Path::new(k).is_absolute() {
                k.clone()
            } else {
                base.join(k).to_string_lossy().into_owned()
            }
        })
        .collect())
}

/// `[lint] off`: names of lints (see `lint::NAMES`).
fn lint(p: RawLint) -> Result<LintConfig, ConfigError> {
    let Some(o) = p.off else {
        return Ok(LintConfig::default());
    };
    if let Some(bad) = o.value.iter().find(|n| !super::LINT_NAMES.contains(&n.as_str())) {
        return Err(o.invalid(format!(
            "{bad:?} is not a lint (the lints: {})",
            super::LINT_NAMES.join(", ")
        )));
    }
    Ok(LintConfig {
        off: o.value.iter().cloned().collect(),
    })
}

/// `allowed_attachments`: absolute path globs.
fn allowed_attachments(o: Key<Vec<String>>) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(o) = o else {
        return Ok(None);
    };
    if let Some(bad) = o.value.iter().find(|g| !g.starts_with('/')) {
        return Err(o.invalid(format!("{bad:?} is not an absolute path glob")));
    }
    Ok(Some(o.value))
}

fn percent(o: Key<u8>, default: u8) -> Result<u8, ConfigError> {
    match o {
        Some(o) if o.value > 100 => Err(o.invalid(format!("{} is not a percentage (0 to 100)", o.value))),
        o => Ok(value(o, default)),
    }
}

/// A mass removal waits at least as long as any removal.
fn mass_removal_waits_longer(c: &Config, keys: [KeyAt; 2]) -> Result<(), ConfigError> {
    if c.mass_removal_settle_secs.saturating_mul(1000) < c.removal_settle_ms {
        return Err(ConfigError::Conflict {
            keys: keys.into(),
            reason: format!(
                "{}s is shorter than removal_settle_ms ({} ms)",
                c.mass_removal_settle_secs, c.removal_settle_ms
            ),
        });
    }
    Ok(())
}

/// `[parser]`.
fn parser(p: RawParser, d: ParserConfig) -> Result<ParserConfig, ConfigError> {
    let path = match p.path.map(program) {
        Some(o) if o.value.as_os_str().is_empty() => return Err(o.invalid("must not be empty")),
        o => value(o, d.path),
    };
    Ok(ParserConfig {
        path,
        timeout_secs: positive(p.timeout_secs, d.timeout_secs)?,
        jobs: value(p.jobs, d.jobs),
        cache_dir: absolute(p.cache_dir, d.cache_dir)?,
        features_file: optional_absolute(p.features_file)?,
    })
}

/// `[denials]`.
fn denials(p: RawDenials, d: DenialsConfig) -> Result<DenialsConfig, ConfigError> {
    Ok(DenialsConfig {
        enabled: value(p.enabled, d.enabled),
        journalctl: value(p.journalctl.map(program), d.journalctl),
        scope: value(p.scope, d.scope),
        rate_limit_burst: positive(p.rate_limit_burst, d.rate_limit_burst)?,
        rate_limit_interval_secs: positive(p.rate_limit_interval_secs, d.rate_limit_interval_secs)?,
        audit_backlog_limit: value(p.audit_backlog_limit, d.audit_backlog_limit),
    })
}

/// `[exports]`.
fn exports(p: RawExports, d: ExportsConfig) -> Result<ExportsConfig, ConfigError> {
    Ok(ExportsConfig {
        nfd_features_file: optional_absolute(p.nfd_features_file)?,
        prometheus_textfile: optional_absolute(p.prometheus_textfile)?,
        shared_directory: value(p.shared_directory, d.shared_directory),
    })
}

/// The longest `min_trial`: a trial that long is a decision put off.
const MAX_MIN_TRIAL: std::time::Duration = std::time::Duration::from_secs(90 * 86400);
/// The longest `fleet_spread`.
const MAX_FLEET_SPREAD: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

/// `[trial]`.
fn trial(p: RawTrial, d: TrialConfig) -> Result<TrialConfig, ConfigError> {
    Ok(TrialConfig {
        min_trial: duration_at_most(p.min_trial, d.min_trial, MAX_MIN_TRIAL)?,
        fleet_spread: duration_at_most(p.fleet_spread, d.fleet_spread, MAX_FLEET_SPREAD)?,
        max_rules: at_most(p.max_rules, d.max_rules, 100_000)?,
        max_profiles: at_most(p.max_profiles, d.max_profiles, 1_000_000)?,
        allow_demotion: value(p.allow_demotion, d.allow_demotion),
        machine_id: absolute(p.machine_id, d.machine_id)?,
    })
}

/// A duration as people write it (`30m`, `24h`, `7d`), at most `max`.
fn duration_at_most(
    o: Key<String>,
    default: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let Some(o) = o else { return Ok(default) };
    let d = crate::human::parse_duration(&o.value).map_err(|e| o.invalid(e))?;
    if d > max {
        return Err(o.invalid(format!(
            "{} is longer than the most allowed, {}",
            crate::human::duration(d),
            crate::human::duration(max)
        )));
    }
    Ok(d)
}

/// A count from 1 to `max`.
fn at_most(o: Key<usize>, default: usize, max: usize) -> Result<usize, ConfigError> {
    match o {
        Some(o) if o.value == 0 || o.value > max => Err(o.invalid(format!("must be from 1 to {max}"))),
        o => Ok(value(o, default)),
    }
}

// ---- the common rules ----

fn value<T>(o: Key<T>, default: T) -> T {
    o.map_or(default, |o| o.value)
}

/// The key and where it was set (`name` and nowhere: not set).
fn key_at<T>(o: &Key<T>, name: &str) -> KeyAt {
    o.as_ref().map_or_else(
        || KeyAt {
            key: name.to_owned(),
            set_at: None,
        },
        Origin::key_at,
    )
}

fn positive<T: PartialOrd + Default>(o: Key<T>, default: T) -> Result<T, ConfigError> {
    match o {
        Some(o) if o.value <= T::default() => Err(o.invalid("must be greater than 0")),
        o => Ok(value(o, default)),
    }
}

/// A path resolved against the file that names it, and absolute then.
fn absolute_path(o: Origin<PathBuf>) -> Result<Origin<PathBuf>, ConfigError> {
    let o = resolved(o);
    if o.value.is_absolute() {
        Ok(o)
    } else {
        Err(o.invalid(format!("{} is not an absolute path", o.value.display())))
    }
}

/// An optional path; set, it must be absolute (see [`absolute_path`]).
fn optional_absolute(o: Key<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
    Ok(o.map(absolute_path).transpose()?.map(|o| o.value))
}

/// A path with a default; set, it must be absolute (see [`absolute_path`]).
fn absolute(o: Key<PathBuf>, default: PathBuf) -> Result<PathBuf, ConfigError> {
    Ok(optional_absolute(o)?.unwrap_or(default))
}

/// A relative path in a configuration file is relative to that file's
/// directory.
fn resolved(mut o: Origin<PathBuf>) -> Origin<PathBuf> {
    if let Some(dir) = &o.file.dir
        && o.value.is_relative()
        && !o.value.as_os_str().is_empty()
    {
        o.value = join_clean(dir, &o.value);
    }
    o
}

/// A program: a bare name (`apparmor_parser`) stays a name, looked up on
/// PATH; a path is resolved like any other.
fn program(o: Origin<PathBuf>) -> Origin<PathBuf> {
    if o.value.components().count() > 1 {
        resolved(o)
    } else {
        o
    }
}
