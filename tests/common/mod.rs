//! Shared helpers for the integration tests: temp trees, the fake parser and
//! running the real binaries.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ARMORD: &str = env!("CARGO_BIN_EXE_armord");
pub const ARMORCTL: &str = env!("CARGO_BIN_EXE_armorctl");

/// The real apparmor_parser, when installed. Under CI it must be.
pub fn real_parser() -> Option<PathBuf> {
    let p = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if p.is_none() && std::env::var_os("CI").is_some() {
        panic!("CI must install the apparmor package: apparmor_parser is missing");
    }
    if p.is_none() {
        eprintln!("apparmor_parser not installed: skipping the real-parser part of this test");
    }
    p
}

pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    /// The file's text; a file that is not there fails the test (a missing
    /// file is not an empty one: a check on it could never fail).
    pub fn read(&self, rel: &str) -> String {
        let p = self.path(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    }
    /// The file's text, or `None` while it is not there (for polling a file
    /// that a process has yet to write).
    pub fn try_read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// A fake apparmor_parser bound to a fake securityfs under this tree.
    pub fn fake_parser(&self) -> PathBuf {
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_apparmor_parser");
        let secfs = self.path("secfs");
        std::fs::create_dir_all(&secfs).unwrap();
        if !secfs.join("profiles").exists() {
            std::fs::write(secfs.join("profiles"), "").unwrap();
        }
        let wrapper = self.path("bin/apparmor_parser");
        std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nFAKE_SECURITYFS='{}' FAKE_PARSER_LOG='{}' exec '{}' \"$@\"\n",
                secfs.display(),
                self.path("parser.log").display(),
                fake.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        wrapper
    }
}

impl Tree {
    /// A fake journalctl that replays `lines` (JSON entries), as `journalctl`
    /// under this tree.
    pub fn fake_journalctl(&self, lines: &str) -> PathBuf {
        let data = self.write("journal.json", lines);
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_journalctl");
        let w = self.write(
            "journalctl",
            &format!(
                "#!/bin/sh\nFAKE_JOURNAL='{}' exec '{}' \"$@\"\n",
                data.display(),
                fake.display()
            ),
        );
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
        w
    }
}

/// `armord --simulate --once` on the source `src` (relative to the tree),
/// with the state under `state/` and the tree's `none.toml` as config
/// (absent unless a test writes it).
pub fn once_sim(t: &Tree, src: &str) -> Output {
    // A configuration named with --config must exist.
    if !t.path("none.toml").exists() {
        t.write("none.toml", "");
    }
    run(
        ARMORD,
        &[
            "--simulate",
            "--once",
            "--bus",
            "none",
            "--source",
            t.path(src).to_str().unwrap(),
            "--state-dir",
            t.path("state").to_str().unwrap(),
            "--config",
            t.path("none.toml").to_str().unwrap(),
        ],
    )
}

/// `armord --simulate --once` with the configuration `cfg`: the exit code
/// and what it printed.
pub fn once_config(cfg: &Path) -> (i32, String) {
    let out = run(
        ARMORD,
        &[
            "--simulate",
            "--once",
            "--bus",
            "none",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    (out.status.code().unwrap_or(-1), text(&out))
}

/// A child process killed when the test ends, passed or not.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fake securityfs whose `.remove` works as the kernel's does: a name
/// written to it (one open, write, close, as armord does) is taken out of
/// `profiles` and recorded. Without it a removal attempt on the fake
/// securityfs only fails, and the kernel file can never show one.
pub struct WorkingRemove {
    fifo: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    removed: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tree {
    /// Make `secfs/.remove` a working one (see [`WorkingRemove`]).
    pub fn working_remove(&self) -> WorkingRemove {
        use std::io::Read;
        let secfs = self.path("secfs");
        std::fs::create_dir_all(&secfs).unwrap();
        let fifo = secfs.join(".remove");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let removed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (fifo, stop, removed) = (fifo.clone(), stop.clone(), removed.clone());
            let profiles = secfs.join("profiles");
            std::thread::spawn(move || {
                loop {
                    // Blocks until a writer opens it; the writer's close ends
                    // the name.
                    let Ok(mut f) = std::fs::File::open(&fifo) else { return };
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let mut name = String::new();
                    if f.read_to_string(&mut name).is_err() || name.is_empty() {
                        continue;
                    }
                    let text = std::fs::read_to_string(&profiles).unwrap_or_default();
                    let kept: String = text
                        .lines()
                        .filter(|l| l.rsplit_once(" (").map(|(n, _)| n) != Some(name.as_str()))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let tmp = profiles.with_extension("removing");
                    std::fs::write(&tmp, kept).unwrap();
                    std::fs::rename(&tmp, &profiles).unwrap();
                    removed.lock().unwrap().push(name);
                }
            })
        };
        WorkingRemove {
            fifo,
            stop,
            removed,
            thread: Some(thread),
        }
    }
}

impl WorkingRemove {
    /// The names removed so far, in order.
    pub fn removed(&self) -> Vec<String> {
        self.removed.lock().unwrap().clone()
    }
}

impl Drop for WorkingRemove {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the reader blocked in open: a writer that opens and closes.
        // ENXIO while the reader is between two opens: try again.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < end {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&self.fifo)
            {
                Ok(_) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                    return;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
    }
}
