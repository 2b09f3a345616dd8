//! `armorctl`: the operator's tool. Offline commands work without the daemon.

mod armord_args;
mod assets;
mod audit_cmd;
mod denials;
mod diff;
mod doctor;
mod journal_read;
mod learn;
mod list;
mod man;
mod render;
mod sign;
mod status;
mod suggest_cmd;
mod summary;
mod sync;
mod trial_cmd;
mod validate;
mod wait;

pub use armord_args::ArmordArgs;
pub use denials::record_from_json;
pub use journal_read::JournalInput;
pub use learn::LearnArgs;
pub use summary::By;

use assets::generate_assets;
use audit_cmd::audit_parse;
use denials::denials;
use learn::learn;
use list::list;
use render::render;
use status::status;
use suggest_cmd::suggest_cmd;
use sync::sync;
use trial_cmd::set_trial;
use validate::validate;
use wait::wait;

use crate::apparmor::default_features_file;
use crate::audit::{self, Record, suggest};
use crate::config;
use crate::dbus::{ClientBus, Endpoint};
use crate::escape;
use crate::journal::{Imitations, MESSAGE_ID, Writer};
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
    /// Where armord is (also accepted after the command).
    #[command(flatten)]
    pub reach: Reach,
    #[command(subcommand)]
    pub command: Cmd,
}

/// armord's configuration file, for commands that read it.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArg {
    /// armord's configuration (state directory, tool paths, trusted keys);
    /// default /etc/armord/armord.toml. A path given must exist.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// How to reach a running armord.
#[derive(Debug, Clone, Default, Args)]
pub struct Reach {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The D-Bus bus armord serves on (default: system).
    #[arg(long, value_enum, value_name = "BUS", conflicts_with = "simulate")]
    pub bus: Option<ClientBus>,
    /// Reach an `armord --simulate` through the socket in its state
    /// directory (give the same --config).
    #[arg(long)]
    pub simulate: bool,
}

impl Reach {
    /// These options, with `outer`'s (given before the command) where
    /// these are not given.
    fn or(self, outer: &Reach) -> Reach {
        Reach {
            config: ConfigArg {
                config: self.config.config.or_else(|| outer.config.config.clone()),
            },
            bus: self.bus.or(outer.bus),
            simulate: self.simulate || outer.simulate,
        }
    }

    fn endpoint(&self) -> Result<Endpoint, CliError> {
        if self.simulate {
            if self.bus.is_some() {
                return Err(CliError::Other("--simulate and --bus exclude each other".into()));
            }
            let mut cfg = self.config.load()?;
            crate::daemon::simulate_paths(&mut cfg);
            return Ok(Endpoint::Socket(crate::dbus::simulation_socket(&cfg.state_dir)));
        }
        Ok(Endpoint::Bus(self.bus.unwrap_or(ClientBus::System)))
    }
}

impl ConfigArg {
    /// The configuration: a path given must exist; the default may be absent.
    pub fn load(&self) -> Result<config::Config, CliError> {
        Ok(match &self.config {
            Some(p) => config::load_given(p)?,
            None => config::load(std::path::Path::new(config::DEFAULT_CONFIG))?,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// armord's state, counts and every problem (exit 0 when ready and clean).
    Status {
        #[command(flatten)]
        reach: Reach,
    },
    /// The profiles armord owns or refused.
    List {
        /// One JSON object per profile.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Reconcile now and print the summary (non-zero when a file is invalid).
    /// Removals that wait for the source to settle are waited for.
    Sync {
        /// Remove the profiles of a held mass removal (more than the
        /// configured share of a source, an empty revision) now.
        #[arg(long)]
        allow_mass_removal: bool,
        /// Apply a signed revision of a source whose last applied serial
        /// was lost (armord holds it, as it could be a rollback), and take
        /// its serial as the floor again.
        #[arg(long)]
        accept_signed_serial: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Wait until armord is ready (for cloud-init, before kubeadm join).
    /// Without a bus at all it fails at once.
    Wait {
        /// Give up after this long: `90`, `30s`, `5m`.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        reach: Reach,
    },
    /// Check profile files offline with the checks armord applies.
    Validate {
        /// Profile files or allow-list specs (NAME.allow.toml).
        #[arg(required = true, value_name = "FILES")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the profiles allow-list specs (NAME.allow.toml) render to
    /// (exit 2 when one is wrong; the others are still printed).
    Render {
        /// Spec files (NAME.allow.toml).
        #[arg(required = true, value_name = "SPEC")]
        specs: Vec<PathBuf>,
    },
    /// Sign a revision: write DIR/armord.manifest (every file and its sha256,
    /// a serial, an optional expiry) and its SSH signature
    /// (DIR/armord.manifest.sig, namespace `armord`).
    Sign {
        /// The revision's directory.
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
    Verify {
        /// The revision's directory (holding armord.manifest and its .sig).
        dir: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write man/ and completions/.
        dir: PathBuf,
    },
    /// Work with AppArmor audit records offline.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Show the denials armord re-logged to the journal (works when armord is down).
    Denials(DenialsArgs),
    /// Print the rules that would allow a profile's observed denials.
    Suggest(SuggestArgs),
    /// Enforce a profile in trial now, whatever its gate says (root only).
    Promote {
        /// The profile.
        name: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Put a promoted profile back in trial: complain mode, its evidence
    /// started afresh (root only).
    Trial {
        /// The profile.
        name: String,
        #[command(flatten)]
        reach: Reach,
    },
    /// Print a profile's file with the rules its loaded version learned
    /// (what it would have denied), or a diff for `git apply`; exit 1 when
    /// nothing was learned. Works when armord is down.
    Learn(LearnArgs),
    /// Check the host and armord for what hides denials or changes what a
    /// profile means: one line per check, with the fix (exit 1 on an error).
    Doctor {
        /// One JSON object: {root, as_root, checks: [{check, level, fact, fix}]}.
        #[arg(long)]
        json: bool,
        /// Read the host under this directory (for tests).
        #[arg(long, hide = true)]
        root: Option<PathBuf>,
        #[command(flatten)]
        reach: Reach,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Parse audit lines (audit.log, syslog, dmesg, journal MESSAGE) into one JSON object per line.
    Parse {
        /// A file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// json: one object per line (errors as {"line", "error"});
        /// text: one readable line per record.
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
    /// A table: count, host, profile, operation, path or peer, denied
    /// mask, container, first and last seen; sorted by count.
    #[arg(long)]
    pub summary: bool,
    /// With --summary, group by each denial (default), host, profile or
    /// container.
    #[arg(long, value_enum, default_value_t = By::Denial, requires = "summary")]
    pub by: By,
    #[command(flatten)]
    pub input: JournalInput,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The profile whose denials to allow.
    pub profile: String,
    /// Only denials since this time (anything `journalctl --since` accepts).
    #[arg(long)]
    pub since: Option<String>,
    /// Print additions to the profile's allow-list spec instead of rules.
    #[arg(long)]
    pub spec: bool,
    #[command(flatten)]
    pub input: JournalInput,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot run {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("armord is not running (no org.armord.Armord1 on {1})")]
    NotRunning(zbus::Error, String),
    #[error("permission denied: run as root or join group armord")]
    PermissionDenied,
    #[error("cannot reach {1}: {0}; {2}")]
    NoBus(zbus::Error, String, &'static str),
    #[error("D-Bus: {0}")]
    Bus(zbus::Error),
    #[error("armord was not ready within {0:?} ({1})")]
    Timeout(std::time::Duration, String),
    #[error("{0}")]
    Other(String),
}

/// Where an endpoint is, in words.
fn place(to: &Endpoint) -> String {
    match to {
        Endpoint::Bus(ClientBus::System) => "the D-Bus system bus".into(),
        Endpoint::Bus(ClientBus::Session) => "the D-Bus session bus".into(),
        Endpoint::Socket(p) => format!("the simulation socket {}", escape::path(p)),
    }
}

/// What to do when an endpoint cannot be reached.
fn advice(to: &Endpoint) -> &'static str {
    match to {
        Endpoint::Bus(_) => {
            "is dbus running? For `armord --simulate`, use `armorctl --simulate --config` with the same configuration"
        }
        Endpoint::Socket(_) => "start `armord --simulate` with the same --config first",
    }
}

fn bus_error(e: zbus::Error, to: &Endpoint) -> CliError {
    let name = match &e {
        zbus::Error::MethodError(n, _, _) => n.as_str().to_owned(),
        zbus::Error::FDO(f) => zbus::DBusError::name(f.as_ref()).to_string(),
        _ => String::new(),
    };
    match name.as_str() {
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            CliError::NotRunning(e, place(to))
        }
        "org.freedesktop.DBus.Error.AccessDenied" => CliError::PermissionDenied,
        _ => CliError::Bus(e),
    }
}

/// Write to standard output. A reader that went away (`armorctl … | head`)
/// ends armorctl quietly with status 0; any other write error ends it with
/// a message and status 1. Never a panic.
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|_| o.flush()) {
        stdout_failed(&e);
    }
}

/// What a failed write to standard output means for armorctl.
pub(crate) fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("armorctl: standard output: {e}");
    std::process::exit(1)
}

/// `println!` for armorctl's output (see [`write_out`]).
macro_rules! outln {
    () => { $crate::cli::write_out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($t)*))) };
}
/// `print!` for armorctl's output (see [`write_out`]).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*)) };
}
pub(crate) use {out, outln};

/// `90`, `30s`, `5m`, `1h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::human::parse_duration(s)
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(e.to_string()))
}

async fn proxy(to: &Endpoint) -> Result<(zbus::Connection, crate::dbus::Armord1Proxy<'static>), CliError> {
    let conn = crate::dbus::connect(to).await.map_err(|e| match to {
        // A socket only its owner may use: say so.
        Endpoint::Socket(_)
            if matches!(&e, zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::PermissionDenied) =>
        {
            CliError::PermissionDenied
        }
        // No socket yet is armord not running yet, like an absent name on
        // a bus.
        Endpoint::Socket(_) => CliError::NotRunning(e, place(to)),
        Endpoint::Bus(_) => CliError::NoBus(e, place(to), advice(to)),
    })?;
    let p = crate::dbus::Armord1Proxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| bus_error(e, to))?;
    Ok((conn, p))
}

/// The configuration a command reads: a path given must load; the default
/// may be absent or broken (the built-in defaults are used).
fn config_or_default(c: &ConfigArg) -> Result<config::Config, CliError> {
    match &c.config {
        Some(p) => Ok(config::load_given(p)?),
        None => Ok(config::load(std::path::Path::new(config::DEFAULT_CONFIG)).unwrap_or_default()),
    }
}

pub fn run(cli: Cli) -> Result<i32, CliError> {
    let outer = cli.reach;
    match cli.command {
        Cmd::Status { reach } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(status(&to))
        }
        Cmd::List { json, reach } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(list(&to, json))
        }
        Cmd::Sync {
            allow_mass_removal,
            accept_signed_serial,
            reach,
        } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(sync(&to, allow_mass_removal, accept_signed_serial))
        }
        Cmd::Promote { name, reach } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(set_trial(&to, &name, true))
        }
        Cmd::Trial { name, reach } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(set_trial(&to, &name, false))
        }
        Cmd::Wait { timeout, reach } => {
            let to = reach.or(&outer).endpoint()?;
            runtime()?.block_on(wait(&to, timeout))
        }
        Cmd::Validate { files, config } => {
            let c = ConfigArg {
                config: config.config.or(outer.config.config),
            };
            validate(&c.load()?, &files)
        }
        Cmd::GenerateAssets { dir } => generate_assets(&dir),
        Cmd::Render { specs } => render(&specs),
        Cmd::Sign {
            dir,
            key,
            serial,
            expires,
        } => sign::sign(&dir, &key, serial, expires),
        Cmd::Verify { dir, config } => {
            let c = ConfigArg {
                config: config.config.or(outer.config.config),
            };
            sign::verify(&config_or_default(&c)?, &dir)
        }
        Cmd::Audit(AuditCmd::Parse { file, format }) => audit_parse(&file, format),
        Cmd::Denials(a) => {
            let c = ConfigArg {
                config: a.config.config.clone().or(outer.config.config),
            };
            denials(&config_or_default(&c)?, &a, &Writer::of(outer.simulate))
        }
        Cmd::Suggest(a) => {
            let c = ConfigArg {
                config: a.config.config.clone().or(outer.config.config),
            };
            suggest_cmd(&config_or_default(&c)?, &a, &Writer::of(outer.simulate))
        }
        Cmd::Doctor { json, root, reach } => {
            let reach = reach.or(&outer);
            let run = || {
                let cfg = config_or_default(&reach.config)?;
                let to = reach.endpoint().ok();
                doctor::doctor(&cfg, to.as_ref(), json, root)
            };
            // Exit 2 when it could not run: 1 means an error was found.
            run().or_else(|e| {
                eprintln!("armorctl: {}", escape::text(&e.to_string()));
                Ok(2)
            })
        }
        Cmd::Learn(a) => {
            let c = ConfigArg {
                config: a.config.config.clone().or(outer.config.config),
            };
            // Exit 2 on an error: 1 means nothing was learned.
            let run = || {
                let mut cfg = config_or_default(&c)?;
                if outer.simulate {
                    crate::daemon::simulate_paths(&mut cfg);
                }
                learn(&cfg, &a)
            };
            run().or_else(|e| {
                eprintln!("armorctl: {}", escape::text(&e.to_string()));
                Ok(2)
            })
        }
    }
}
