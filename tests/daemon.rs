//! The real `armord` service against a temp tree: a fake parser and a temp
//! securityfs, with NOTIFY_SOCKET pointing at a socket the test reads.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    tree: Tree,
    child: Option<Child>,
    notify: UnixDatagram,
    config: PathBuf,
    /// A working `.remove`, when the test gave one: stopped after armord.
    remove: Option<WorkingRemove>,
}

const WAIT: Duration = Duration::from_secs(15);

fn profile(name: &str) -> String {
    format!("profile {name} {{\n  /etc/hostname r,\n}}\n")
}

impl Daemon {
    /// A tree with a fake parser; `extra` is appended to the config.
    fn tree(extra: &str) -> (Tree, PathBuf) {
        Self::tree_with(extra, "[denials]\nenabled = false\n")
    }

    fn tree_with(extra: &str, denials: &str) -> (Tree, PathBuf) {
        let t = Tree::new();
        let parser = t.fake_parser();
        let config = t.write(
            "armord.toml",
            &format!(
                "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\ndebounce_ms = 250\ndebounce_max_ms = 2000\n\
                 resync_interval_secs = 1\n{denials}[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n{extra}",
                parser.display()
            ),
        );
        (t, config)
    }

    fn start(tree: Tree, config: PathBuf) -> Daemon {
        Self::start_env(tree, config, &[])
    }

    fn start_env(tree: Tree, config: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let sock = tree.path("notify.sock");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(tree.path("armord.log"))
            .unwrap();
        let child = Command::new(ARMORD)
            .args(["--config", config.to_str().unwrap(), "--verbose", "--bus", "none"])
            .env("NOTIFY_SOCKET", &sock)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon {
            tree,
            child: Some(child),
            notify,
            config,
            remove: None,
        }
    }

    /// The fake securityfs's `.remove` works (see [`WorkingRemove`]).
    fn with_remove(mut self, remove: WorkingRemove) -> Daemon {
        self.remove = Some(remove);
        self
    }

    /// The names armord removed through the working `.remove`.
    fn removed(&self) -> Vec<String> {
        self.remove.as_ref().expect("a working .remove").removed()
    }

    /// Full reconciles since start, from the Prometheus export (the test's
    /// configuration names `armord.prom`).
    fn full_reconciles(&self) -> u64 {
        self.tree
            .try_read("armord.prom")
            .and_then(|p| {
                p.lines()
                    .find_map(|l| l.strip_prefix("armord_reconciles_total ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Wait until `n` more full reconciles have run: with a resync every
    /// second and nothing else pending, `n` resyncs.
    fn wait_full_reconciles(&self, n: u64) {
        let from = self.full_reconciles();
        self.wait_until(&format!("{n} more full reconciles after {from}"), |d| {
            d.full_reconciles() >= from + n
        });
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tree.path(rel)
    }

    fn log(&self) -> String {
        self.tree.read("armord.log")
    }

    fn kernel(&self) -> String {
        self.tree.read("secfs/profiles")
    }

    /// Read notify messages until one satisfies `f`; all messages read are returned.
    fn wait_notify(&self, f: impl Fn(&str) -> bool) -> Vec<String> {
        let start = Instant::now();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < WAIT {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = f(&msg);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
        }
        panic!("no matching notify message; saw {seen:?}\nlog:\n{}", self.log());
    }

    fn wait_ready(&self) -> String {
        self.wait_notify(|m| m.contains("READY=1")).pop().unwrap()
    }

    fn wait_until(&self, what: &str, f: impl Fn(&Daemon) -> bool) {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}\nkernel:\n{}\nlog:\n{}",
            self.kernel(),
            self.log()
        );
    }

    fn reconciles(&self) -> usize {
        self.log().matches("reconcile (change)").count()
    }

    /// The number of change reconciles, once no more are coming.
    fn settled(&self) -> usize {
        let mut n = self.reconciles();
        loop {
            std::thread::sleep(Duration::from_millis(700));
            let m = self.reconciles();
            if m == n {
                return n;
            }
            n = m;
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(start.elapsed() < WAIT, "armord did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // While the tree is still there.
        self.remove.take();
    }
}

#[test]
fn ready_after_initial_reconcile_then_stop_leaves_kernel_as_is() {
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    t.write("src/b", &profile("custom.b"));
    t.write("src/broken", "profile custom.broken {\n BROKEN\n}\n");
    let mut d = Daemon::start(t, cfg);
    let ready = d.wait_ready();
    // At READY the kernel already holds the profiles.
    let kernel = d.kernel();
    assert!(
        kernel.contains("custom.a (enforce)") && kernel.contains("custom.b (enforce)"),
        "{kernel}"
    );
    assert!(
        ready.contains("STATUS=2 loaded, 1 invalid, 0 refused, 0 deferred"),
        "{ready}"
    );

    let before = d.kernel();
    let st = d.stop();
    assert!(st.success(), "{st:?}");
    let msgs = d.wait_notify(|m| m.contains("STOPPING=1"));
    assert!(msgs.last().unwrap().contains("STOPPING=1"));
    assert_eq!(d.kernel(), before, "stopping changed the kernel");
}

#[test]
fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    let d = Daemon::start(t, cfg);
    d.wait_ready();

    // A new source through a drop-in.
    d.tree
        .write("armord.toml.d/10-more.toml", "[[source]]\npath = \"../more\"\n");
    d.tree.write("more/m", &profile("custom.m"));
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let msgs = d.wait_notify(|m| m.contains("READY=1"));
    let reload = msgs
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .expect("RELOADING=1 before READY=1");
    assert!(reload.contains("MONOTONIC_USEC="), "{reload}");
    assert!(d.kernel().contains("custom.m"));

    // A broken config: READY again, old config kept, still watching.
    d.tree.write("armord.toml.d/20-bad.toml", "this is not toml\n");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let msgs = d.wait_notify(|m| m.contains("READY=1"));
    assert!(msgs.iter().any(|m| m.contains("RELOADING=1")));
    assert!(d.log().contains("keeping the old one"), "{}", d.log());
    assert!(d.log().contains("20-bad.toml"), "{}", d.log());
    d.tree.write("more/n", &profile("custom.n"));
    d.wait_until("a change after a failed reload", |d| d.kernel().contains("custom.n"));
    let _ = &d.config;
}

#[test]
fn plain_configmap_and_git_sync_changes_are_picked_up() {
    let (t, cfg) = Daemon::tree("[[source]]\npath = \"cm\"\n[[source]]\npath = \"gs\"\n");
    t.write("src/a", &profile("custom.a"));
    // ConfigMap volume.
    t.write("cm/..v1/c1", &profile("custom.c1"));
    std::os::unix::fs::symlink("..v1", t.path("cm/..data")).unwrap();
    std::os::unix::fs::symlink("..data/c1", t.path("cm/c1")).unwrap();
    // git-sync.
    t.write("gs/.worktrees/h1/g0", &profile("custom.g0"));
    std::os::unix::fs::symlink(".worktrees/h1", t.path("gs/current")).unwrap();
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    assert!(d.kernel().contains("custom.c1") && d.kernel().contains("custom.g0"));

    // Plain: a write.
    d.tree.write("src/a", &format!("{}# v2\n", profile("custom.a")));
    d.wait_until("plain change", |d| d.log().contains("replaced profile custom.a"));

    // ConfigMap: new data dir, `..data` swapped by rename, old dir removed.
    d.tree.write("cm/..v2/c1", &profile("custom.c1"));
    d.tree.write("cm/..v2/c2", &profile("custom.c2"));
    std::os::unix::fs::symlink("..v2", d.path("cm/..data_tmp")).unwrap();
    std::fs::rename(d.path("cm/..data_tmp"), d.path("cm/..data")).unwrap();
    std::os::unix::fs::symlink("..data/c2", d.path("cm/c2")).unwrap();
    std::fs::remove_dir_all(d.path("cm/..v1")).unwrap();
    d.wait_until("configmap swap", |d| d.kernel().contains("custom.c2"));

    // git-sync: a new worktree with 50 files, the link renamed over: one reconcile.
    let before = d.settled();
    for i in 0..50 {
        d.tree
            .write(&format!("gs/.worktrees/h2/g{i}"), &profile(&format!("custom.g{i}")));
    }
    std::os::unix::fs::symlink(".worktrees/h2", d.path("gs/tmp-link")).unwrap();
    std::fs::rename(d.path("gs/tmp-link"), d.path("gs/current")).unwrap();
    std::fs::remove_dir_all(d.path("gs/.worktrees/h1")).unwrap();
    d.wait_until("git-sync swap", |d| d.kernel().contains("custom.g49"));
    d.wait_until("the swap's reconcile logged", |d| d.reconciles() > before);
    assert_eq!(
        d.settled(),
        before + 1,
        "a git-sync swap of 50 files must cause one reconcile\n{}",
        d.log()
    );
}

/// Removals as quick as they go: settled in 100 ms, and removing every
/// profile of a source is no mass removal. What a test says is never
/// removed would be, within a second.
const QUICK_REMOVALS: &str = "removal_settle_ms = 100\nmass_removal_percent = 100\n[denials]\nenabled = false\n";
/// Every full reconcile counted in `armord.prom`.
const PROM: &str = "[exports]\nprometheus_textfile = \"armord.prom\"\n";

#[test]
fn late_source_is_picked_up_and_deleting_a_source_removes_nothing() {
    let (t, cfg) = Daemon::tree_with(PROM, QUICK_REMOVALS);
    let remove = t.working_remove();
    let d = Daemon::start(t, cfg).with_remove(remove);
    let ready = d.wait_ready();
    assert!(ready.contains("unavailable"), "{ready}");
    // The fleet's alert reads it from the export, named.
    let prom = || std::fs::read_to_string(d.path("armord.prom")).unwrap_or_default();
    let unavailable = format!("armord_source_unavailable{{source=\"{}\"}} 1", d.path("src").display());
    assert!(prom().contains(&unavailable), "{}", prom());
    assert!(prom().contains("armord_ready 0\n"), "{}", prom());
    // The source appears after start (git-sync finished cloning, say).
    std::fs::create_dir_all(d.path("src.tmp")).unwrap();
    d.tree.write("src.tmp/a", &profile("custom.a"));
    std::fs::rename(d.path("src.tmp"), d.path("src")).unwrap();
    d.wait_until("late source", |d| d.kernel().contains("custom.a"));
    d.wait_until("the export follows", |_| prom().contains("armord_ready 1\n"));
    assert!(!prom().contains("armord_source_unavailable{"), "{}", prom());
    assert!(
        prom().contains("armord_profile_version{profile=\"custom.a\",version=\""),
        "{}",
        prom()
    );
    // Deleting the source: nothing is removed, though a removal would be
    // done within two resyncs of the deletion.
    std::fs::remove_dir_all(d.path("src")).unwrap();
    d.wait_until("the deletion seen", |d| d.log().contains("source does not exist"));
    d.wait_full_reconciles(3);
    assert!(d.kernel().contains("custom.a (enforce)"), "{}", d.kernel());
    assert_eq!(d.removed(), Vec::<String>::new());
    assert!(!d.log().contains("removed profile"), "{}", d.log());
    assert!(!d.log().contains("cannot remove"), "{}", d.log());
}

#[test]
fn drift_is_restored_at_resync_and_deferred_removal_completes() {
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    t.write("src/b", &profile("custom.b"));
    std::fs::write(t.path("secfs/.remove"), "").unwrap();
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    // Someone removes custom.a behind armord's back.
    let k = d.kernel().replace("custom.a (enforce)\n", "");
    std::fs::write(d.path("secfs/profiles"), k).unwrap();
    d.wait_until("drift restore", |d| d.log().contains("restored profile custom.a"));
    assert!(d.kernel().contains("custom.a (enforce)"));

    // custom.b confines a (fake) process, and its file is deleted.
    d.tree.write("proc/4242/attr/current", "custom.b (enforce)\n");
    std::fs::remove_file(d.path("src/b")).unwrap();
    d.wait_until("deferral", |d| d.log().contains("removal of custom.b deferred"));
    assert!(!d.log().contains("removed profile custom.b"));
    d.wait_notify(|m| m.contains("1 deferred"));
    // The process goes away: the removal completes.
    std::fs::remove_dir_all(d.path("proc/4242")).unwrap();
    d.wait_until("deferred removal", |d| d.log().contains("removed profile custom.b"));
    assert_eq!(d.tree.read("secfs/.remove"), "custom.b");
}

#[test]
fn boot_restore_loads_from_the_store_when_the_source_is_absent() {
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    let out = run(ARMORD, &["--once", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // Reboot: empty kernel, the source not there yet.
    std::fs::write(t.path("secfs/profiles"), "").unwrap();
    std::fs::remove_dir_all(t.path("src")).unwrap();
    let d = Daemon::start(t, cfg);
    let ready = d.wait_ready();
    assert_eq!(d.kernel(), "custom.a (enforce)\n");
    assert!(ready.contains("STATUS=1 loaded"), "{ready}");
    assert!(ready.contains("unavailable, last-good policy kept"), "{ready}");
    assert!(d.log().contains("boot restore"), "{}", d.log());
    let _ = Path::new("");
}

#[test]
fn denials_of_owned_profiles_are_relogged_with_fields() {
    let t0 = Tree::new();
    let wrapper = t0.fake_journalctl(
        &[
            r#"{"__CURSOR":"s=1","_BOOT_ID":"b","_TRANSPORT":"audit","_AUDIT_TYPE":"1400","_AUDIT_ID":"7","_SOURCE_REALTIME_TIMESTAMP":"1700000000123000","MESSAGE":"AVC apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.a\" name=\"/etc/shadow\" pid=42 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}"#,
            r#"{"__CURSOR":"s=2","_BOOT_ID":"b","_TRANSPORT":"kernel","MESSAGE":"audit: type=1400 audit(1700000000.123:7): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.a\" name=\"/etc/shadow\" pid=42 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}"#,
            r#"{"__CURSOR":"s=3","_BOOT_ID":"b","_TRANSPORT":"kernel","MESSAGE":"audit: type=1400 audit(1700000000.200:8): apparmor=\"DENIED\" operation=\"open\" profile=\"docker-default\" name=\"/x\" pid=43 comm=\"sh\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}"#,
        ]
        .join("\n"),
    );
    let (t, cfg) = Daemon::tree_with("", &format!("[denials]\njournalctl = \"{}\"\n", wrapper.display()));
    t.write("src/a", &profile("custom.a"));
    let mut d = Daemon::start(t, cfg);
    d.wait_ready();
    d.wait_until("the denial re-logged", |d| {
        d.log().contains("apparmor DENIED custom.a open /etc/shadow")
    });
    let log = d.log();
    let line = log.lines().find(|l| l.contains("apparmor DENIED custom.a")).unwrap();
    for field in [
        "MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90",
        "ARMORD_PROFILE=custom.a",
        "ARMORD_OPERATION=open",
        "ARMORD_NAME=/etc/shadow",
        "ARMORD_DENIED=r",
        "ARMORD_PID=42",
        "ARMORD_COMM=cat",
        "ARMORD_AUDIT_ID=1700000000.123:7",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(d.stop().success());
    // Every line was read: the cursor is the last one's.
    assert_eq!(
        d.tree.read("state/journal.cursor"),
        "s=3\nb 1700000000.123:7\nb 1700000000.200:8\n"
    );
    // The same record over the kernel transport counted once; a profile
    // armord does not own was not re-logged (scope = owned).
    let log = d.log();
    assert_eq!(log.matches("apparmor DENIED").count(), 1, "{log}");
    assert!(!log.contains("docker-default open"), "{log}");
    assert!(log.contains("denial follower stopped: 1 records handled"), "{log}");
}

/// Five denials of an owned profile, as the audit transport gives them.
fn denial_lines() -> String {
    (1..=5)
        .map(|i| {
            format!(
                r#"{{"__CURSOR":"s={i}","_BOOT_ID":"b","_TRANSPORT":"audit","_AUDIT_TYPE":"1400","_AUDIT_ID":"{i}","_SOURCE_REALTIME_TIMESTAMP":"170000000{i}000000","MESSAGE":"AVC apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.a\" name=\"/etc/f{i}\" pid=42 comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}}"#
            ) + "\n"
        })
        .collect()
}

/// A tree whose daemon follows `journal` (JSON lines) through a fake
/// journalctl and owns custom.a; `top` and `tables` go into the config.
fn denial_tree(journal: &str, top: &str, tables: &str) -> (Tree, PathBuf) {
    let t = Tree::new();
    let parser = t.fake_parser();
    let journalctl = t.fake_journalctl(journal);
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\n{top}[denials]\njournalctl = \"{}\"\n\
             {tables}[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n",
            journalctl.display(),
            parser.display()
        ),
    );
    t.write("src/a", &profile("custom.a"));
    (t, cfg)
}

#[test]
fn denial_counters_reach_the_exports_without_a_reconcile() {
    // No resync for an hour: only the counter refresh can write the file.
    let (t, cfg) = denial_tree(
        &denial_lines(),
        "resync_interval_secs = 3600\n",
        "[exports]\nprometheus_textfile = \"armord.prom\"\n",
    );
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    d.wait_until("denials in the textfile", |d| {
        d.tree
            .read("armord.prom")
            .contains(r#"armord_denials_total{profile="custom.a",kind="DENIED"} 5"#)
    });
    assert_eq!(d.log().matches("reconcile (").count(), 1, "{}", d.log());
}

#[test]
fn killed_between_relog_and_cursor_save_relogs_nothing_twice() {
    let (t, cfg) = denial_tree(&denial_lines(), "", "");
    let journal = t.path("journal.json");
    let copy = journal.to_str().unwrap().to_owned();
    // Killed right after its first re-log, before any cursor is saved.
    let mut d = Daemon::start_env(
        t,
        cfg.clone(),
        &[("ARMORD_RELOG_COPY", &copy), ("ARMORD_FAILPOINT", "after-relog")],
    );
    let start = Instant::now();
    let status = loop {
        if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < WAIT, "armord was not killed at the failpoint");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
    d.child = None;
    assert!(!d.tree.path("state/journal.cursor").exists());
    let tree = std::mem::replace(&mut d.tree, Tree::new());
    // The journal the second run reads: the five, and the first run's re-log.
    let journal = tree.read("journal.json");
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    let last = last["__CURSOR"].as_str().unwrap().to_owned();
    let d = Daemon::start_env(tree, cfg, &[("ARMORD_RELOG_COPY", &copy)]);
    // Every line read and handled (each re-log comes before the cursor
    // that covers it), then count.
    d.wait_until("the cursor at the last line", |d| {
        d.tree
            .try_read("state/journal.cursor")
            .is_some_and(|c| c.lines().next() == Some(last.as_str()))
    });
    let text = d.tree.read("journal.json");
    for i in 1..=5 {
        let key = format!("\"ARMORD_AUDIT_KEY\":\"b 170000000{i}.000:{i}\"");
        assert_eq!(text.matches(&key).count(), 1, "{key}\n{text}");
    }
}

#[test]
fn denials_name_the_container_and_pod_of_a_live_process() {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let id = "4f3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e";
    let uid = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9";
    let entry = |i: u64, pid: u32| {
        format!(
            r#"{{"__CURSOR":"s={i}","_BOOT_ID":"b","_TRANSPORT":"audit","_AUDIT_TYPE":"1400","_AUDIT_ID":"{i}","_SOURCE_REALTIME_TIMESTAMP":"{now_us}","MESSAGE":"AVC apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.a\" name=\"/etc/f{i}\" pid={pid} comm=\"cat\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}}"#
        ) + "\n"
    };
    // pid 4242 runs in a container; pid 4343 is gone.
    let (t, cfg) = denial_tree(&(entry(1, 4242) + &entry(2, 4343)), "", "");
    t.write(
        "proc/4242/cgroup",
        &format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{id}.scope\n",
            uid.replace('-', "_")
        ),
    );
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    d.wait_until("both re-logged", |d| {
        d.log().matches("apparmor DENIED custom.a").count() >= 2
    });
    let log = d.log();
    let one = log.lines().find(|l| l.contains("open /etc/f1 ")).unwrap();
    assert!(one.contains(&format!("ARMORD_CONTAINER_ID={id}")), "{one}");
    assert!(one.contains(&format!("ARMORD_POD_UID={uid}")), "{one}");
    assert!(one.contains("ARMORD_CONTAINER_RUNTIME=containerd"), "{one}");
    let two = log.lines().find(|l| l.contains("open /etc/f2 ")).unwrap();
    assert!(
        !two.contains("ARMORD_CONTAINER_ID") && !two.contains("ARMORD_POD_UID"),
        "{two}"
    );
}

#[test]
fn a_mass_removal_is_held_and_logged_with_the_way_through() {
    let (t, cfg) = Daemon::tree_with(
        &format!("[[source]]\npath = \"more\"\n{PROM}"),
        "removal_settle_ms = 100\n[denials]\nenabled = false\n",
    );
    t.write("more/m", &profile("custom.m"));
    t.write("src/a", &profile("custom.a"));
    t.write("src/b", &profile("custom.b"));
    t.write("src/c", &profile("custom.c"));
    let remove = t.working_remove();
    let d = Daemon::start(t, cfg).with_remove(remove);
    d.wait_ready();
    for f in ["a", "b"] {
        std::fs::remove_file(d.path(&format!("src/{f}"))).unwrap();
    }
    let held = "mass removal held: 2 of the 3";
    d.wait_until("the mass removal logged", |d| d.log().contains(held));
    let log = d.log();
    assert!(
        log.contains("`armorctl sync --allow-mass-removal` removes them now"),
        "{log}"
    );
    // While it stands: a change in another source (a reconcile that logs
    // its report), then two resyncs.
    let changes = d.reconciles();
    d.tree.write("more/m", &format!("{}# m2\n", profile("custom.m")));
    d.wait_until("the change's reconcile", |d| d.reconciles() > changes);
    d.wait_full_reconciles(2);
    let log = d.log();
    assert_eq!(log.matches(held).count(), 1, "logged once while it stands: {log}");
    assert!(!log.contains("removed profile"), "{log}");
    assert_eq!(d.removed(), Vec::<String>::new());
    assert!(d.kernel().contains("custom.a (enforce)") && d.kernel().contains("custom.b (enforce)"));
    d.wait_notify(|m| m.contains("2 removals held as a mass removal"));
}

/// The sha256 armord records for an owned profile.
fn owned_sha(d: &Daemon, name: &str) -> Option<String> {
    let m: serde_json::Value = serde_json::from_str(&d.tree.read("state/state.json")).ok()?;
    Some(m["profiles"][name]["sha256"].as_str()?.to_owned())
}

fn sha(text: &str) -> String {
    armord::source::sha256_hex(text.as_bytes())
}

#[test]
fn changes_are_read_by_the_names_inotify_reports_and_every_kind_is_seen() {
    let (t, cfg) = Daemon::tree("");
    // No resync in this test's time: only reported names bring changes in.
    t.write("armord.toml.d/resync.toml", "resync_interval_secs = 3600\n");
    for n in ["a", "b", "c", "d", "e"] {
        t.write(&format!("src/{n}"), &profile(&format!("custom.{n}")));
    }
    // The first read caches every file: a read of reported names that
    // trusted a stale copy would show below.
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    let wait_sha = |what: &str, name: &str, text: &str| {
        let want = sha(text);
        d.wait_until(what, |d| owned_sha(d, name).as_deref() == Some(want.as_str()));
    };

    // Rewritten in place (truncate and write).
    let a2 = format!("{}# a2\n", profile("custom.a"));
    std::fs::write(d.path("src/a"), &a2).unwrap();
    wait_sha("in-place write", "custom.a", &a2);
    // Replaced by a rename over it.
    let b2 = format!("{}# b2\n", profile("custom.b"));
    std::fs::write(d.path("src/.b.tmp"), &b2).unwrap();
    std::fs::rename(d.path("src/.b.tmp"), d.path("src/b")).unwrap();
    wait_sha("atomic replace", "custom.b", &b2);
    // Removed and written again under the same name.
    let c2 = format!("{}# c2\n", profile("custom.c"));
    std::fs::remove_file(d.path("src/c")).unwrap();
    std::fs::write(d.path("src/c"), &c2).unwrap();
    wait_sha("delete and create", "custom.c", &c2);
    // Renamed, then changed under its new name.
    std::fs::rename(d.path("src/d"), d.path("src/d.renamed")).unwrap();
    let d2 = format!("{}# d2\n", profile("custom.d"));
    std::fs::write(d.path("src/d.renamed"), &d2).unwrap();
    wait_sha("rename and change", "custom.d", &d2);
    // A new file.
    d.tree.write("src/f", &profile("custom.f"));
    d.wait_until("new file", |d| d.kernel().contains("custom.f"));
    // Made unreadable: refused by name, the loaded version stays.
    std::fs::write(d.path("src/e"), b"\xff\xfe").unwrap();
    d.wait_until("refusal", |d| d.log().contains("src/e: not UTF-8"));
    assert!(d.kernel().contains("custom.e"), "{}", d.kernel());

    let log = d.log();
    let by_name = log.matches("reported names").count();
    assert!(by_name >= 6, "changes were not read by name ({by_name}):\n{log}");
}

#[test]
fn a_change_inotify_does_not_report_is_read_at_the_next_resync() {
    // resync_interval_secs = 1 in this tree.
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    // Written through a descriptor that stays open: no close, so no event
    // that the watch asks for. Only the resync's full read can see it.
    use std::io::{Seek, Write};
    let a2 = format!("{}# a2, written and left open\n", profile("custom.a"));
    let mut f = std::fs::OpenOptions::new().write(true).open(d.path("src/a")).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(a2.as_bytes()).unwrap();
    f.flush().unwrap();
    let want = sha(&a2);
    d.wait_until("the resync's read", |d| {
        owned_sha(d, "custom.a").as_deref() == Some(want.as_str())
    });
    drop(f);
}

#[test]
fn a_panic_in_a_reconcile_is_retried_not_a_crash() {
    let (t, cfg) = Daemon::tree("");
    t.write("src/a", &profile("custom.a"));
    let fp = t.path("failpoints");
    let d = Daemon::start_env(t, cfg, &[("ARMORD_FAILPOINT_FILE", fp.to_str().unwrap())]);
    d.wait_ready();
    std::fs::write(&fp, "reconcile=panic\n").unwrap();
    d.tree.write("src/b", &profile("custom.b"));
    d.wait_until("the panic logged", |d| {
        d.log().contains("internal error in a reconcile")
    });
    // Still running: once the bug is gone, the retry applies the change.
    std::fs::write(&fp, "").unwrap();
    d.wait_until("the change after the panic", |d| d.kernel().contains("custom.b"));
    assert!(d.kernel().contains("custom.a"));
}

#[test]
fn a_forged_audit_key_does_not_stop_a_real_denial_from_being_relogged() {
    // Any local user can write an entry with armord's MESSAGE_ID and the
    // key of the next denial; journald's _UID says who did.
    let forged = r#"{"__CURSOR":"f=1","_UID":"65534","_COMM":"logger","_TRANSPORT":"journal","MESSAGE_ID":"3c1f6a0e8b2d4c57a9e4d21b7f5c8e90","ARMORD_AUDIT_KEY":"b 1700000003.000:3","MESSAGE":"forged"}"#;
    let (t, cfg) = denial_tree(&format!("{forged}\n{}", denial_lines()), "", "");
    let copy = t.path("journal.json").to_str().unwrap().to_owned();
    let d = Daemon::start_env(t, cfg, &[("ARMORD_RELOG_COPY", &copy)]);
    d.wait_until("all five re-logged", |d| {
        d.tree.read("journal.json").matches("\"_COMM\":\"armord\"").count() >= 5
    });
    let text = d.tree.read("journal.json");
    let key = "\"ARMORD_AUDIT_KEY\":\"b 1700000003.000:3\"";
    assert_eq!(text.matches(key).count(), 2, "the forged one and armord's: {text}");
}

#[test]
fn an_owned_profile_removed_behind_armords_back_is_put_back_at_once() {
    // No resync for an hour: only the drift check can put it back.
    let (t, cfg) = no_resync_tree();
    t.write("src/a", &profile("custom.a"));
    t.write("src/b", &profile("custom.b"));
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    let remove = |d: &Daemon, rev: u32| {
        let k = d.kernel().replace("custom.a (enforce)\n", "");
        std::fs::write(d.path("secfs/profiles"), k).unwrap();
        std::fs::write(d.path("secfs/revision"), format!("{rev}\n")).unwrap();
    };
    for round in 1..=3 {
        remove(&d, 100 + round);
        d.wait_until("put back", |d| {
            d.log()
                .matches("drift: 1 owned profile was removed behind armord's back (custom.a)")
                .count()
                == round as usize
                && d.kernel().contains("custom.a (enforce)")
        });
    }
    assert!(!d.log().contains("reconcile (resync)"), "{}", d.log());
    assert!(d.kernel().contains("custom.b (enforce)"));
    // A fourth time within the minute: not fought over, and said.
    remove(&d, 200);
    let msgs = d.wait_notify(|m| m.contains("something keeps removing custom.a"));
    assert!(!msgs.is_empty());
    assert!(
        d.log().contains("custom.a was removed 4 times within 60s"),
        "{}",
        d.log()
    );
    assert!(!d.kernel().contains("custom.a (enforce)"));
}

#[test]
fn drift_is_put_back_while_the_source_is_unavailable() {
    let (t, cfg) = no_resync_tree();
    t.write("src/a", &profile("custom.a"));
    let d = Daemon::start(t, cfg);
    d.wait_ready();
    // The source goes away (a volume unmounted): nothing is removed, and
    // a profile someone removes is still put back.
    std::fs::remove_dir_all(d.path("src")).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.wait_until("the source unavailable", |d| {
        d.log().contains("src: source does not exist")
    });
    // The removal's own change events are handled first.
    d.wait_until("the change reconcile", |d| d.log().contains("reconcile (change)"));
    let k = d.kernel().replace("custom.a (enforce)\n", "");
    std::fs::write(d.path("secfs/profiles"), k).unwrap();
    std::fs::write(d.path("secfs/revision"), "9\n").unwrap();
    d.wait_until("put back", |d| {
        d.log().contains("removed behind armord's back (custom.a); put back")
            && d.kernel().contains("custom.a (enforce)")
    });
}

/// A tree whose daemon never resyncs within a test (an hour).
fn no_resync_tree() -> (Tree, PathBuf) {
    let t = Tree::new();
    let parser = t.fake_parser();
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\nresync_interval_secs = 3600\n\
             [denials]\nenabled = false\n[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n",
            parser.display()
        ),
    );
    (t, cfg)
}
