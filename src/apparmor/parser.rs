//! The real `apparmor_parser`, run with a timeout.

use super::direct::{DirectLoad, ask_cache_subdir};
use super::{Diagnostic, LoadOptions, NamesResult, Parser, ParserError};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The output of a finished child process.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run a command to completion, killing its whole process group when it runs
/// past `timeout`. Returns `Ok(None)` on timeout.
///
/// One thread does it all: it polls the child's two pipes and a pidfd for
/// its exit. Where the kernel has no `pidfd_open` (before 5.3), threads
/// read the pipes and wait for the child instead.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> std::io::Result<Option<Finished>> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    let child = cmd.spawn()?;
    match pidfd_open(child.id()) {
        Some(pidfd) => run_polled(child, pidfd, timeout),
        None => run_threaded(child, timeout),
    }
}

/// A descriptor that becomes readable when process `pid` exits.
#[allow(unsafe_code)]
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new
    // descriptor or -1; it touches no memory of ours.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kill the child's whole group (a parser may have forked workers).
fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn run_polled(mut child: std::process::Child, pidfd: OwnedFd, timeout: Duration) -> std::io::Result<Option<Finished>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + timeout;
    let mut pipes = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    let mut bufs: [Vec<u8>; 2] = Default::default();
    let mut exited = false;
    let mut chunk = [0u8; 16 * 1024];
    // Until the child is gone and both pipes are closed: a worker it
    // forked may still hold them a moment after it exits.
    while !exited || pipes.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            kill_group(child.id());
            child.wait()?;
            return Ok(None);
        }
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, p) in pipes.iter().enumerate() {
            if let Some(p) = p {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if !exited {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        let ms =
            PollTimeout::try_from(left.as_millis().max(1).min(i32::MAX as u128) as u32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(e.into());
            }
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&which)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, &i)| i)
            .collect();
        drop(fds);
        for i in ready {
            if i == 2 {
                exited = true;
                continue;
            }
            let Some(p) = &pipes[i] else { continue };
            match nix::unistd::read(p, &mut chunk) {
                Ok(0) => pipes[i] = None,
                Ok(n) => bufs[i].extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => pipes[i] = None,
            }
        }
    }
    let status = child.wait()?;
    let [stdout, stderr] = bufs;
    Ok(Some(Finished {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
    }))
}

fn run_threaded(mut child: std::process::Child, timeout: Duration) -> std::io::Result<Option<Finished>> {
    let pid = child.id();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    // A thread waits for the child, so that its exit is seen the moment it
    // happens; this thread waits for that or the timeout.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    let status = match done_rx.recv_timeout(timeout) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            kill_group(pid);
            let _ = waiter.join();
            None
        }
        _ => match waiter.join() {
            Ok(status) => Some(status?),
            Err(_) => return Err(std::io::Error::other("the thread waiting for the parser panicked")),
        },
    };
    // The pipes close when the group is gone; a grandchild that escaped the
    // group could hold them, so the readers are joined only on success.
    let Some(status) = status else {
        return Ok(None);
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Some(Finished {
        code: status.code(),
        signal: status.signal(),
        stdout,
        stderr,
    }))
}

/// The features file the parser's own configuration names (`policy-features=`),
/// used to compile on a kernel without AppArmor.
pub fn default_features_file() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let conf = std::fs::read_to_string("/etc/apparmor/parser.conf").unwrap_or_default();
            let named = conf.lines().find_map(|l| {
                let l = l.trim();
                l.strip_prefix("policy-features=")
                    .or_else(|| l.strip_prefix("policy-features "))
                    .map(|v| PathBuf::from(v.trim()))
            });
            named
                .into_iter()
                .chain([PathBuf::from("/usr/share/apparmor-features/features")])
                .find(|p| p.exists())
        })
        .clone()
}

/// Parse the parser's stderr into diagnostics. `files` are the files of the
/// run; a line that names one of them is attributed to it.
pub fn parse_diagnostics(stderr: &str, files: &[PathBuf]) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for raw in stderr.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("Cache read/write disabled") || line.starts_with("Warning") {
            continue;
        }
        let d = parse_one(line, files);
        // A message that quotes a newline (`unexpected character: '\n'`)
        // goes on on the next line: one diagnostic, not two.
        if let Some(prev) = out.last_mut()
            && d.line.is_none()
            && !raw.starts_with("AppArmor parser error")
            && prev.message.matches('\'').count() % 2 == 1
        {
            prev.message.push('\n');
            prev.message.push_str(raw);
            continue;
        }
        out.push(d);
    }
    out
}

fn parse_one(line: &str, files: &[PathBuf]) -> Diagnostic {
    // "AppArmor parser error for FILE in profile INNER at line N: MESSAGE"
    if let Some(rest) = line.strip_prefix("AppArmor parser error for ")
        && let Some((file, rest)) = rest.split_once(" in profile ")
        && let Some((inner, rest)) = rest.rsplit_once(" at line ")
        && let Some((num, msg)) = rest.split_once(": ")
        && let Ok(n) = num.trim().parse::<u32>()
    {
        let file = PathBuf::from(file);
        let message = if Path::new(inner) == file {
            msg.to_owned()
        } else {
            format!("in {inner}: {msg}")
        };
        return Diagnostic {
            file: Some(file),
            line: Some(n),
            message,
        };
    }
    // "AppArmor parser error for FILE in profile INNER: MESSAGE" (no line)
    if let Some(rest) = line.strip_prefix("AppArmor parser error for ")
        && let Some((file, rest)) = rest.split_once(" in profile ")
        && let Some((_inner, msg)) = rest.split_once(": ")
    {
        return Diagnostic {
            file: Some(PathBuf::from(file)),
            line: None,
            message: msg.to_owned(),
        };
    }
    // "AppArmor parser error, in FILE line N: MESSAGE" (older parsers)
    if let Some(rest) = line.strip_prefix("AppArmor parser error, in ")
        && let Some((file, rest)) = rest.rsplit_once(" line ")
        && let Some((num, msg)) = rest.split_once(": ")
        && let Ok(n) = num.trim().parse::<u32>()
    {
        return Diagnostic {
            file: Some(PathBuf::from(file)),
            line: Some(n),
            message: msg.to_owned(),
        };
    }
    // Anything else: attribute it to a file of the run it mentions.
    let file = files.iter().find(|f| line.contains(&*f.to_string_lossy())).cloned();
    Diagnostic {
        file,
        line: None,
        message: line.to_owned(),
    }
}

const SEPARATOR_PREFIX: &str = "__armord_separator_";

/// The bytes of file arguments one parser run is given: past it, the files
/// go to several runs, in order. Linux refuses a command line past a
/// quarter of the stack limit (2 MiB with the usual 8 MiB), `E2BIG`; at
/// 30,000 profiles one run's paths passed it, and no reconcile could
/// start. 256 KiB leaves room under any stack limit of 1 MiB and more.
const ARG_BYTES: usize = 256 << 10;

/// `files` in runs whose arguments (each path, its NUL and its pointer,
/// and `per_file` more bytes for what follows each path) stay within
/// `budget`; every file in order, a file too long for any run alone.
fn arg_batches(files: &[PathBuf], per_file: usize, budget: usize) -> Vec<&[PathBuf]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, f) in files.iter().enumerate() {
        let cost = f.as_os_str().len() + 1 + std::mem::size_of::<usize>() + per_file;
        if i > start && used + cost > budget {
            out.push(&files[start..i]);
            (start, used) = (i, 0);
        }
        used += cost;
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// The real `apparmor_parser`.
#[derive(Debug, Clone)]
pub struct ParserRunner {
    pub program: PathBuf,
    pub timeout: Duration,
    pub jobs: u32,
    pub cache_dir: PathBuf,
    /// Compile against this features file instead of the kernel's (kernels
    /// without AppArmor, simulation).
    pub features_file: Option<PathBuf>,
    /// Where the separator files for batched `--names` live.
    pub scratch_dir: PathBuf,
    /// Load what compile runs left in the cache by writing it to the
    /// kernel, not through a second run (a kernel with AppArmor whose own
    /// features are compiled against).
    pub direct: Option<Arc<DirectLoad>>,
}

impl ParserRunner {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(f) = &self.features_file {
            c.arg("-M").arg(f);
        }
        c
    }

    fn jobs_arg(&self, c: &mut Command) {
        if self.jobs > 0 {
            c.arg("-j").arg(self.jobs.to_string());
        }
    }

    fn run(&self, cmd: Command, files: &[PathBuf]) -> Result<Finished, ParserError> {
        let program = self.program.clone();
        let done = run_with_timeout(cmd, self.timeout)
            .map_err(|source| ParserError::Spawn {
                program: program.clone(),
                source,
            })?
            .ok_or_else(|| ParserError::Timeout {
                program: program.clone(),
                timeout: self.timeout,
            })?;
        if let Some(signal) = done.signal {
            return Err(ParserError::Signal { program, signal });
        }
        if done.code != Some(0) {
            let stderr = String::from_utf8_lossy(&done.stderr);
            let mut diagnostics = parse_diagnostics(&stderr, files);
            if diagnostics.is_empty() {
                diagnostics.push(Diagnostic {
                    file: None,
                    line: None,
                    message: "failed without a message".into(),
                });
            }
            return Err(ParserError::Failed {
                program,
                code: done.code.unwrap_or(-1),
                diagnostics,
            });
        }
        Ok(done)
    }

    /// What compile runs leave in the parser's cache, and the cache
    /// directory for the features it compiles against.
    fn outputs(&self) -> Option<(&DirectLoad, &Path)> {
        let d = self.direct.as_deref()?;
        let subdir = d.cache_subdir(|| ask_cache_subdir(self.command(), &self.cache_dir, self.timeout))?;
        Some((d, subdir))
    }

    /// The cache, when policy may be loaded from there directly.
    pub(super) fn direct(&self, opts: LoadOptions) -> Option<(&DirectLoad, &Path)> {
        // `-C` loads compile again; a features file is not the kernel's.
        if opts.complain || self.features_file.is_some() || !self.direct.as_deref()?.loads() {
            return None;
        }
        self.outputs()
    }

    fn separator(&self, i: usize) -> Result<PathBuf, ParserError> {
        let path = self.scratch_dir.join(format!("{SEPARATOR_PREFIX}{i}"));
        if !path.exists() {
            std::fs::create_dir_all(&self.scratch_dir)
                .and_then(|_| std::fs::write(&path, format!("profile {SEPARATOR_PREFIX}{i} {{}}\n")))
                .map_err(|e| ParserError::Output {
                    program: self.program.clone(),
                    message: format!("cannot write {}: {e}", path.display()),
                })?;
        }
        Ok(path)
    }

    fn names_one(&self, file: &Path) -> Result<NamesResult, ParserError> {
        let mut c = self.command();
        c.arg("-N").arg(file);
        match self.run(c, &[file.to_owned()]) {
            Ok(done) => Ok(Ok(String::from_utf8_lossy(&done.stdout)
                .lines()
                .map(str::to_owned)
                .collect())),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl ParserRunner {
    /// The separator each file is followed by in a batched run, in bytes.
    fn separator_bytes(&self) -> usize {
        self.scratch_dir.as_os_str().len() + SEPARATOR_PREFIX.len() + 8 + 1 + std::mem::size_of::<usize>()
    }

    fn names_batch(&self, files: &[PathBuf]) -> Result<Vec<NamesResult>, ParserError> {
        if files.len() <= 1 {
            return files.iter().map(|f| self.names_one(f)).collect();
        }
        // One run for the batch: a separator profile after each file splits
        // the output. `-j 1` keeps the output in file order.
        let mut c = self.command();
        c.arg("-N").arg("-j").arg("1");
        let mut args = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            c.arg(f).arg(self.separator(i)?);
            args.push(f.clone());
        }
        let done = match self.run(c, &args) {
            Ok(done) => done,
            Err(e) if e.is_fatal() => return Err(e),
            // Some file is broken, hangs or crashes the parser: ask one at a
            // time to attribute it.
            Err(_) => return files.iter().map(|f| self.names_one(f)).collect(),
        };
        let stdout = String::from_utf8_lossy(&done.stdout);
        let mut result = Vec::with_capacity(files.len());
        let mut current = Vec::new();
        for line in stdout.lines() {
            if let Some(n) = line.strip_prefix(SEPARATOR_PREFIX) {
                if n.parse::<usize>().ok() != Some(result.len()) {
                    return Err(ParserError::Output {
                        program: self.program.clone(),
                        message: format!("--names output out of order at {line}"),
                    });
                }
                result.push(Ok(std::mem::take(&mut current)));
            } else if !line.is_empty() {
                current.push(line.to_owned());
            }
        }
        if result.len() != files.len() {
            return Err(ParserError::Output {
                program: self.program.clone(),
                message: format!("--names answered for {} of {} files", result.len(), files.len()),
            });
        }
        Ok(result)
    }

    fn dump_batch(&self, files: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>, ParserError> {
        // One run for the batch, in file order, a separator profile after
        // each file to split the output where the entries name it.
        let mut c = self.command();
        c.arg("-S").arg("-j").arg("1");
        for (i, f) in files.iter().enumerate() {
            c.arg(f).arg(self.separator(i)?);
        }
        let done = match self.run(c, files) {
            Ok(done) => done,
            Err(e) if e.is_fatal() => return Err(e),
            Err(_) => return Ok(vec![None; files.len()]),
        };
        Ok(super::compiled::split_at_separators(
            &done.stdout,
            SEPARATOR_PREFIX,
            files.len(),
        ))
    }

    fn compile_batch(&self, files: &[PathBuf]) -> Result<(), ParserError> {
        let mut c = self.command();
        // Compiled as written, also where loads force complain mode (`-C`
        // skips the cache): the compile is what every bound is judged by,
        // and a forced mode is the load's.
        c.arg("-Q").arg("--write-cache").arg("--cache-loc").arg(&self.cache_dir);
        self.jobs_arg(&mut c);
        c.args(files);
        let outputs = self.outputs();
        if let Some((d, subdir)) = outputs {
            d.before_compile(subdir, files);
        }
        self.run(c, files)?;
        if let Some((d, subdir)) = outputs {
            d.after_compile(subdir, files);
        }
        Ok(())
    }

    fn load_batch(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        let mut c = Command::new(&self.program);
        c.arg("-r").arg("--write-cache").arg("--cache-loc").arg(&self.cache_dir);
        if opts.complain {
            c.arg("-C");
        }
        self.jobs_arg(&mut c);
        c.args(files);
        self.run(c, files).map(drop)
    }
}

/// Each call takes any number of files: past `ARG_BYTES` of arguments
/// they go to several runs, in order, and a failed run fails the call
/// (the runs before it stand, as files before a bad one in a single run).
impl Parser for ParserRunner {
    fn names(&self, files: &[PathBuf]) -> Result<Vec<NamesResult>, ParserError> {
        let mut out = Vec::with_capacity(files.len());
        for batch in arg_batches(files, self.separator_bytes(), ARG_BYTES) {
            out.extend(self.names_batch(batch)?);
        }
        Ok(out)
    }

    fn compile(&self, files: &[PathBuf], _opts: LoadOptions) -> Result<(), ParserError> {
        for batch in arg_batches(files, 0, ARG_BYTES) {
            self.compile_batch(batch)?;
        }
        Ok(())
    }

    fn leaves_policy(&self) -> bool {
        self.outputs().is_some()
    }

    fn compiled(&self, file: &Path) -> Option<Vec<u8>> {
        let (d, subdir) = self.outputs()?;
        d.compiled(subdir, file)
    }

    fn cached(&self, file: &Path) -> Option<Vec<u8>> {
        let (d, subdir) = self.outputs()?;
        d.cached(subdir, file)
    }

    fn dump(&self, files: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>, ParserError> {
        let mut out = Vec::with_capacity(files.len());
        for batch in arg_batches(files, self.separator_bytes(), ARG_BYTES) {
            out.extend(self.dump_batch(batch)?);
        }
        Ok(out)
    }

    fn load(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        let rest;
        let files = match self.direct(opts) {
            Some((d, subdir)) => {
                rest = d.load(subdir, files);
                if rest.is_empty() {
                    return Ok(());
                }
                &rest[..]
            }
            None => files,
        };
        for batch in arg_batches(files, 0, ARG_BYTES) {
            self.load_batch(batch, opts)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_file_list_goes_to_runs_within_the_argument_budget_in_order() {
        let files: Vec<PathBuf> = (0..30_000)
            .map(|i| PathBuf::from(format!("/etc/armord/profiles.d/custom.workload-{i:05}")))
            .collect();
        let batches = arg_batches(&files, 40, ARG_BYTES);
        assert!(batches.len() > 1, "{} files in one run", files.len());
        let again: Vec<&PathBuf> = batches.iter().flat_map(|b| b.iter()).collect();
        assert_eq!(again, files.iter().collect::<Vec<_>>(), "every file, once, in order");
        for b in &batches {
            let bytes: usize = b.iter().map(|f| f.as_os_str().len() + 1 + 8 + 40).sum();
            assert!(bytes <= ARG_BYTES, "{bytes} bytes in a run of {}", b.len());
        }
        // A few files: one run. A file longer than the budget: a run alone.
        assert_eq!(arg_batches(&files[..3], 0, ARG_BYTES).len(), 1);
        let huge = PathBuf::from("x".repeat(100));
        let odd = vec![files[0].clone(), huge, files[1].clone()];
        let b = arg_batches(&odd, 0, 80);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(arg_batches(&[], 0, ARG_BYTES).is_empty());
    }

    #[test]
    fn diagnostics_of_the_real_parser_formats() {
        let files = vec![PathBuf::from("/s/store/abc")];
        let d = parse_diagnostics(
            "Cache read/write disabled: interface file missing. (Kernel needs AppArmor 2.4 compatibility patch.)\n\
             AppArmor parser error for /s/store/abc in profile /s/store/abc at line 3: syntax error, unexpected TOK_ID, expecting TOK_MODE\n\
             AppArmor parser error for /s/store/abc in profile /etc/apparmor.d/abstractions/x at line 7: bad\n\
             AppArmor parser error, in /s/store/abc line 9: old style\n\
             Profile /s/store/abc something odd\n\
             totally unrelated\n",
            &files,
        );
        let lexer = parse_diagnostics(
            "AppArmor parser error for /s/store/abc in profile /s/store/abc at line 1: Lexer found unexpected character: '\n' (0xa) in state: SUB_ID\n",
            &files,
        );
        assert_eq!(lexer.len(), 1, "{lexer:?}");
        assert_eq!(
            lexer[0].message,
            "Lexer found unexpected character: '\n' (0xa) in state: SUB_ID"
        );
        assert_eq!(d.len(), 5, "{d:?}");
        assert_eq!(
            d[0].to_string(),
            "/s/store/abc:3: syntax error, unexpected TOK_ID, expecting TOK_MODE"
        );
        assert_eq!(
            d[1].to_string(),
            "/s/store/abc:7: in /etc/apparmor.d/abstractions/x: bad"
        );
        assert_eq!(d[2].line, Some(9));
        assert_eq!(d[3].file.as_deref(), Some(Path::new("/s/store/abc")));
        assert_eq!(d[4].file, None);
    }

    #[test]
    fn timeout_kills_and_reports() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("sleep 30");
        let start = std::time::Instant::now();
        let r = run_with_timeout(c, Duration::from_millis(200)).unwrap();
        assert!(r.is_none());
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn large_output_on_both_pipes_does_not_block() {
        // More than a pipe holds, on both streams: a runner that read one
        // pipe to its end before the other would hang here.
        for threaded in [false, true] {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; exit 4");
            let r = if threaded {
                c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
                run_threaded(c.spawn().unwrap(), Duration::from_secs(20))
            } else {
                run_with_timeout(c, Duration::from_secs(20))
            }
            .unwrap()
            .unwrap();
            assert_eq!(r.code, Some(4));
            let out = String::from_utf8(r.stdout).unwrap();
            let err = String::from_utf8(r.stderr).unwrap();
            assert_eq!(out.lines().count(), 3000, "threaded: {threaded}");
            assert_eq!(err.lines().count(), 3000, "threaded: {threaded}");
            assert_eq!(out.lines().last(), Some("out2999"));
            assert_eq!(err.lines().next(), Some("err0"));
        }
    }

    #[test]
    fn a_worker_left_holding_the_pipes_is_killed_at_the_timeout() {
        // The child exits at once; a process it forked keeps stdout open.
        let mut c = Command::new("sh");
        c.arg("-c").arg("sleep 30 & echo started");
        let start = std::time::Instant::now();
        let r = run_with_timeout(c, Duration::from_millis(300)).unwrap();
        assert!(r.is_none(), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn captures_output_and_status() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("echo out; echo err >&2; exit 3");
        let r = run_with_timeout(c, Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(r.code, Some(3));
        assert_eq!(r.stdout, b"out\n");
        assert_eq!(r.stderr, b"err\n");
    }
}
