//! The real kernel: securityfs for loaded profiles, proc for confinement.

use super::{Kernel, KernelError, Mode, top_level};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Parse the securityfs `profiles` format: `name (mode)` per line.
pub fn parse_profiles_file(path: &Path, text: &str) -> Result<BTreeMap<String, Mode>, KernelError> {
    // Collected, then built in one go: the kernel lists profiles sorted,
    // and a map built from sorted pairs skips a search per insert.
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, mode)) = line
            .rsplit_once(" (")
            .and_then(|(n, m)| m.strip_suffix(')').map(|m| (n, m)))
        else {
            // One odd line (a name another tool loaded with a newline in it)
            // must not blind armord to every other profile.
            log::warn!(
                "{}:{}: expected `name (mode)`, found {line:?}; line skipped",
                path.display(),
                i + 1
            );
            continue;
        };
        out.push((name.to_owned(), Mode::from_word(mode)));
    }
    Ok(BTreeMap::from_iter(out))
}

/// The profiles a process label names: `a (enforce)`, `a//child (complain)`,
/// stacks `a//&b (enforce)`, namespaces `:ns:a`. `unconfined` gives none.
pub fn parse_label(label: &str) -> Vec<String> {
    let label = label.trim_end_matches(['\n', '\0']).trim();
    let label = match label.rsplit_once(" (") {
        Some((l, m)) if m.ends_with(')') => l,
        _ => label,
    };
    let mut out = Vec::new();
    for part in label.split("//&") {
        let part = part.trim();
        // Namespaced: `:ns:name` or `:ns://name`.
        let part = match part.strip_prefix(':').and_then(|p| p.split_once(':')) {
            Some((_ns, rest)) => rest.trim_start_matches("//"),
            None => part,
        };
        let top = top_level(part);
        if !top.is_empty() && top != "unconfined" && !out.iter().any(|x| x == top) {
            out.push(top.to_owned());
        }
    }
    out
}

/// Reads `/proc/*/attr/apparmor/current` (or `attr/current`).
#[derive(Debug, Clone)]
pub struct ProcReader {
    pub root: PathBuf,
}

impl ProcReader {
    pub fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, KernelError> {
        let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(KernelError::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // A zombie runs no code: its label no longer confines anything
            // (a container's init killed and not yet reaped by its shim).
            if is_zombie(&entry.path()) {
                continue;
            }
            let dir = entry.path().join("attr");
            // A process can exit at any moment: read errors just skip it.
            let label = std::fs::read_to_string(dir.join("apparmor/current"))
                .or_else(|_| std::fs::read_to_string(dir.join("current")));
            if let Ok(label) = label {
                for name in parse_label(&label) {
                    out.entry(name).or_default().push(pid);
                }
            }
        }
        for pids in out.values_mut() {
            pids.sort_unstable();
        }
        Ok(out)
    }
}

/// Is the process at `dir` (`/proc/PID`) a zombie? From `stat`'s state
/// field, after the command name's closing parenthesis.
fn is_zombie(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// The kernel through securityfs (`/sys/kernel/security/apparmor`).
#[derive(Debug, Clone)]
pub struct SecurityFs {
    pub root: PathBuf,
    pub proc: ProcReader,
}

impl SecurityFs {
    pub fn profiles_path(&self) -> PathBuf {
        self.root.join("profiles")
    }
    /// Is AppArmor there? Errors name the missing file.
    pub fn check(&self) -> Result<(), KernelError> {
        let p = self.profiles_path();
        if p.exists() {
            Ok(())
        } else {
            Err(KernelError::NotAvailable { path: p })
        }
    }
}

impl Kernel for SecurityFs {
    fn revision(&self) -> Option<u64> {
        read_revision(&self.root.join("revision"))
    }

    fn loaded(&self) -> Result<BTreeMap<String, Mode>, KernelError> {
        let path = self.profiles_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_profiles_file(&path, &text),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(KernelError::NotAvailable { path }),
            Err(source) => Err(KernelError::Io { path, source }),
        }
    }

    fn remove(&self, name: &str) -> Result<(), KernelError> {
        let path = self.root.join(".remove");
        let r = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(name.as_bytes()));
        match r {
            Ok(()) => Ok(()),
            // Already gone: the goal is reached.
            Err(e) if e.kind() == ErrorKind::NotFound && path.exists() => Ok(()),
            Err(source) => Err(KernelError::Io { path, source }),
        }
    }

    fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, KernelError> {
        self.proc.confined()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_confine_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, state) in [(10, "S"), (11, "Z")] {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(p.join("attr")).unwrap();
            std::fs::write(p.join("attr/current"), "custom.a (enforce)\n").unwrap();
            std::fs::write(p.join("stat"), format!("{pid} (sh (x)) {state} 1 1 1\n")).unwrap();
        }
        let r = ProcReader {
            root: dir.path().to_owned(),
        };
        assert_eq!(r.confined().unwrap()["custom.a"], [10]);
    }

    #[test]
    fn profiles_format() {
        let m = parse_profiles_file(
            Path::new("p"),
            "docker-default (enforce)\ncustom.a (complain)\ncustom.a//child (complain)\n/usr/bin/x y (kill)\n",
        )
        .unwrap();
        assert_eq!(m["custom.a"], "complain");
        assert_eq!(m["/usr/bin/x y"], "kill");
        assert_eq!(m.len(), 4);
        // A line that is not `name (mode)` (half of a name with a newline in
        // it) is skipped; the rest is still read.
        let m = parse_profiles_file(Path::new("/sys/p"), "ok (enforce)\nbro\nken (enforce)\n").unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["ken", "ok"]);
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("unconfined\n"), Vec::<String>::new());
        assert_eq!(parse_label("custom.a (enforce)\n"), ["custom.a"]);
        assert_eq!(parse_label("custom.a//child (complain)\0"), ["custom.a"]);
        assert_eq!(parse_label("a//&b (enforce)"), ["a", "b"]);
        assert_eq!(parse_label(":ns:custom.x (enforce)"), ["custom.x"]);
    }

    #[test]
    fn proc_reader_finds_confined_pids() {
        let t = tempfile::tempdir().unwrap();
        let mk = |pid: &str, file: &str, label: &str| {
            let d = t.path().join(pid).join("attr");
            std::fs::create_dir_all(d.join("apparmor")).unwrap();
            std::fs::write(d.join(file), label).unwrap();
        };
        mk("10", "apparmor/current", "custom.a (enforce)\n");
        mk("11", "current", "custom.a//hat (enforce)\n");
        mk("12", "current", "unconfined\n");
        mk("self", "current", "custom.b (enforce)\n");
        let m = ProcReader {
            root: t.path().to_owned(),
        }
        .confined()
        .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["custom.a"], [10, 11]);
    }

    #[test]
    fn securityfs_remove_writes_name() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("profiles"), "custom.a (enforce)\n").unwrap();
        std::fs::write(t.path().join(".remove"), "").unwrap();
        let k = SecurityFs {
            root: t.path().to_owned(),
            proc: ProcReader {
                root: t.path().join("proc"),
            },
        };
        k.check().unwrap();
        assert_eq!(k.loaded().unwrap().len(), 1);
        k.remove("custom.a").unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join(".remove")).unwrap(), "custom.a");
        let missing = SecurityFs {
            root: t.path().join("nope"),
            proc: ProcReader { root: t.path().into() },
        };
        assert!(
            missing
                .check()
                .unwrap_err()
                .to_string()
                .contains("nope/profiles does not exist")
        );
    }
}

/// The policy revision in the kernel's `revision` file: one non-blocking
/// read. A read on the same descriptor after the first waits for the next
/// change of policy (that is what the file is for), so it is never read to
/// its end.
pub fn read_revision(path: &Path) -> Option<u64> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut buf = [0u8; 32];
    let n = f.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod revision_tests {
    use super::*;

    #[test]
    fn the_revision_is_read_once_without_waiting_for_the_end() {
        // A FIFO whose writer stays open stands in for the kernel's file,
        // which never ends: read to its end, it would block.
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("revision");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Held open for reading and writing: the pipe never ends.
        let mut w = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        w.write_all(b"42\n").unwrap();
        assert_eq!(read_revision(&fifo), Some(42));
        drop(w);
        assert_eq!(read_revision(&d.path().join("missing")), None);
    }
}
