//! Each check against a fixture root (a fake /sys, /etc, /usr) and fake
//! tools first on PATH, for ok, warning and error.

use super::host::backlog;
use super::*;
use crate::apparmor::features::{file_features, kernel_features};
use std::os::unix::fs::PermissionsExt;

/// A host tree that passes every check; tests break one thing each.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn good() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("sys/module/apparmor/parameters/enabled", "Y\n");
        f.write("sys/module/apparmor/parameters/audit", "normal\n");
        f.write("sys/module/apparmor/parameters/audit_header", "Y\n");
        f.write("sys/kernel/security/lsm", "lockdown,capability,landlock,yama,apparmor");
        f.write("sys/kernel/security/apparmor/profiles", "custom.a (enforce)\n");
        f.write("sys/kernel/security/apparmor/features/caps/mask", "chown\n");
        f.write("sys/kernel/security/apparmor/features/network/af_unix", "yes\n");
        f.write("var/lib/armord/.keep", "");
        f.tool(
            "systemctl",
            "case \"$2\" in *audit.socket) echo \"${AUDIT_SOCKET:-active}\" ;; *) echo inactive ;; esac",
        );
        f.tool("apparmor_parser", "echo 'AppArmor parser version 4.1.0'");
        f.tool(
            "systemd-analyze",
            "echo '→ Overall exposure level for armord.service: 1.4 OK 🙂'",
        );
        f
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn tool(&self, name: &str, body: &str) {
        let p = self.dir.path().join("tools").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn host(&self) -> Host {
        Host {
            root: self.dir.path().to_owned(),
            path: Some(self.dir.path().join("tools").into_os_string()),
            root_user: true,
        }
    }

    fn config(&self) -> config::Config {
        config::Config {
            state_dir: "/var/lib/armord".into(),
            ..Default::default()
        }
    }

    /// Every check, armord not asked.
    fn run(&self) -> Vec<Check> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(checks(&self.host(), &self.config(), None))
    }
}

fn one<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
}

fn level(f: &Fixture, name: &str) -> Level {
    one(&f.run(), name).level
}

#[test]
fn a_good_host_is_all_ok_and_exits_0() {
    let f = Fixture::good();
    let checks = f.run();
    // The kernel's audit status is read only of the running host.
    assert_eq!(one(&checks, "audit-backlog").level, Level::Warning);
    let bad: Vec<&Check> = checks
        .iter()
        .filter(|c| c.level != Level::Ok && c.check != "audit-backlog")
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(
        one(&checks, "parser").fact,
        "AppArmor parser version 4.1.0 (apparmor_parser)"
    );
    assert!(one(&checks, "hardening").fact.contains("exposure 1.4"));
    assert!(one(&checks, "securityfs").fact.contains("1 profiles loaded"));
    // Every line that is not ok says how to fix it; the text shows it.
    let text = render(&checks);
    assert!(
        text.starts_with("ok      apparmor-enabled: AppArmor is enabled in this boot\n"),
        "{text}"
    );
}

#[test]
fn apparmor_off_in_the_boot_or_the_kernel_is_an_error() {
    let f = Fixture::good();
    f.write("sys/module/apparmor/parameters/enabled", "N\n");
    let checks = f.run();
    assert_eq!(one(&checks, "apparmor-enabled").level, Level::Error);
    assert_eq!(exit_code(&checks), 1);
    std::fs::remove_dir_all(f.dir.path().join("sys/module")).unwrap();
    assert_eq!(level(&f, "apparmor-enabled"), Level::Error);
    f.write("sys/kernel/security/lsm", "lockdown,capability,selinux");
    assert_eq!(level(&f, "lsm"), Level::Error);
    std::fs::remove_dir_all(f.dir.path().join("sys/kernel/security")).unwrap();
    assert_eq!(level(&f, "securityfs"), Level::Error);
    assert_eq!(level(&f, "lsm"), Level::Warning);
}

#[test]
fn a_parser_that_cannot_run_is_an_error() {
    let f = Fixture::good();
    std::fs::remove_file(f.dir.path().join("tools/apparmor_parser")).unwrap();
    let c = f.run();
    let p = one(&c, "parser");
    assert_eq!(p.level, Level::Error);
    assert!(p.fix.as_deref().unwrap().contains("apt-get install apparmor"));
}

#[test]
fn a_pinned_features_file_is_compared_with_the_kernel() {
    let f = Fixture::good();
    let mut cfg = f.config();
    cfg.parser.features_file = Some("/etc/armord/features".into());
    let host = f.host();
    let check = |cfg: &config::Config| {
        host::checks(&host, cfg)
            .into_iter()
            .find(|c| c.check == "parser-features")
            .unwrap()
    };
    // Missing: an error naming the file.
    assert_eq!(check(&cfg).level, Level::Error);
    f.write(
        "etc/armord/features",
        "caps {mask {chown\n}\n}\nnetwork {af_unix {yes\n}\n}\n",
    );
    assert_eq!(check(&cfg).level, Level::Ok, "{:?}", check(&cfg));
    // The kernel mediates userns; the pinned file does not know it.
    f.write(
        "sys/kernel/security/apparmor/features/namespaces/userns_create",
        "yes\n",
    );
    let c = check(&cfg);
    assert_eq!(c.level, Level::Warning);
    assert!(c.fact.contains("namespaces"), "{c:?}");
    assert!(c.fact.contains("compiled out"), "{c:?}");
}

#[test]
fn features_are_read_alike_from_a_file_and_a_directory() {
    let t = tempfile::tempdir().unwrap();
    for p in ["caps/mask", "domain/stack", "domain/change_hat"] {
        let p = t.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "yes\n").unwrap();
    }
    let text = "caps {mask {chown dac_override\n}\n}\ndomain {change_hat {yes\n}\nstack {yes\n}\n}\n";
    assert_eq!(file_features(text, 2), kernel_features(t.path(), 2));
    assert_eq!(file_features(text, 1), ["caps".to_owned(), "domain".to_owned()].into());
}

#[test]
fn journald_without_its_audit_socket_is_an_error_and_unknown_is_a_warning() {
    let f = Fixture::good();
    f.tool("systemctl", "echo inactive");
    let c = f.run();
    let a = one(&c, "audit-socket");
    assert_eq!(a.level, Level::Error);
    assert!(
        a.fix
            .as_deref()
            .unwrap()
            .starts_with("systemctl enable systemd-journald-audit.socket")
    );
    // No systemd running: systemctl says nothing on stdout.
    f.tool(
        "systemctl",
        "echo 'System has not been booted with systemd' >&2; exit 1",
    );
    assert_eq!(level(&f, "audit-socket"), Level::Warning);
}

#[test]
fn apparmor_audit_quiet_or_headerless_is_an_error_and_unreadable_a_warning() {
    let f = Fixture::good();
    f.write("sys/module/apparmor/parameters/audit", "quiet\n");
    assert_eq!(level(&f, "apparmor-audit"), Level::Error);
    f.write("sys/module/apparmor/parameters/audit_header", "N\n");
    assert_eq!(level(&f, "apparmor-audit-header"), Level::Error);
    f.write("sys/module/apparmor/parameters/audit", "noquiet\n");
    assert_eq!(level(&f, "apparmor-audit"), Level::Ok);
    // Mode 0600 files, read as a user.
    std::fs::remove_file(f.dir.path().join("sys/module/apparmor/parameters/audit")).unwrap();
    assert_eq!(level(&f, "apparmor-audit"), Level::Warning);
}

#[test]
fn the_backlog_says_what_was_lost_and_what_needs_root() {
    let s = |limit, lost| crate::kaudit::Status {
        enabled: 1,
        pid: 0,
        backlog_limit: limit,
        lost,
        backlog: 0,
    };
    assert_eq!(backlog(Some(Ok(s(8192, 0))), 8192).level, Level::Ok);
    let lost = backlog(Some(Ok(s(8192, 12))), 8192);
    assert_eq!(lost.level, Level::Warning);
    assert!(lost.fact.contains("lost 12 audit records"), "{lost:?}");
    assert_eq!(backlog(Some(Ok(s(64, 0))), 8192).level, Level::Warning);
    assert_eq!(backlog(None, 8192).fix.as_deref(), Some("sudo armorctl doctor"));
    assert_eq!(backlog(Some(Err("EPERM".into())), 8192).level, Level::Warning);
}

#[test]
fn auditd_is_reported_where_it_runs() {
    let f = Fixture::good();
    assert!(one(&f.run(), "auditd").fact.contains("not installed"));
    f.write("usr/sbin/auditd", "");
    f.tool(
        "systemctl",
        "case \"$2\" in auditd*) echo active ;; *) echo active ;; esac",
    );
    let c = f.run();
    assert!(one(&c, "auditd").fact.contains("/var/log/audit/audit.log"));
}

#[test]
fn a_confined_runtime_is_said_with_what_container_profiles_need() {
    let f = Fixture::good();
    f.write("usr/sbin/runc", "");
    f.write("usr/bin/crun", "");
    let c = f.run();
    let rt: Vec<&Check> = c.iter().filter(|c| c.check == "runtime").collect();
    assert!(
        rt.iter()
            .any(|c| c.fact.starts_with("runc (/usr/sbin/runc) is not confined")),
        "{rt:#?}"
    );
    f.write(
        "sys/kernel/security/apparmor/profiles",
        "runc (unconfined)\ncrun (unconfined)\ncustom.a (enforce)\n",
    );
    let c = f.run();
    let rt: Vec<&Check> = c.iter().filter(|c| c.check == "runtime").collect();
    assert!(
        rt.iter()
            .any(|c| c.fact.contains("runc (/usr/sbin/runc) runs confined") && c.fact.contains("peer=runc")),
        "{rt:#?}"
    );
    assert!(
        rt.iter().any(|c| c.fact.contains("crun (/usr/bin/crun) runs confined")),
        "{rt:#?}"
    );
}

#[test]
fn kubelet_and_containerd_must_be_ordered_after_armord() {
    let f = Fixture::good();
    assert!(
        f.run().iter().all(|c| c.check != "ordering"),
        "no kubelet: nothing to say"
    );
    f.write("lib/systemd/system/kubelet.service", "[Service]\n");
    f.write("usr/lib/systemd/system/containerd.service", "[Service]\n");
    let c = f.run();
    let o: Vec<&Check> = c.iter().filter(|c| c.check == "ordering").collect();
    assert_eq!(o.len(), 2);
    assert!(o.iter().all(|c| c.level == Level::Warning), "{o:#?}");
    assert!(
        o[0].fix
            .as_deref()
            .unwrap()
            .contains("kubelet.service.d/10-armord.conf")
    );
    f.write(
        "etc/systemd/system/kubelet.service.d/10-armord.conf",
        "[Unit]\nWants=armord.service\nAfter=armord.service\n",
    );
    let c = f.run();
    let o: Vec<&Check> = c.iter().filter(|c| c.check == "ordering").collect();
    assert_eq!((o[0].level, o[1].level), (Level::Ok, Level::Warning), "{o:#?}");
}

#[test]
fn the_state_directory_must_exist_and_hardening_is_scored() {
    let f = Fixture::good();
    assert_eq!(level(&f, "state-dir"), Level::Ok);
    std::fs::remove_dir_all(f.dir.path().join("var/lib/armord")).unwrap();
    assert_eq!(level(&f, "state-dir"), Level::Error);
    f.tool(
        "systemd-analyze",
        "echo '→ Overall exposure level for armord.service: 6.2 MEDIUM'",
    );
    assert_eq!(level(&f, "hardening"), Level::Warning);
}

#[test]
fn armord_not_running_is_a_warning_and_the_rest_still_runs() {
    let f = Fixture::good();
    let t = f.dir.path().join("no-such-socket");
    let to = Endpoint::Socket(t);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(checks(&f.host(), &f.config(), Some(&to)));
    assert_eq!(one(&c, "armord").level, Level::Warning);
    assert!(
        one(&c, "armord")
            .fix
            .as_deref()
            .unwrap()
            .starts_with("systemctl start armord")
    );
    assert_eq!(one(&c, "securityfs").level, Level::Ok);
    assert_eq!(exit_code(&c), 0);
}

#[test]
fn the_json_shape_is_as_documented() {
    let c = vec![
        Check::ok("lsm", "active LSMs: apparmor"),
        Check::error(
            "securityfs",
            "not mounted",
            "mount -t securityfs securityfs /sys/kernel/security",
        ),
    ];
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"check": "lsm", "level": "ok", "fact": "active LSMs: apparmor"})
    );
    assert_eq!(v[1]["level"], "error");
    assert_eq!(v[1]["fix"], "mount -t securityfs securityfs /sys/kernel/security");
}
