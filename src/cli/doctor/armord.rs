//! armord's own checks: running and ready, its last sync, problems, held
//! removals, audit loss (over D-Bus, when it runs), its state directory,
//! its signed sources, and the unit's hardening.

use super::{Check, Host};
use crate::cli::Endpoint;
use crate::config::Config;

pub async fn checks(host: &Host, cfg: &Config, to: Option<&Endpoint>) -> Vec<Check> {
    let mut out = match to {
        Some(to) => running(to).await,
        None => Vec::new(),
    };
    out.push(state_dir(host, cfg));
    out.extend(signed(host, cfg));
    out.push(hardening(host));
    out
}

/// A duration, short.
fn ago(secs: u64) -> String {
    crate::human::duration(std::time::Duration::from_secs(secs))
}

async fn running(to: &Endpoint) -> Vec<Check> {
    let p = match super::proxy(to).await {
        Ok((c, p)) => (c, p),
        Err(e) => {
            return vec![Check::warning(
                "armord",
                format!("armord is not running or cannot be reached ({e}); the host's checks above still hold"),
                "systemctl start armord; journalctl -u armord -n 50 if it does not start",
            )];
        }
    };
    let (_conn, p) = p;
    let Ok(state) = p.state().await else {
        return vec![Check::warning(
            "armord",
            "armord answers but not its state (an older or a broken armord)",
            "systemctl restart armord",
        )];
    };
    let mut out = vec![if state == "ready" {
        let version = p.version().await.unwrap_or_default();
        Check::ok("armord", format!("armord {version} is running and ready"))
    } else {
        Check::warning(
            "armord",
            format!("armord is running, state {state}"),
            "armorctl wait; journalctl -u armord -n 50",
        )
    }];
    let now = crate::trial::now_us();
    if let Ok((at_us, summary)) = p.last_sync().await {
        let age = now.saturating_sub(at_us) / 1_000_000;
        out.push(Check::ok("last-sync", format!("{} ago: {summary}", ago(age))));
    }
    let counts = p.counts().await.unwrap_or_default();
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    let bad = n("invalid") + n("refused") + n("unavailable");
    out.push(if bad == 0 {
        Check::ok("problems", format!("{} profiles loaded, no problem", n("loaded")))
    } else {
        Check::error(
            "problems",
            format!(
                "{} invalid, {} refused, {} sources unavailable",
                n("invalid"),
                n("refused"),
                n("unavailable")
            ),
            "armorctl status (each problem names its file, line and reason)",
        )
    });
    if n("held") > 0 {
        out.push(Check::warning(
            "held-removals",
            format!("{} removals are held as a mass removal", n("held")),
            "armorctl status, then `armorctl sync --allow-mass-removal` if they are meant",
        ));
    }
    if let Ok((lost, since)) = p.denial_loss().await {
        out.push(if lost == 0 {
            Check::ok("denial-loss", "no audit record lost since armord started")
        } else {
            Check::warning(
                "denial-loss",
                format!(
                    "{lost} audit records lost since {}",
                    crate::cli::denials::local_time(since / 1_000_000)
                ),
                "see the audit-socket and audit-backlog lines; journalctl -u armord | grep lost",
            )
        });
    }
    out
}

fn state_dir(host: &Host, cfg: &Config) -> Check {
    const C: &str = "state-dir";
    let dir = host.p(&cfg.state_dir);
    let stat = match nix::sys::statvfs::statvfs(&dir) {
        Ok(s) => s,
        Err(e) => {
            return Check::error(
                C,
                format!("{}: {e}", cfg.state_dir.display()),
                "systemctl restart armord (it creates its state directory), or fix state_dir in /etc/armord/armord.toml",
            );
        }
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let mib = free / (1024 * 1024);
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    if host.root_user && !writable {
        return Check::error(
            C,
            format!("{} is not writable (a read-only file system?)", cfg.state_dir.display()),
            "mount the file system read-write, or set state_dir to a writable place",
        );
    }
    if mib < 64 {
        return Check::warning(
            C,
            format!("{}: only {mib} MiB free", cfg.state_dir.display()),
            format!("free space on the file system of {}", cfg.state_dir.display()),
        );
    }
    Check::ok(C, format!("{}: {mib} MiB free", cfg.state_dir.display()))
}

/// Each source with signatures required, and the last serial applied.
fn signed(host: &Host, cfg: &Config) -> Vec<Check> {
    let state = crate::state::StateDir::new(host.p(&cfg.state_dir));
    let serials = match state.load_manifest() {
        crate::state::Loaded::Found(m) => m.serials,
        _ => Default::default(),
    };
    cfg.sources
        .iter()
        .filter(|s| s.signatures == crate::config::Signatures::Required)
        .map(|s| match serials.get(&s.path) {
            Some(n) => Check::ok(
                "signed",
                format!("{}: signatures required; last applied serial {n}", s.path.display()),
            ),
            None => Check::ok(
                "signed",
                format!(
                    "{}: signatures required; no signed revision applied yet",
                    s.path.display()
                ),
            ),
        })
        .collect()
}

/// systemd-analyze's exposure score for armord.service.
fn hardening(host: &Host) -> Check {
    const C: &str = "hardening";
    let Some((_, out)) = host.tool("systemd-analyze", &["security", "--no-pager", "armord.service"]) else {
        return Check::ok(C, "systemd-analyze is not there: the unit's exposure is not measured");
    };
    let score = out.lines().find_map(|l| {
        let rest = l.split("Overall exposure level for armord.service:").nth(1)?;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    match score {
        Some(s) if s < 2.0 => Check::ok(C, format!("armord.service exposure {s:.1} (systemd-analyze security)")),
        Some(s) => Check::warning(
            C,
            format!("armord.service exposure {s:.1}: the shipped unit scores under 2.0"),
            "systemctl cat armord.service; remove the drop-ins that loosen it (systemd-delta --type=extended)",
        ),
        None => Check::ok(
            C,
            "armord.service's exposure is not known (systemd-analyze security gave no score)",
        ),
    }
}
