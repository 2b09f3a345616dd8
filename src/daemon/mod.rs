//! Wiring: from a configuration to a working reconciler (real or simulated
//! kernel), the one-shot run, and the service loop.

mod denials;
mod drift;
pub mod exports;
pub mod memory;
mod rows;
mod service;
mod status;

pub use service::run;
pub use status::{Status, publish_into};

use crate::apparmor::{
    DirectLoad, Kernel, Parser, ParserRunner, ProcReader, SecurityFs, SimKernel, default_features_file,
};
use crate::config::{self, Config};
use crate::reconcile::{ApplyError, Reconciler, Report};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Apply(#[from] ApplyError),
    #[error("apparmor_parser not found: {0} (install the `apparmor` package, or set parser.path)")]
    NoParser(PathBuf),
    #[error("{0}")]
    Kernel(#[from] crate::apparmor::KernelError),
    #[error("{0}")]
    Watch(#[from] crate::watch::WatchError),
    #[error("internal: {0}")]
    Task(String),
}

/// Find a program by path, or on PATH and the sbin directories.
pub fn find_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

/// Where a simulation keeps its state when the configuration names none of
/// its own: never the system's `/var/lib/armord`.
pub fn simulation_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("armord-simulate")
}

/// Adjust a configuration for simulation: state, cache and kernel live under
/// the state dir, and nothing touches system paths.
pub fn simulate_paths(cfg: &mut Config) {
    if cfg.state_dir == Path::new(config::DEFAULT_STATE_DIR) {
        cfg.state_dir = simulation_state_dir();
    }
    cfg.parser.cache_dir = cfg.state_dir.join("cache");
}

fn runner(cfg: &Config, program: PathBuf, features_file: Option<PathBuf>) -> ParserRunner {
    ParserRunner {
        program,
        timeout: Duration::from_secs(cfg.parser.timeout_secs),
        jobs: cfg.parser.jobs,
        cache_dir: cfg.parser.cache_dir.clone(),
        features_file,
        scratch_dir: cfg.state_dir.join("tmp"),
        direct: Some(Arc::new(DirectLoad::cache_only())),
    }
}

/// The parser and kernel for a configuration.
/// The parser and the kernel a node works with.
pub type System = (Arc<dyn Parser>, Arc<dyn Kernel>);

pub fn system(cfg: &Config, simulate: bool) -> Result<System, DaemonError> {
    let found = find_program(&cfg.parser.path);
    if simulate {
        let features = cfg.parser.features_file.clone().or_else(default_features_file);
        let parser = found.map(|p| runner(cfg, p, features));
        if parser.is_none() {
            log::warn!(
                "{} not found: the simulation does not compile profiles (install the `apparmor` package for real validation)",
                cfg.parser.path.display()
            );
        }
        let sim = Arc::new(SimKernel::new(cfg.state_dir.join("simulate"), parser));
        return Ok((sim.clone(), sim));
    }
    let program = found.ok_or_else(|| DaemonError::NoParser(cfg.parser.path.clone()))?;
    let kernel = SecurityFs {
        root: cfg.securityfs.clone(),
        proc: ProcReader { root: cfg.proc.clone() },
    };
    kernel.check()?;
    // With AppArmor in the kernel, the kernel's own features are used.
    let features = if cfg.securityfs.join("features").exists() {
        None
    } else {
        cfg.parser.features_file.clone()
    };
    let mut parser = runner(cfg, program, features.clone());
    if features.is_none()
        && let Some(d) = DirectLoad::for_kernel(&cfg.securityfs)
    {
        parser.direct = Some(Arc::new(d));
    }
    Ok((Arc::new(parser), Arc::new(kernel)))
}

/// Open the reconciler for a configuration and log what opening found.
pub fn open(cfg: Config, simulate: bool) -> Result<Reconciler, DaemonError> {
    let (parser, kernel) = system(&cfg, simulate)?;
    let r = Reconciler::open(cfg, parser, kernel)?;
    for n in &r.notes {
        log::warn!("{n}");
    }
    Ok(r)
}

/// Log a report: one line per change and per problem, with fields.
/// At most this many problems are logged one by one per reconcile; the rest
/// are counted in one line (`armorctl status` lists every one).
const LOGGED_PROBLEMS: usize = 50;

/// Log what a reconcile did. Problems already logged (in `known`) are not
/// logged again while they stand; `known` becomes the current set.
pub fn log_report(what: &str, r: &Report, known: &mut std::collections::HashSet<String>) {
    for (list, verb) in [
        (&r.loaded, "loaded"),
        (&r.replaced, "replaced"),
        (&r.restored, "restored"),
        (&r.removed, "removed"),
    ] {
        for name in list {
            log::info!(profile = name.as_str(), action = verb; "{verb} profile {name}");
        }
    }
    for crate::reconcile::Deferred { name, pids } in &r.deferred {
        log::info!(profile = name.as_str(); "removal of {name} deferred: it still confines pids {pids:?}");
    }
    let mut current = std::collections::HashSet::with_capacity(r.problems.len());
    let (mut logged, mut unlogged) = (0usize, 0usize);
    for p in &r.problems {
        let line = p.to_string();
        if !known.contains(&line) {
            if logged < LOGGED_PROBLEMS {
                logged += 1;
                let file = crate::escape::path(&p.file);
                // Say what stays loaded, as `--once` does.
                let kept: Vec<String> = r
                    .held
                    .iter()
                    .filter(|h| h.why == crate::reconcile::HeldWhy::Protected && h.file == p.file)
                    .map(|h| format!("`{}`", crate::escape::text(&h.name)))
                    .collect();
                let suffix = if kept.is_empty() {
                    String::new()
                } else {
                    format!(" (the last good version of {} stays loaded)", kept.join(", "))
                };
                log::warn!(file = file.as_str(), kind = format!("{:?}", p.kind).to_lowercase().as_str(); "{p}{suffix}");
            } else {
                unlogged += 1;
            }
        }
        current.insert(line);
    }
    if unlogged > 0 {
        log::warn!("… and {unlogged} more problems (armorctl status lists them all)");
    }
    // A held mass removal: one line per source while it stands, with the
    // command that lets it through.
    let mut reasons: Vec<&str> = r
        .held
        .iter()
        .filter(|h| h.why == crate::reconcile::HeldWhy::MassRemoval)
        .map(|h| h.reason.as_str())
        .collect();
    reasons.dedup();
    for reason in reasons {
        if !known.contains(reason) {
            log::warn!("{reason}");
        }
        current.insert(reason.to_owned());
    }
    *known = current;
    log::info!("{what}: {}", r.summary());
}

/// `armord --once`: restore, reconcile, print the summary. The exit code is
/// 0 when the node matches the sources and 2 when a file was invalid or
/// refused, or a mass removal is held (the rest still applied).
pub fn run_once(
    cfg: Config,
    simulate: bool,
    allow_mass_removal: bool,
    accept_signed_serial: bool,
) -> Result<i32, DaemonError> {
    let mut r = open(cfg, simulate)?;
    let restored = r.restore()?;
    if accept_signed_serial {
        r.accept_signed_serials();
    }
    if allow_mass_removal {
        r.allow_mass_removal();
    }
    let mut report = converge(&mut r)?;
    report.restored.extend(restored.restored);
    report.problems.splice(0..0, restored.problems);
    print_report(&report);
    let held = report.held_for(crate::reconcile::HeldWhy::MassRemoval) > 0;
    Ok(if report.is_clean() && !held { 0 } else { 2 })
}

/// How many times a reconcile is repeated to let removals settle.
const SETTLE_ROUNDS: usize = 5;

/// Reconcile, and while removals wait only for the source to settle (the
/// short settling time, not a mass removal's), wait and reconcile again: a
/// removal needs two reads that agree and a source that stood still.
pub fn converge(r: &mut crate::reconcile::Reconciler) -> Result<Report, ApplyError> {
    let mut report = r.reconcile()?;
    for _ in 0..SETTLE_ROUNDS {
        match report.recheck_in {
            Some(wait) if wait <= r.config.removal_settle() && !report.cancelled => {
                let settling: Vec<_> = report
                    .held
                    .iter()
                    .filter(|h| h.why == crate::reconcile::HeldWhy::Settling)
                    .map(|h| crate::escape::text(&h.name))
                    .collect();
                log::debug!(
                    "removal held until the source settles: {}; reading again in {} ms",
                    settling.join(" "),
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                let mut next = r.reconcile()?;
                // What the earlier rounds changed is part of the outcome.
                for (all, earlier) in [
                    (&mut next.loaded, report.loaded),
                    (&mut next.replaced, report.replaced),
                    (&mut next.restored, report.restored),
                    (&mut next.removed, report.removed),
                    (&mut next.adopted, report.adopted),
                ] {
                    let later = std::mem::replace(all, earlier);
                    for n in later {
                        if !all.contains(&n) {
                            all.push(n);
                        }
                    }
                }
                report = next;
            }
            _ => break,
        }
    }
    Ok(report)
}

pub fn print_report(r: &Report) {
    let mut out = String::new();
    for (list, verb) in [
        (&r.loaded, "loaded"),
        (&r.replaced, "replaced"),
        (&r.restored, "restored"),
        (&r.removed, "removed"),
    ] {
        if !list.is_empty() {
            let names: Vec<_> = list.iter().map(|n| crate::escape::text(n)).collect();
            out.push_str(&format!("{verb}: {}\n", names.join(" ")));
        }
    }
    for crate::reconcile::Deferred { name, pids } in &r.deferred {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        out.push_str(&format!(
            "deferred: {} (still confines pid {})\n",
            crate::escape::text(name),
            pids.join(", ")
        ));
    }
    for h in &r.held {
        let verb = match h.why {
            crate::reconcile::HeldWhy::MassRemoval | crate::reconcile::HeldWhy::Settling => "held",
            _ => "kept",
        };
        out.push_str(&format!(
            "{verb}: {} ({}: {})\n",
            crate::escape::text(&h.name),
            crate::escape::path(&h.file),
            h.reason
        ));
    }
    if r.held_for(crate::reconcile::HeldWhy::MassRemoval) > 0 {
        out.push_str(
            "hint: a mass removal is held; run `armord --once --allow-mass-removal` (or `armorctl sync --allow-mass-removal` with the daemon) to remove now\n",
        );
    }
    for p in &r.problems {
        out.push_str(&format!("error: {p}\n"));
    }
    out.push_str(&format!("summary: {}\n", r.summary()));
    print!("{out}");
}

/// The verdict armord would give each file, offline: source rules, the real
/// parser, and the plan's refusals (prefix, reserved and duplicate names,
/// mode). `None` means the file is good.
pub fn validate_files(cfg: &Config, files: &[PathBuf]) -> Result<Vec<(PathBuf, Option<String>)>, DaemonError> {
    use crate::reconcile::{Bounds, Desired, DesiredFile, Engine, Policy, Validator, Verdict, plan};
    use crate::source::{Limits, read_one};
    let program = find_program(&cfg.parser.path).ok_or_else(|| DaemonError::NoParser(cfg.parser.path.clone()))?;
    let scratch = crate::state::private_temp_dir("armorctl-validate").map_err(|e| {
        DaemonError::Apply(ApplyError::State(crate::state::StateError::Io {
            path: std::env::temp_dir(),
            source: e,
        }))
    })?;
    let mut c = cfg.clone();
    c.state_dir = scratch.clone();
    c.parser.cache_dir = scratch.join("cache");
    let features = cfg.parser.features_file.clone().or_else(default_features_file);
    let runner = runner(&c, program, features);
    let sim = SimKernel::new(scratch.join("simulate"), Some(runner));
    let state = crate::state::StateDir::new(scratch.clone());
    let result = (|| {
        state.prepare().map_err(ApplyError::from)?;
        let limits = Limits::each_file(cfg.max_file_bytes);
        let mut desired = Desired {
            configured: vec![PathBuf::new()],
            ..Default::default()
        };
        let mut read = Vec::new();
        for f in files {
            match read_one(f, &limits) {
                Ok(sf) => read.push((sf, Path::new("").into())),
                Err(reason) => desired.files.push(DesiredFile {
                    path: f.as_path().into(),
                    source: Path::new("").into(),
                    sha256: Default::default(),
                    verdict: Verdict::Refused { reason },
                }),
            }
        }
        let read = crate::reconcile::render_specs(read, &mut desired.files, &mut desired.may_define);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let engine = Engine {
            parser: &sim,
            kernel: &sim,
            state: &state,
            opts: crate::apparmor::LoadOptions {
                complain: cfg.mode == config::ForcedMode::Complain,
            },
            cancel: &cancel,
            on_load: None,
            listed: &Default::default(),
        };
        let manifest = crate::state::Manifest::new();
        let bounds = Bounds::new(cfg.mode, cfg.allowed_attachments.clone());
        desired
            .files
            .extend(Validator::new(bounds).validate(read, &manifest, &engine, &mut Default::default())?);
        let policy = Policy {
            prefix: &cfg.profile_prefix,
            takeover: true,
            remove_in_use: cfg.remove_in_use,
            complain: engine.opts.complain,
            removal: crate::reconcile::RemovalRules::IMMEDIATE,
        };
        let p = plan(&desired, &manifest, &Default::default(), &Default::default(), &policy);
        Ok::<_, DaemonError>(
            files
                .iter()
                .map(|f| {
                    (
                        f.clone(),
                        p.problems.iter().find(|pr| &pr.file == f).map(|pr| pr.to_string()),
                    )
                })
                .collect(),
        )
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
