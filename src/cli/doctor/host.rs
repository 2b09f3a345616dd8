//! The host's checks: AppArmor in the kernel, the parser and its
//! features, whether denials reach the journal, the container runtimes and
//! whether AppArmor confines them, and the units ordered after armord.

use super::{Check, Host};
use crate::apparmor::features::{file_features, kernel_features};
use crate::config::Config;
use std::path::Path;

const SECFS: &str = "/sys/kernel/security";
const PARAMS: &str = "/sys/module/apparmor/parameters";

pub fn checks(host: &Host, cfg: &Config) -> Vec<Check> {
    let mut out = vec![enabled(host), lsm(host), securityfs(host)];
    out.push(parser(host, cfg));
    out.push(features(host, cfg));
    out.push(audit_socket(host));
    out.push(auditd(host));
    out.extend(audit_params(host));
    // The kernel's own audit status: only of the real host, as root.
    let status = if host.root == Path::new("/") {
        host.root_user
            .then(crate::kaudit::status)
            .map(|r| r.map_err(|e| e.to_string()))
    } else {
        Some(Err("not the running host (--root)".to_owned()))
    };
    out.push(backlog(status, cfg.denials.audit_backlog_limit));
    out.extend(runtimes(host));
    out.extend(ordering(host));
    out
}

fn enabled(host: &Host) -> Check {
    const C: &str = "apparmor-enabled";
    let fix =
        "add `apparmor=1 security=apparmor` to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, and reboot";
    match host.read(format!("{PARAMS}/enabled")) {
        Ok(v) if v.trim() == "Y" => Check::ok(C, "AppArmor is enabled in this boot"),
        Ok(v) => Check::error(
            C,
            format!("AppArmor is disabled in this boot (enabled={})", v.trim()),
            fix,
        ),
        Err(_) => Check::error(C, "the kernel has no AppArmor (no /sys/module/apparmor)", fix),
    }
}

fn lsm(host: &Host) -> Check {
    const C: &str = "lsm";
    match host.read(format!("{SECFS}/lsm")) {
        Ok(list) if list.trim().split(',').any(|l| l == "apparmor") => {
            Check::ok(C, format!("active LSMs: {}", list.trim()))
        }
        Ok(list) => Check::error(
            C,
            format!("AppArmor is not among the active LSMs: {}", list.trim()),
            "add apparmor to `lsm=` on the kernel command line (e.g. lsm=landlock,lockdown,yama,integrity,apparmor,bpf) and reboot",
        ),
        Err(_) => Check::warning(
            C,
            "the active LSMs cannot be read (/sys/kernel/security/lsm)",
            "mount -t securityfs securityfs /sys/kernel/security",
        ),
    }
}

fn securityfs(host: &Host) -> Check {
    const C: &str = "securityfs";
    if host.exists(format!("{SECFS}/apparmor/profiles")) {
        let n = host
            .read(format!("{SECFS}/apparmor/profiles"))
            .map(|t| t.lines().count().to_string())
            .unwrap_or_else(|_| "?".into());
        Check::ok(C, format!("securityfs is mounted; {n} profiles loaded"))
    } else {
        Check::error(
            C,
            "securityfs is not mounted: nothing can be loaded or read (/sys/kernel/security/apparmor)",
            "mount -t securityfs securityfs /sys/kernel/security",
        )
    }
}

fn parser(host: &Host, cfg: &Config) -> Check {
    const C: &str = "parser";
    let path = &cfg.parser.path;
    let program = path.to_string_lossy();
    match host.tool(&program, &["--version"]) {
        Some((true, out)) => {
            let version = out.lines().next().unwrap_or_default().trim().to_owned();
            Check::ok(C, format!("{version} ({})", path.display()))
        }
        _ => Check::error(
            C,
            format!("{} cannot be run", path.display()),
            "apt-get install apparmor (or set [parser] path in /etc/armord/armord.toml)",
        ),
    }
}

fn features(host: &Host, cfg: &Config) -> Check {
    const C: &str = "parser-features";
    let kernel_dir = host.p(format!("{SECFS}/apparmor/features"));
    let Some(pinned) = &cfg.parser.features_file else {
        return Check::ok(C, "the parser compiles for the running kernel's own features");
    };
    let Ok(text) = host.read(pinned) else {
        return Check::error(
            C,
            format!("[parser] features_file {} cannot be read", pinned.display()),
            "remove [parser] features_file, or point it at a file that exists",
        );
    };
    let kernel = kernel_features(&kernel_dir, 2);
    if kernel.is_empty() {
        return Check::warning(
            C,
            format!(
                "[parser] features_file {} is pinned; the kernel's features cannot be read to compare",
                pinned.display()
            ),
            "mount -t securityfs securityfs /sys/kernel/security",
        );
    }
    let file = file_features(&text, 2);
    let missing: Vec<&String> = kernel.difference(&file).collect();
    let extra: Vec<&String> = file.difference(&kernel).collect();
    if missing.is_empty() && extra.is_empty() {
        return Check::ok(
            C,
            format!(
                "[parser] features_file {} matches the kernel's features",
                pinned.display()
            ),
        );
    }
    let list = |v: &[&String]| v.iter().take(6).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut fact = format!("[parser] features_file {} does not match the kernel:", pinned.display());
    if !missing.is_empty() {
        fact.push_str(&format!(
            " the kernel mediates {} that it lacks (rules for them are compiled out)",
            list(&missing)
        ));
    }
    if !extra.is_empty() {
        fact.push_str(&format!(
            " it declares {} that the kernel lacks (loads can fail)",
            list(&extra)
        ));
    }
    Check::warning(
        C,
        fact,
        "remove [parser] features_file from /etc/armord/armord.toml unless every node runs the kernel it was taken from",
    )
}

/// Is `unit` active? `None` when systemd cannot say (no systemctl, or no
/// systemd running).
fn systemctl_active(host: &Host, unit: &str) -> Option<bool> {
    let (_, out) = host.tool("systemctl", &["is-active", unit])?;
    match out.trim() {
        "active" | "reloading" => Some(true),
        "inactive" | "failed" | "activating" | "deactivating" | "maintenance" => Some(false),
        _ => None,
    }
}

fn audit_socket(host: &Host) -> Check {
    const C: &str = "audit-socket";
    match systemctl_active(host, "systemd-journald-audit.socket") {
        Some(true) => Check::ok(
            C,
            "journald reads the audit transport (systemd-journald-audit.socket is active)",
        ),
        Some(false) => Check::error(
            C,
            "journald does not read the audit transport (systemd-journald-audit.socket is not active): AppArmor records reach the journal only through the kernel's rate-limited console copy, and most of a burst is lost",
            "systemctl enable systemd-journald-audit.socket && systemctl stop systemd-journald && systemctl start systemd-journald-audit.socket systemd-journald && systemctl restart armord",
        ),
        None => Check::warning(
            C,
            "systemctl cannot be run: whether journald reads the audit transport is not known",
            "run armorctl doctor on the host, not in a container",
        ),
    }
}

fn auditd(host: &Host) -> Check {
    const C: &str = "auditd";
    if host.program("auditd").is_none() {
        return Check::ok(C, "auditd is not installed: the journal holds the audit records");
    }
    match systemctl_active(host, "auditd.service") {
        Some(true) => Check::ok(
            C,
            "auditd is running: audit records go to /var/log/audit/audit.log as well as to journald's audit socket",
        ),
        _ => Check::ok(
            C,
            "auditd is installed but not running: the journal holds the audit records",
        ),
    }
}

fn audit_params(host: &Host) -> Vec<Check> {
    let need_root = |c: &'static str| {
        Check::warning(
            c,
            format!("{PARAMS} cannot be read without root"),
            "sudo armorctl doctor",
        )
    };
    let mode = match host.read(format!("{PARAMS}/audit")) {
        Ok(m) => match m.trim() {
            m @ ("normal" | "noquiet" | "all") => Check::ok("apparmor-audit", format!("AppArmor's audit mode is {m}")),
            m => Check::error(
                "apparmor-audit",
                format!("AppArmor's audit mode is {m}: denials are not written to the audit log"),
                "echo normal > /sys/module/apparmor/parameters/audit (and drop apparmor.audit= from the kernel command line)",
            ),
        },
        Err(_) if !host.exists(PARAMS) => return Vec::new(),
        Err(_) => need_root("apparmor-audit"),
    };
    let header = match host.read(format!("{PARAMS}/audit_header")) {
        Ok(h) if h.trim() == "Y" => Check::ok("apparmor-audit-header", "records carry the apparmor= header"),
        Ok(_) => Check::error(
            "apparmor-audit-header",
            "AppArmor writes its records without the apparmor=\"…\" header armord reads",
            "echo Y > /sys/module/apparmor/parameters/audit_header",
        ),
        Err(_) => need_root("apparmor-audit-header"),
    };
    vec![mode, header]
}

/// The kernel's audit backlog limit and lost counter (`None`: not root).
pub fn backlog(status: Option<Result<crate::kaudit::Status, String>>, want: u32) -> Check {
    const C: &str = "audit-backlog";
    match status {
        None => Check::warning(
            C,
            "the kernel's audit status needs root (CAP_AUDIT_CONTROL)",
            "sudo armorctl doctor",
        ),
        Some(Err(e)) => Check::warning(
            C,
            format!("the kernel's audit status cannot be read: {e}"),
            "run armorctl doctor on the host as root",
        ),
        Some(Ok(s)) if s.lost > 0 => Check::warning(
            C,
            format!(
                "the kernel lost {} audit records since boot (backlog limit {}; without auditd this counts console copies skipped too)",
                s.lost, s.backlog_limit
            ),
            format!(
                "auditctl -b {} (armord raises it to [denials] audit_backlog_limit = {want} at start), and see armorctl status for losses since armord started",
                want.max(8192)
            ),
        ),
        Some(Ok(s)) if want > 0 && s.backlog_limit < want => Check::warning(
            C,
            format!(
                "the kernel's audit backlog limit is {} (armord's setting is {want}), 0 records lost",
                s.backlog_limit
            ),
            "systemctl restart armord (it raises the limit at start)",
        ),
        Some(Ok(s)) => Check::ok(
            C,
            format!("audit backlog limit {}, 0 records lost since boot", s.backlog_limit),
        ),
    }
}

/// The container runtimes on the host, and whether AppArmor confines them
/// (a loaded profile of their name, as AppArmor 4 ships).
fn runtimes(host: &Host) -> Vec<Check> {
    let path = host.p(format!("{SECFS}/apparmor/profiles"));
    let loaded = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| crate::apparmor::parse_profiles_file(&path, &t).ok())
        .unwrap_or_default();
    let confined = |name: &str| loaded.get(name).map(|mode| format!("{name} ({mode})"));
    let mut out = Vec::new();
    for rt in ["runc", "crun"] {
        let Some(bin) = host.program(rt) else { continue };
        out.push(match confined(rt) {
            Some(line) => Check::ok(
                "runtime",
                format!(
                    "{rt} ({}) runs confined by AppArmor (`{line}`): a container profile must allow `signal (receive) peer={rt},` or the runtime cannot stop it",
                    bin.display()
                ),
            ),
            None => Check::ok("runtime", format!("{rt} ({}) is not confined by AppArmor", bin.display())),
        });
    }
    for (rt, what) in [("containerd", "containerd"), ("podman", "podman"), ("conmon", "conmon")] {
        if let Some(bin) = host.program(rt) {
            out.push(Check::ok("runtime", format!("{what} is installed ({})", bin.display())));
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            "runtime",
            "no container runtime found (runc, crun, containerd, podman)",
        ));
    }
    out
}

/// kubelet and containerd start only after armord's first load: the
/// ordering drop-ins that armord ships as examples.
fn ordering(host: &Host) -> Vec<Check> {
    let mut out = Vec::new();
    for unit in ["kubelet", "containerd"] {
        let installed = ["/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"]
            .iter()
            .any(|d| host.exists(format!("{d}/{unit}.service")));
        if !installed {
            continue;
        }
        let dir = format!("/etc/systemd/system/{unit}.service.d");
        let ordered = std::fs::read_dir(host.p(&dir))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| {
                    t.lines().any(|l| {
                        l.trim().starts_with("After=") && l.split_whitespace().any(|w| w.ends_with("armord.service"))
                    })
                })
            });
        out.push(if ordered {
            Check::ok("ordering", format!("{unit}.service starts after armord.service ({dir})"))
        } else {
            Check::warning(
                "ordering",
                format!("{unit}.service is not ordered after armord.service: it can start containers before their profiles are loaded"),
                format!(
                    "install -D -m 644 /usr/share/doc/armord/examples/{unit}.service.d/10-armord.conf {dir}/10-armord.conf && systemctl daemon-reload"
                ),
            )
        });
    }
    out
}
