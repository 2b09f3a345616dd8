//! `armorctl`: the operator's tool. Offline commands work without the daemon.

mod armord_args;

pub use armord_args::ArmordArgs;

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
    /// One JSON object per denial.
    #[arg(long)]
    pub json: bool,
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
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m or h)")),
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
        Cmd::Audit(AuditCmd::Parse { file, format }) => audit_parse(&file, format),
        Cmd::Denials(a) => denials(&config_or_default(&cli.config), &a),
        Cmd::Suggest(a) => suggest_cmd(&config_or_default(&cli.config), &a),
    }
}

fn text_line(r: &Record) -> String {
    let s = |k: &str| r.str(k).map(|v| v.into_owned()).unwrap_or_default();
    let mut out = format!(
        "{} {} {}",
        r.kind,
        r.profile().as_deref().unwrap_or("-"),
        s("operation")
    );
    for k in ["name", "capname", "denied", "mask", "comm", "pid"] {
        if let Some(v) = r.str(k) {
            out.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(id) = r.audit_id {
        out.push_str(&format!(" audit_id={id}"));
    }
    out
}

fn audit_parse(file: &PathBuf, format: Format) -> Result<i32, CliError> {
    let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).map_err(|e| CliError::Io(file.clone(), e))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0;
    for line in input.split(b'\n') {
        let line = line.map_err(|e| CliError::Io(file.clone(), e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let printed = match (audit::parse(&text), format) {
            (Ok(r), Format::Json) => serde_json::to_string(&r).unwrap_or_default(),
            (Ok(r), Format::Text) => text_line(&r),
            (Err(e), Format::Json) => {
                bad += 1;
                serde_json::json!({ "error": e.to_string() }).to_string()
            }
            (Err(e), Format::Text) => {
                bad += 1;
                format!("error: {e}")
            }
        };
        if writeln!(out, "{printed}").is_err() {
            return Ok(0);
        }
    }
    let _ = out.flush();
    Ok(if bad > 0 { 2 } else { 0 })
}

/// Run `journalctl -o json` over armord's denial entries.
fn journal_query(
    cfg: &config::Config,
    profile: Option<&str>,
    since: Option<&str>,
    follow: bool,
) -> Result<std::process::Child, CliError> {
    let mut c = Command::new(&cfg.denials.journalctl);
    c.args(["--output=json", "--no-pager"]);
    c.arg(format!("MESSAGE_ID={MESSAGE_ID}"));
    if let Some(p) = profile {
        c.arg(format!("ARMORD_PROFILE={p}"));
    }
    if let Some(s) = since {
        c.arg(format!("--since={s}"));
    }
    if follow {
        c.arg("--follow");
    }
    c.stdout(Stdio::piped()).stdin(Stdio::null());
    c.spawn()
        .map_err(|e| CliError::Spawn(cfg.denials.journalctl.clone(), e))
}

/// Each re-logged record from the journal (the ARMORD_RECORD field).
fn journal_records(
    child: &mut std::process::Child,
    mut each: impl FnMut(serde_json::Value, serde_json::Value) -> bool,
) {
    let Some(out) = child.stdout.take() else { return };
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(rec) = entry
            .get("ARMORD_RECORD")
            .and_then(|v| v.as_str())
            .and_then(|s| serde_json::from_str(s).ok())
        else {
            continue;
        };
        if !each(entry, rec) {
            break;
        }
    }
}

fn denials(cfg: &config::Config, a: &DenialsArgs) -> Result<i32, CliError> {
    let mut child = journal_query(cfg, a.profile.as_deref(), a.since.as_deref(), a.follow)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0;
    journal_records(&mut child, |entry, rec| {
        n += 1;
        let line = if a.json {
            rec.to_string()
        } else {
            let s = |k: &str| {
                rec.get(k)
                    .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                    .unwrap_or_default()
            };
            let when = entry
                .get("__REALTIME_TIMESTAMP")
                .and_then(|v| v.as_str())
                .and_then(|us| us.parse::<u64>().ok())
                .map(|us| format!("{}", us / 1_000_000))
                .unwrap_or_default();
            format!(
                "{when} {} {} {} {} {} comm={} pid={}",
                s("kind"),
                if rec.get("profile").is_some() {
                    s("profile")
                } else {
                    s("label")
                },
                s("operation"),
                if rec.get("name").is_some() {
                    s("name")
                } else {
                    s("capname")
                },
                if rec.get("denied").is_some() {
                    s("denied")
                } else {
                    s("mask")
                },
                s("comm"),
                s("pid")
            )
        };
        writeln!(out, "{line}").is_ok()
    });
    let _ = child.wait();
    if n == 0 && !a.json {
        eprintln!(
            "armorctl: no denials recorded{}",
            a.profile.as_ref().map(|p| format!(" for {p}")).unwrap_or_default()
        );
    }
    Ok(0)
}

/// The profile text armord loaded for `name`, from its store.
fn loaded_profile_text(cfg: &config::Config, name: &str) -> Option<String> {
    let state = StateDir::new(cfg.state_dir.clone());
    let Loaded::Found(m) = state.load_manifest() else {
        return None;
    };
    let o = m.profiles.get(name)?;
    String::from_utf8(state.store_get(&o.sha256)?).ok()
}

fn compiles(cfg: &config::Config, text: &str) -> Result<(), String> {
    let parser = crate::daemon::find_program(&cfg.parser.path).ok_or("apparmor_parser not found")?;
    let dir = tempfile_dir().map_err(|e| e.to_string())?;
    let file = dir.join("profile");
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let mut c = Command::new(parser);
    c.args(["-Q", "-K"]);
    if !cfg.securityfs.join("features").exists()
        && let Some(f) = cfg.parser.features_file.clone().or_else(default_features_file)
    {
        c.arg("-M").arg(f);
    }
    let out = c.arg(&file).output().map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.starts_with("Cache"))
            .unwrap_or("rejected")
            .to_owned())
    }
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir().join(format!(
        "armorctl-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

fn suggest_cmd(cfg: &config::Config, a: &SuggestArgs) -> Result<i32, CliError> {
    let mut child = journal_query(cfg, Some(&a.profile), a.since.as_deref(), false)?;
    let mut lines = Vec::new();
    journal_records(&mut child, |_, rec| {
        lines.push(rec);
        true
    });
    let _ = child.wait();
    // Rebuild records from their JSON form.
    let owned: Vec<Record<'static>> = lines.iter().filter_map(record_from_json).collect();
    if a.spec {
        let lines = crate::spec::suggest(&owned);
        if lines.is_empty() {
            eprintln!("armorctl: no denials of {} to suggest spec additions for", a.profile);
            return Ok(1);
        }
        println!("# add to {}{}:", a.profile, crate::spec::SPEC_SUFFIX);
        for l in lines {
            println!("{l}");
        }
        return Ok(0);
    }
    let rules = suggest::rules(&owned);
    if rules.is_empty() {
        eprintln!("armorctl: no denials of {} to suggest rules for", a.profile);
        return Ok(1);
    }
    // Check each rule in a copy of the loaded profile (or a bare profile).
    let base = loaded_profile_text(cfg, &a.profile);
    let mut out = String::new();
    let mut failed = 0;
    for rule in &rules {
        let text = base
            .as_deref()
            .and_then(|t| suggest::insert_rules(t, &a.profile, std::slice::from_ref(rule)))
            .unwrap_or_else(|| format!("abi <abi/3.0>,\nprofile armorctl.check {{\n  {rule}\n}}\n"));
        match compiles(cfg, &text) {
            Ok(()) => out.push_str(&format!("  {rule}\n")),
            Err(e) => {
                failed += 1;
                out.push_str(&format!("  # {rule}  (does not compile: {e})\n"));
            }
        }
    }
    if base.is_none() {
        eprintln!(
            "armorctl: {} is not in armord's store; each rule was checked in a bare profile",
            a.profile
        );
    }
    print!("{out}");
    Ok(if failed > 0 { 2 } else { 0 })
}

/// A record from the JSON `armorctl audit parse` and ARMORD_RECORD write.
pub fn record_from_json(v: &serde_json::Value) -> Option<Record<'static>> {
    let obj = v.as_object()?;
    let mut rec = Record {
        kind: obj.get("kind")?.as_str()?.to_owned().into(),
        audit_id: obj
            .get("audit_id")
            .and_then(|s| s.as_str())
            .and_then(audit::AuditId::parse),
        fields: Vec::new(),
    };
    for (k, val) in obj {
        if k == "kind" || k == "audit_id" {
            continue;
        }
        let val = match val {
            serde_json::Value::Number(n) => audit::Value::Num(n.as_i64()?),
            serde_json::Value::String(s) => audit::Value::Str(s.clone().into()),
            _ => continue,
        };
        rec.fields.push((k.clone().into(), val));
    }
    Some(rec)
}

async fn status(bus: Bus) -> Result<i32, CliError> {
    let (_c, p) = proxy(bus).await?;
    let state = p.state().await.map_err(|e| bus_error(e, bus))?;
    let counts = p.counts().await.map_err(|e| bus_error(e, bus))?;
    let (_, summary) = p.last_sync().await.map_err(|e| bus_error(e, bus))?;
    let profiles = p.list_profiles().await.map_err(|e| bus_error(e, bus))?;
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    println!("state: {state}");
    println!(
        "profiles: {} loaded, {} invalid, {} refused, {} deferred, {} sources unavailable",
        n("loaded"),
        n("invalid"),
        n("refused"),
        n("deferred"),
        n("unavailable")
    );
    println!("last sync: {}", escape::text(&summary));
    let mut problems: Vec<&str> = profiles
        .iter()
        .filter(|p| !p.error.is_empty() && p.state != "held")
        .map(|p| p.error.as_str())
        .collect();
    problems.sort();
    problems.dedup();
    for p in profiles.iter().filter(|p| p.state == "held") {
        println!("held: {}: {}", escape::text(&p.name), escape::text(&p.error));
    }
    if n("held") > 0 {
        println!(
            "hint: {} removals are held as a mass removal; `armorctl sync --allow-mass-removal` removes them now",
            n("held")
        );
    }
    for e in &problems {
        println!("error: {}", escape::text(e));
    }
    Ok(if state == "ready" && problems.is_empty() { 0 } else { 2 })
}

async fn list(bus: Bus, json: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(bus).await?;
    let profiles = p.list_profiles().await.map_err(|e| bus_error(e, bus))?;
    for pr in &profiles {
        if json {
            println!("{}", serde_json::to_string(pr).unwrap_or_default());
        } else {
            let name = if pr.name.is_empty() { "-" } else { &pr.name };
            let mode = if pr.mode.is_empty() { "-" } else { &pr.mode };
            print!(
                "{}\t{}\t{}\t{}",
                escape::text(name),
                escape::text(mode),
                escape::text(&pr.state),
                escape::text(&pr.file)
            );
            if !pr.error.is_empty() {
                print!("\t{}", escape::text(&pr.error));
            }
            println!();
        }
    }
    Ok(0)
}

async fn sync(bus: Bus, allow_mass_removal: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(bus).await?;
    let r = if allow_mass_removal {
        let options = std::collections::HashMap::from([("allow-mass-removal", zbus::Variant::from(true))]);
        p.sync_with_options(options).await
    } else {
        p.sync().await
    }
    .map_err(|e| bus_error(e, bus))?;
    println!("{}", escape::text(&r.summary));
    for e in &r.problems {
        println!("error: {}", escape::text(e));
    }
    Ok(if r.clean { 0 } else { 2 })
}

async fn wait(bus: Bus, timeout: std::time::Duration) -> Result<i32, CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let state = async {
            let (_c, p) = proxy(bus).await?;
            p.state().await.map_err(|e| bus_error(e, bus))
        }
        .await;
        match state {
            Ok(s) if s == "ready" => return Ok(0),
            Ok(s) if s == "degraded" => {
                eprintln!("armorctl: armord is ready with problems (see armorctl status)");
                return Ok(0);
            }
            Err(CliError::PermissionDenied) => return Err(CliError::PermissionDenied),
            Ok(s) => last = Some(s),
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(s) = last {
                eprintln!("armorctl: armord is {s}");
            }
            return Err(CliError::Timeout(timeout));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The checks armord applies, offline: the file rules of a source, the
/// configured prefix and mode, reserved and duplicate names, and the real
/// parser. Kernel ownership is not checked (it needs the running node).
fn validate(cfg: &config::Config, files: &[PathBuf]) -> Result<i32, CliError> {
    let verdicts = crate::daemon::validate_files(cfg, files).map_err(|e| CliError::Other(e.to_string()))?;
    let mut bad = 0;
    for (file, problem) in verdicts {
        match problem {
            None => println!("ok: {}", crate::escape::path(&file)),
            Some(p) => {
                bad += 1;
                println!("error: {p}");
            }
        }
    }
    Ok(if bad > 0 { 2 } else { 0 })
}

/// Man pages (`man/*.1`, `man/armord.8`) and completions for bash, zsh and
/// fish, generated from the clap definitions.
fn generate_assets(dir: &std::path::Path) -> Result<i32, CliError> {
    use clap::CommandFactory;
    let io = |p: &std::path::Path| {
        let p = p.to_owned();
        move |e: std::io::Error| CliError::Io(p, e)
    };
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let write_man = |cmd: clap::Command, file: std::path::PathBuf| -> Result<(), CliError> {
        let mut buf = Vec::new();
        let section = if file.extension().is_some_and(|e| e == "8") {
            "8"
        } else {
            "1"
        };
        clap_mangen::Man::new(cmd)
            .section(section)
            .render(&mut buf)
            .map_err(io(&file))?;
        std::fs::write(&file, buf).map_err(io(&file))
    };
    let ctl = Cli::command();
    write_man(ctl.clone(), man.join("armorctl.1"))?;
    for sub in ctl.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("armorctl-{}", sub.get_name());
        write_man(sub.clone().name(name.clone()), man.join(format!("{name}.1")))?;
    }
    write_man(ArmordArgs::command(), man.join("armord.8"))?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "bash"),
        (clap_complete::Shell::Zsh, "zsh"),
        (clap_complete::Shell::Fish, "fish"),
    ] {
        for (mut cmd, bin) in [(Cli::command(), "armorctl"), (ArmordArgs::command(), "armord")] {
            let d = comp.join(name);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            clap_complete::generate_to(shell, &mut cmd, bin, &d).map_err(io(&d))?;
        }
    }
    Ok(0)
}

fn render(path: &std::path::Path) -> Result<i32, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io(path.to_owned(), e))?;
    match crate::spec::Spec::parse(&text) {
        Ok(spec) => {
            print!("{}", spec.render());
            Ok(0)
        }
        Err(e) => {
            eprintln!("armorctl: {}: {e}", crate::escape::path(path));
            Ok(2)
        }
    }
}
