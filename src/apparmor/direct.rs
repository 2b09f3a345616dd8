//! Loading the policy a compile run just wrote, without a second run.
//!
//! `apparmor_parser -Q --write-cache` leaves each file's compiled policy in
//! its cache, under the file's name. `apparmor_parser -r` on a file whose
//! cache is valid reads that cache file and writes it, whole, to the
//! kernel's `.replace` in one `write` (where the kernel loads a set of
//! profiles at once: `features/policy/set_load`). This does the same for
//! the files the last compile run of this process left in the cache, so a
//! change costs one generation of parser processes, not two.
//!
//! Only policy this process saw compiled is loaded this way: before a
//! compile run, the file's old cache entry is removed, so an entry found
//! after a successful run is that run's output for that content (a failed
//! cache write cannot leave an older compile behind). Anything else, and
//! any write the kernel refuses, goes through `apparmor_parser -r`, which
//! reports the reason.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// At most this many compiled files wait for their load (a file that
/// compiled but is not loaded, say for a conflict, is never taken off);
/// past it the list starts over, and those files load through the parser.
const MAX_FRESH: usize = 4096;

/// What compile runs of this process left in the parser's cache: read for
/// the compiled facts every bound is judged by, and, where the kernel takes
/// a set in one write, loaded from there.
#[derive(Debug, Default)]
pub struct DirectLoad {
    /// The kernel's `.replace` interface, where policy is loaded directly.
    replace: Option<PathBuf>,
    /// Where the parser keeps this cache's compiled files for the features
    /// it compiles against (`--print-cache-dir`), asked once.
    cache_subdir: OnceLock<Option<PathBuf>>,
    /// Files a compile run of this process left in the cache, not loaded yet.
    fresh: Mutex<HashSet<PathBuf>>,
}

impl DirectLoad {
    /// For the kernel under `securityfs`, when it loads a set of profiles in
    /// one write (as `apparmor_parser` itself then does).
    pub fn for_kernel(securityfs: &Path) -> Option<DirectLoad> {
        securityfs
            .join("features/policy/set_load")
            .exists()
            .then(|| DirectLoad {
                replace: Some(securityfs.join(".replace")),
                ..Default::default()
            })
    }

    /// Only what compile runs leave in the cache, read; nothing loaded
    /// from there.
    pub fn cache_only() -> DirectLoad {
        DirectLoad::default()
    }

    /// Whether compiled policy is written to the kernel from the cache.
    pub fn loads(&self) -> bool {
        self.replace.is_some()
    }

    /// The parser's cache directory for these features, from `ask` (the
    /// parser's `--print-cache-dir`), asked the first time only.
    pub fn cache_subdir(&self, ask: impl FnOnce() -> Option<PathBuf>) -> Option<&Path> {
        self.cache_subdir
            .get_or_init(|| {
                let dir = ask();
                match &dir {
                    None if self.replace.is_none() => log::info!(
                        "the parser names no cache directory (--print-cache-dir): attachments and modes are judged from a scan of each file"
                    ),
                    Some(_) if self.replace.is_none() => {}
                    Some(d) => log::info!(
                        "checked policy is loaded from the parser's cache in {} by one write to {}",
                        crate::escape::path(d),
                        crate::escape::path(self.replace.as_deref().unwrap_or(Path::new("")))
                    ),
                    None => log::info!(
                        "the parser names no cache directory (--print-cache-dir): every load runs apparmor_parser -r"
                    ),
                }
                dir
            })
            .as_deref()
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a compile run over `files`: forget their cache entries, so
    /// that what is there afterwards is this run's.
    pub fn before_compile(&self, subdir: &Path, files: &[PathBuf]) {
        let mut fresh = self.fresh();
        for f in files {
            fresh.remove(f);
            if let Some(name) = f.file_name() {
                let _ = std::fs::remove_file(subdir.join(name));
            }
        }
    }

    /// After a successful compile run over `files`: those it left in the
    /// cache may be loaded from there.
    pub fn after_compile(&self, subdir: &Path, files: &[PathBuf]) {
        let mut fresh = self.fresh();
        if fresh.len() + files.len() > MAX_FRESH {
            fresh.clear();
        }
        for f in files {
            if f.file_name().is_some_and(|n| subdir.join(n).is_file()) {
                fresh.insert(f.clone());
            }
        }
    }

    /// The compiled policy a compile run of this process left for `file`.
    pub fn compiled(&self, subdir: &Path, file: &Path) -> Option<Vec<u8>> {
        if !self.fresh().contains(file) {
            return None;
        }
        std::fs::read(subdir.join(file.file_name()?)).ok()
    }

    /// The compiled policy the parser's cache holds for `file` (a
    /// content-addressed store file), from whichever run wrote it.
    pub fn cached(&self, subdir: &Path, file: &Path) -> Option<Vec<u8>> {
        std::fs::read(subdir.join(file.file_name()?)).ok()
    }

    /// Load what can be loaded from the cache; return the files left for
    /// `apparmor_parser -r`, in their order.
    pub fn load(&self, subdir: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
        let mut rest = Vec::new();
        for f in files {
            let taken = self.fresh().remove(f);
            let Some(name) = f.file_name().filter(|_| taken) else {
                rest.push(f.clone());
                continue;
            };
            let cached = subdir.join(name);
            if let Err(e) = self.write(&cached) {
                log::debug!(
                    "{}: loading {} directly failed ({e}); loading through the parser",
                    crate::escape::path(f),
                    crate::escape::path(&cached)
                );
                rest.push(f.clone());
            }
        }
        rest
    }

    /// Write one compiled file to `.replace` in a single write.
    fn write(&self, cached: &Path) -> std::io::Result<()> {
        let Some(replace) = &self.replace else {
            return Err(std::io::Error::other("no direct loads here"));
        };
        let policy = std::fs::read(cached)?;
        if policy.is_empty() {
            return Err(std::io::Error::other("empty compiled policy"));
        }
        let mut iface = std::fs::OpenOptions::new().write(true).open(replace)?;
        let n = iface.write(&policy)?;
        if n != policy.len() {
            return Err(std::io::Error::other(format!(
                "the kernel took {n} of {} bytes",
                policy.len()
            )));
        }
        Ok(())
    }
}

/// The parser's cache directory for the features `cmd` compiles against:
/// its `--print-cache-dir` answer, when it gives one that exists.
pub fn ask_cache_subdir(mut cmd: Command, cache_dir: &Path, timeout: Duration) -> Option<PathBuf> {
    cmd.arg("--print-cache-dir").arg("--cache-loc").arg(cache_dir);
    let done = super::run_with_timeout(cmd, timeout).ok()??;
    if done.code != Some(0) {
        return None;
    }
    let text = String::from_utf8(done.stdout).ok()?;
    let dir = PathBuf::from(text.lines().next()?.trim());
    (dir.is_absolute() && dir.starts_with(cache_dir)).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apparmor::{LoadOptions, Parser, ParserRunner};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    /// A parser stand-in: `--print-cache-dir` names `<cache>/f.0`; `-Q
    /// --write-cache` writes `compiled:<content>` there under each file's
    /// name (unless `NO_CACHE` exists, as when the cache cannot be written);
    /// `-r` logs its files. The kernel stand-in is `secfs/.replace`.
    struct Fake {
        dir: tempfile::TempDir,
        runner: ParserRunner,
    }

    impl Fake {
        fn new(set_load: bool) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let p = |s: &str| dir.path().join(s);
            std::fs::create_dir_all(p("secfs/features/policy")).unwrap();
            if set_load {
                std::fs::write(p("secfs/features/policy/set_load"), "yes\n").unwrap();
            }
            std::fs::write(p("secfs/.replace"), "").unwrap();
            let script = p("apparmor_parser");
            std::fs::write(
                &script,
                format!(
                    r#"#!/bin/sh
d={d}
case "$1" in --print-cache-dir) echo "$3/f.0"; exit 0;; esac
mode=$1; shift
files=""
while [ $# -gt 0 ]; do
  case "$1" in --cache-loc) cache=$2; shift 2;; -*) shift;; *) files="$files $1"; shift;; esac
done
case "$mode" in
  -Q) [ -e $d/NO_CACHE ] && exit 0
      mkdir -p "$cache/f.0"
      for f in $files; do printf 'compiled:%s' "$(cat $f)" > "$cache/f.0/$(basename $f)"; done;;
  -r) echo "r$files" >> $d/loads.log;;
esac
"#,
                    d = dir.path().display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            let runner = ParserRunner {
                program: script,
                timeout: Duration::from_secs(10),
                jobs: 0,
                cache_dir: p("cache"),
                features_file: None,
                scratch_dir: p("tmp"),
                direct: DirectLoad::for_kernel(&p("secfs")).map(Arc::new),
            };
            Fake { dir, runner }
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        fn replaced(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("secfs/.replace")).unwrap_or_default()
        }

        fn parser_loads(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("loads.log")).unwrap_or_default()
        }

        fn compile_and_load(&self, file: &Path, opts: LoadOptions) {
            let files = [file.to_owned()];
            self.runner.compile(&files, opts).unwrap();
            self.runner.load(&files, opts).unwrap();
        }

        /// `file` went to the kernel through `apparmor_parser -r` alone.
        fn assert_through_the_parser(&self, file: &Path) {
            assert_eq!(self.replaced(), "");
            assert_eq!(self.parser_loads(), format!("r {}\n", file.display()));
        }
    }

    const ENFORCE: LoadOptions = LoadOptions { complain: false };

    #[test]
    fn compiled_policy_comes_from_the_cache_only_for_files_this_process_compiled() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        assert_eq!(f.runner.compiled(&a), None);
        // An earlier run's entry is the cache's, not this process's compile.
        std::fs::create_dir_all(f.dir.path().join("cache/f.0")).unwrap();
        std::fs::write(f.dir.path().join("cache/f.0/sha-a"), "earlier").unwrap();
        assert_eq!(f.runner.compiled(&a), None);
        assert_eq!(f.runner.cached(&a).unwrap(), b"earlier");
        f.runner.compile(std::slice::from_ref(&a), ENFORCE).unwrap();
        assert_eq!(f.runner.compiled(&a).unwrap(), b"compiled:profile a {}");
        assert!(f.runner.leaves_policy());
        // Complain loads compile the same way: the compile is judged.
        f.runner
            .compile(std::slice::from_ref(&a), LoadOptions { complain: true })
            .unwrap();
        assert_eq!(f.runner.compiled(&a).unwrap(), b"compiled:profile a {}");
        // Loaded directly: taken, no longer this process's fresh compile.
        f.runner.load(std::slice::from_ref(&a), ENFORCE).unwrap();
        assert_eq!(f.runner.compiled(&a), None);
    }

    #[test]
    fn compiled_policy_is_written_to_replace_without_a_second_run() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        f.runner.compile(std::slice::from_ref(&a), ENFORCE).unwrap();
        f.runner.load(std::slice::from_ref(&a), ENFORCE).unwrap();
        assert_eq!(f.replaced(), "compiled:profile a {}");
        assert_eq!(f.parser_loads(), "");
        // Once only: a later load (drift repair) goes through the parser,
        // which checks the cache against the includes again.
        f.runner.load(std::slice::from_ref(&a), ENFORCE).unwrap();
        assert_eq!(f.parser_loads(), format!("r {}\n", a.display()));
    }

    #[test]
    fn only_files_this_process_compiled_are_loaded_directly() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        let b = f.file("sha-b", "profile b {}");
        // b's cache entry is an earlier compile's, not this process's.
        std::fs::create_dir_all(f.dir.path().join("cache/f.0")).unwrap();
        std::fs::write(f.dir.path().join("cache/f.0/sha-b"), "old").unwrap();
        f.runner.compile(std::slice::from_ref(&a), ENFORCE).unwrap();
        f.runner.load(&[a.clone(), b.clone()], ENFORCE).unwrap();
        assert_eq!(f.replaced(), "compiled:profile a {}");
        assert_eq!(f.parser_loads(), format!("r {}\n", b.display()));
    }

    #[test]
    fn an_old_cache_entry_the_compile_did_not_rewrite_is_never_loaded() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a { new }");
        std::fs::create_dir_all(f.dir.path().join("cache/f.0")).unwrap();
        std::fs::write(f.dir.path().join("cache/f.0/sha-a"), "stale").unwrap();
        // The compile succeeds but cannot write its cache.
        std::fs::write(f.dir.path().join("NO_CACHE"), "").unwrap();
        f.compile_and_load(&a, ENFORCE);
        f.assert_through_the_parser(&a);
    }

    #[test]
    fn a_write_the_kernel_refuses_falls_back_to_the_parser() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        let iface = f.dir.path().join("secfs/.replace");
        std::fs::remove_file(&iface).unwrap();
        std::fs::create_dir(&iface).unwrap();
        f.compile_and_load(&a, ENFORCE);
        f.assert_through_the_parser(&a);
    }

    #[test]
    fn complain_mode_and_kernels_without_set_load_use_the_parser() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        let complain = LoadOptions { complain: true };
        f.compile_and_load(&a, complain);
        f.assert_through_the_parser(&a);

        let f = Fake::new(false);
        assert!(f.runner.direct.is_none());
        let a = f.file("sha-a", "profile a {}");
        f.compile_and_load(&a, ENFORCE);
        f.assert_through_the_parser(&a);
    }

    #[test]
    fn a_failed_compile_leaves_nothing_to_load_directly() {
        let f = Fake::new(true);
        let a = f.file("sha-a", "profile a {}");
        f.runner.compile(std::slice::from_ref(&a), ENFORCE).unwrap();
        // The same file compiled again, and that run fails after writing.
        let mut broken = f.runner.clone();
        let partial = f.dir.path().join("cache/f.0/sha-a");
        broken.program = f.file(
            "failing",
            &format!("#!/bin/sh\necho partial > {}\nexit 1\n", partial.display()),
        );
        std::fs::set_permissions(&broken.program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(broken.compile(std::slice::from_ref(&a), ENFORCE).is_err());
        f.runner.load(std::slice::from_ref(&a), ENFORCE).unwrap();
        f.assert_through_the_parser(&a);
    }
}
