//! `armorctl`: the operator's tool. Offline commands work without the daemon.

mod armord_args;
mod assets;
mod audit_cmd;
mod denials;
mod list;
mod render;
mod sign;
mod status;
mod suggest_cmd;
mod sync;
mod validate;
mod wait;

pub use armord_args::ArmordArgs;
pub use denials::record_from_json;

use assets::generate_assets;
use audit_cmd::audit_parse;
use denials::denials;
use list::list;
use render::render;
use status::status;
use suggest_cmd::suggest_cmd;
use sync::sync;
use validate::validate;
use wait::wait;

use crate::apparmor::default_features_file;
use crate::audit::{self, Record, suggest};
use crate::config;
use crate::dbus::Bus;
use crate::escape;
use crate::journal::MESSAGE_ID;
use crate::state::{Loaded, StateDir};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, Parser)]
#[command(
    name = "armorctl",
    version,
    about = "Inspect and drive armord, and debug AppArmor denials"
)]
pub struct Cli {
    /// armord's configuration (for the state directory and tool paths).
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The bus armord serves on.
    #[arg(long, global = true, value_enum, default_value = "system")]
    pub bus: Bus,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// armord's state, counts and every problem (exit 0 when ready and clean).
    Status,
    /// The profiles armord owns or refused.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Reconcile now and print the summary (non-zero when a file is invalid).
    /// Removals that wait for the source to settle are waited for.
    Sync {
        /// Remove the profiles of a held mass removal (more than the
        /// configured share of a source, an empty revision) now.
        #[arg(long)]
        allow_mass_removal: bool,
    },
    /// Wait until armord is ready (for cloud-init, before kubeadm join).
    Wait {
        /// Give up after this long: `90`, `30s`, `5m`.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Check profile files offline with the checks armord applies.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the profile an allow-list spec (NAME.allow.toml) renders to.
    Render { spec: PathBuf },
    /// Sign a revision: write DIR/armord.manifest (every file and its sha256,
    /// a serial, an optional expiry) and its SSH signature
    /// (DIR/armord.manifest.sig, namespace `armord`).
    Sign {
        dir: PathBuf,
        /// An unencrypted OpenSSH ed25519 private key.
        #[arg(long, value_name = "PRIVATE_KEY")]
        key: PathBuf,
        /// Must never go down for a source (default: now, in seconds).
        #[arg(long)]
        serial: Option<u64>,
        /// The revision is refused after this long: `30d`, `12h`.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// Check a signed revision offline with the node's trusted keys.
    Verify { dir: PathBuf },
    /// Write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
    /// Work with AppArmor audit records offline.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Show the denials armord re-logged to the journal (works when armord is down).
    Denials(DenialsArgs),
    /// Print the rules that would allow a profile's observed denials.
    Suggest(SuggestArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Parse audit lines (audit.log, syslog, dmesg, journal MESSAGE) into one JSON object per line.
    Parse {
        /// A file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct DenialsArgs {
    /// Only this profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// Only since this time (anything `journalctl --since` accepts).
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing new denials.
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per denial (per group with --summary).
    #[arg(long)]
    pub json: bool,
    /// A table: profile, operation, path or peer, denied mask, count, first
    /// and last seen, container; sorted by count.
    #[arg(long)]
    pub summary: bool,
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    pub profile: String,
    #[arg(long)]
    pub since: Option<String>,
    /// Print additions to the profile's allow-list spec instead of rules.
    #[arg(long)]
    pub spec: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot run {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("armord is not running (no org.armord.Armord1 on the D-Bus {1} bus)")]
    NotRunning(zbus::Error, &'static str),
    #[error("permission denied: run as root or join group armord")]
    PermissionDenied,
    #[error("cannot reach the D-Bus {1} bus: {0}")]
    NoBus(zbus::Error, &'static str),
    #[error("D-Bus: {0}")]
    Bus(zbus::Error),
    #[error("armord was not ready within {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Other(String),
}

fn bus_name(b: Bus) -> &'static str {
    match b {
        Bus::Session => "session",
        _ => "system",
    }
}

fn bus_error(e: zbus::Error, bus: Bus) -> CliError {
    let name = match &e {
        zbus::Error::MethodError(n, _, _) => n.as_str().to_owned(),
        zbus::Error::FDO(f) => zbus::DBusError::name(f.as_ref()).to_string(),
        _ => String::new(),
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            CliError::NotRunning(e, bus_name(bus))
        }
        "org.freedesktop.DBus.Error.AccessDenied" => CliError::PermissionDenied,
        _ => CliError::Bus(e),
    }
}

/// `90`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .trim()
        .split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90, 30s, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(e.to_string()))
}

async fn proxy(bus: Bus) -> Result<(zbus::Connection, crate::dbus::Armord1Proxy<'static>), CliError> {
    let conn = crate::dbus::connect(bus)
        .await
        .map_err(|e| CliError::NoBus(e, bus_name(bus)))?;
    let p = crate::dbus::Armord1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| bus_error(e, bus))?;
    Ok((conn, p))
}

fn config_or_default(path: &std::path::Path) -> config::Config {
    config::load(path).unwrap_or_default()
}

pub fn run(cli: Cli) -> Result<i32, CliError> {
    let bus = cli.bus;
    match cli.command {
        Cmd::Status => runtime()?.block_on(status(bus)),
        Cmd::List { json } => runtime()?.block_on(list(bus, json)),
        Cmd::Sync { allow_mass_removal } => runtime()?.block_on(sync(bus, allow_mass_removal)),
        Cmd::Wait { timeout } => runtime()?.block_on(wait(bus, timeout)),
        Cmd::Validate { files } => validate(&config::load(&cli.config)?, &files),
        Cmd::GenerateAssets { dir } => generate_assets(&dir),
        Cmd::Render { spec } => render(&spec),
        Cmd::Sign {
            dir,
            key,
            serial,
            expires,
        } => sign::sign(&dir, &key, serial, expires),
        Cmd::Verify { dir } => sign::verify(&config_or_default(&cli.config), &dir),
        Cmd::Audit(AuditCmd::Parse { file, format }) => audit_parse(&file, format),
        Cmd::Denials(a) => denials(&config_or_default(&cli.config), &a),
        Cmd::Suggest(a) => suggest_cmd(&config_or_default(&cli.config), &a),
    }
}
