//! The D-Bus interface as a contract, on a private dbus-daemon that loads the
//! shipped bus policy: live introspection matches the committed XML, every
//! method works through armorctl, a caller without permission is refused, and
//! the exports are read back by real parsers.

mod common;
use common::*;
use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Bus {
    child: Child,
    address: String,
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bus(t: &Tree) -> Option<Bus> {
    start_bus_with(t, true)
}

/// A private bus; with `shipped_policy`, the package's bus policy applies
/// on top of a default that allows everything.
fn start_bus_with(t: &Tree, shipped_policy: bool) -> Option<Bus> {
    if Command::new("dbus-daemon").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install dbus");
        eprintln!("dbus-daemon not installed: skipped");
        return None;
    }
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dbus/org.armord.Armord1.conf");
    std::fs::create_dir_all(t.path("bus")).unwrap();
    std::fs::set_permissions(t.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(t.path("bus"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = t.write(
        "bus.conf",
        &format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  {}
</busconfig>
"#,
            t.path("bus/socket").display(),
            if shipped_policy {
                format!("<include>{}</include>", policy.display())
            } else {
                String::new()
            }
        ),
    );
    let mut child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--print-address"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Some(Bus {
        child,
        address: line.trim().to_owned(),
    })
}

fn armorctl(bus: &Bus, args: &[&str]) -> std::process::Output {
    Command::new(ARMORCTL)
        .args(["--bus", "session"])
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap()
}

fn interface_xml(full: &str) -> String {
    let start = full
        .find("<interface name=\"org.armord.Armord1\">")
        .expect("the interface is introspected");
    let end = start + full[start..].find("</interface>").unwrap() + "</interface>".len();
    full[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn dbus_contract_methods_policy_and_exports() {
    let t = Tree::new();
    let Some(bus) = start_bus(&t) else { return };
    let parser = t.fake_parser();
    t.write("src/a", "profile custom.a {\n}\n");
    t.write("src/b", "profile custom.b {\n}\n");
    t.write("src/broken", "profile custom.broken {\nBROKEN\n}\n");
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\ndebounce_ms = 50\n[[source]]\npath = \"src\"\n\
             [parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[denials]\nenabled = false\n\
             [exports]\nnfd_features_file = \"nfd/armord\"\nprometheus_textfile = \"prom/armord.prom\"\n",
            parser.display()
        ),
    );
    // Not running yet: wait times out, status says so in one line.
    let out = armorctl(&bus, &["wait", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not ready within"), "{}", text(&out));
    let out = armorctl(&bus, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("armord is not running"), "{}", text(&out));

    let sock = t.path("notify.sock");
    let notify = UnixDatagram::bind(&sock).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // Killed if the test fails before it stops it.
    let mut daemon = KillOnDrop(
        Command::new(ARMORD)
            .args(["--config", cfg.to_str().unwrap(), "--bus", "session"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("NOTIFY_SOCKET", &sock)
            .stderr(std::fs::File::create(t.path("armord.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 4096];
    loop {
        let n = notify.recv(&mut buf).expect("READY");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    let out = armorctl(&bus, &["wait", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Introspection matches the committed contract.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let live = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .unwrap();
        let p = zbus::fdo::IntrospectableProxy::builder(&conn)
            .destination("org.armord.Armord1")
            .path("/org/armord/Armord1")
            .build()
            .await
            .unwrap();
        p.introspect().await.unwrap()
    });
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dbus/org.armord.Armord1.xml");
    // Updating the contract writes it and stops there: a comparison of the
    // file with what was just written into it could never fail.
    if std::env::var_os("ARMORD_UPDATE_XML").is_some() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ARMORD_UPDATE_XML rewrites the committed contract: never under CI"
        );
        std::fs::write(&committed, interface_xml(&live)).unwrap();
        panic!(
            "ARMORD_UPDATE_XML: wrote {} from the live interface; review the diff, then run this test without it",
            committed.display()
        );
    }
    assert_eq!(
        interface_xml(&live),
        std::fs::read_to_string(&committed).unwrap(),
        "the D-Bus interface changed"
    );

    // Every method, through armorctl and the proxy.
    let out = armorctl(&bus, &["status"]);
    let s = text(&out);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(
        s.contains("state: degraded") && s.contains("2 loaded, 1 invalid"),
        "{s}"
    );
    assert!(
        s.contains(&format!("error: {}:2: syntax error", t.path("src/broken").display())),
        "{s}"
    );
    let out = armorctl(&bus, &["list", "--json"]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["name"], "custom.a");
    assert_eq!(rows[0]["state"], "loaded");
    assert_eq!(rows[0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(rows[2]["state"], "invalid");
    t.write("src/broken", "profile custom.broken {\n}\n");
    let out = armorctl(&bus, &["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("1 loaded"), "{}", text(&out));
    let counters = rt.block_on(async {
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .build()
            .await
            .unwrap();
        let p = armord::dbus::Armord1Proxy::new(&conn).await.unwrap();
        (
            p.get_denial_counters().await.unwrap(),
            p.version().await.unwrap(),
            p.last_sync().await.unwrap(),
        )
    });
    assert!(counters.0.is_empty());
    assert_eq!(counters.1, env!("CARGO_PKG_VERSION"));
    // The last reconcile: the sync, or the one inotify started for the same write.
    assert!(
        counters.2.0 > 0 && counters.2.1.contains("0 invalid"),
        "{:?}",
        counters.2
    );

    // Exports, read back by real parsers.
    let nfd = t.read("nfd/armord");
    assert_eq!(nfd.lines().count(), 3, "{nfd}");
    for line in nfd.lines() {
        let (key, value) = line.split_once('=').unwrap();
        assert!(k8s_label_key(key), "{key}");
        assert!(k8s_label_value(value), "{value}");
    }
    assert!(nfd.contains("feature.node.kubernetes.io/apparmor-custom.a=true"));
    let prom = t.read("prom/armord.prom");
    let scrape = prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let loaded = scrape
        .samples
        .iter()
        .find(|s| s.metric == "armord_profiles" && s.labels.get("state") == Some("loaded"))
        .unwrap();
    assert!(
        matches!(loaded.value, prometheus_parse::Value::Gauge(v) if v == 3.0),
        "{:?}",
        loaded.value
    );
    assert!(scrape.samples.iter().any(|s| s.metric == "armord_reconciles_total"));

    // A caller who is not root (nor in group armord) is refused; introspection is open.
    if can_run_as_nobody("the refusal of a caller who is not root") {
        let out = as_nobody(&t, &bus, &["sync"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "armorctl: permission denied: run as root or join group armord"
        );
        let out = as_nobody(&t, &bus, &["list"]);
        assert!(text(&out).contains("permission denied"), "{}", text(&out));
        let intro = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "dbus-send",
                "--print-reply",
            ])
            .arg(format!("--bus={}", bus.address))
            .args([
                "--dest=org.armord.Armord1",
                "/org/armord/Armord1",
                "org.freedesktop.DBus.Introspectable.Introspect",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&intro.stdout).contains("org.armord.Armord1"),
            "{}",
            text(&intro)
        );
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = PathBuf::new();
}

/// Whether `what` can run: it runs a command as uid 65534, which takes
/// root. Elsewhere it is skipped, and said; under CI, whose tests run as
/// root (its VM test's debootstrap needs root as well), it fails instead.
fn can_run_as_nobody(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs the tests as root: {what} needs to run a command as uid 65534 (setpriv)"
    );
    eprintln!("not root: {what} is not checked");
    false
}

/// Run armorctl as uid 65534 (see [`can_run_as_nobody`]). The binary is
/// copied into the bus directory (mode 0755), since the build tree may not
/// be reachable for that user.
fn as_nobody(t: &Tree, bus: &Bus, args: &[&str]) -> std::process::Output {
    let copy = t.path("bus/armorctl");
    if !copy.exists() {
        std::fs::copy(ARMORCTL, &copy).unwrap();
        std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            copy.to_str().unwrap(),
            "--bus",
            "session",
        ])
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap()
}

/// Kubernetes' rules for a label key: an optional DNS-subdomain prefix and
/// `/`, then a name of at most 63 characters, alphanumeric at both ends,
/// `-`, `_`, `.` inside.
fn k8s_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = k8s_label_value(name) && !name.is_empty();
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

fn k8s_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// With a bus policy that lets anyone call anything, the code still
/// refuses a caller who is not root every method that changes policy;
/// reading stays open to the policy.
#[test]
fn changing_methods_check_the_caller_in_code() {
    let t = Tree::new();
    if !can_run_as_nobody("the refusal of a caller who is not root") {
        return;
    }
    let Some(bus) = start_bus_with(&t, false) else { return };
    let parser = t.fake_parser();
    t.write("src/a", "profile custom.a {\n}\n");
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\n[[source]]\npath = \"src\"\n\
             [parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[denials]\nenabled = false\n",
            parser.display()
        ),
    );
    let _daemon = KillOnDrop(
        Command::new(ARMORD)
            .args(["--config", cfg.to_str().unwrap(), "--bus", "session"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("NOTIFY_SOCKET")
            .stderr(std::fs::File::create(t.path("armord.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let out = armorctl(&bus, &["wait", "--timeout", "15s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for method in [&["sync"][..], &["sync", "--allow-mass-removal"][..]] {
        let out = as_nobody(&t, &bus, method);
        assert_eq!(out.status.code(), Some(1), "{method:?}: {}", text(&out));
        assert!(text(&out).contains("permission denied"), "{method:?}: {}", text(&out));
    }
    // Reading is the bus policy's to allow; this one allows it.
    let out = as_nobody(&t, &bus, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Root may.
    let out = armorctl(&bus, &["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read_to_string(t.path("armord.log"))
            .unwrap()
            .contains("from uid 65534 refused")
    );
}
