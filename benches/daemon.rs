//! End-to-end daemon figures, printed as a table:
//!
//! - change latency: a file in a 1000-profile source is rewritten 200 times;
//!   the time from the write to the parser's first call for it and to the
//!   load call (armord's own overhead: the parser is a no-op stand-in that
//!   reports each call over a datagram socket; the fake kernel's `.replace`
//!   is a FIFO whose reader reports each policy written there, and a load
//!   through the parser reports itself as its `-r` call);
//! - the process floor: what the parser run of one change costs with no
//!   armord around it (the compile, through armord's runner), the part of
//!   the latency armord cannot remove while a change takes a parser process;
//! - steady state over 10 minutes with nothing changing: parser calls, profile
//!   files opened (strace), read syscalls, CPU, wakeups, resident memory;
//! - memory while 100,000 denials are replayed through a fake journalctl;
//! - with BENCH_RESTART=1, after the changes: the idle RSS, and a boot
//!   restore (kernel emptied; start → READY on the state and cache).
//!
//! Run: `cargo bench --bench daemon`. Sizes: BENCH_PROFILES (1000),
//! BENCH_CHANGES (200), BENCH_DEBOUNCES ("200,0"), BENCH_FLOOR_ROUNDS (300;
//! 0 skips), BENCH_IDLE_SECS (600; 0 skips), BENCH_RECORDS (100000; 0 skips).

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The no-op parser: log the call with a timestamp, answer `-N`, record
/// `-r` loads in the fake securityfs.
fn fake_parser() {
    let t = now_ns();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cache_loc = args
        .iter()
        .position(|a| a == "--cache-loc")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    if args.iter().any(|a| a == "--print-cache-dir") {
        if let Some(c) = cache_loc {
            println!("{}", c.join("bench.0").display());
        }
        return;
    }
    let log = std::env::var("BENCH_LOG").unwrap_or_default();
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = writeln!(f, "{t} {}", args.join(" "));
    }
    let mode = if args.iter().any(|a| a == "-N") {
        'N'
    } else if args.iter().any(|a| a == "-r") {
        'r'
    } else {
        'Q'
    };
    // The files of the call and the profile names in each.
    let mut files: Vec<(&str, Vec<String>)> = Vec::new();
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
            continue;
        }
        if matches!(a.as_str(), "-M" | "-L" | "--cache-loc" | "-j") {
            skip = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        let text = std::fs::read_to_string(a).unwrap_or_default();
        let names = text
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("profile ")?.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        files.push((a, names));
    }
    if mode == 'N' {
        for n in files.iter().flat_map(|(_, names)| names) {
            println!("{n}");
        }
    }
    // A compile leaves its policy in the cache, laid out as the parser lays
    // out a compiled set (armord reads the names and modes from it), its
    // last entry holding `sha=NAME;`, the file's name (its sha), for the
    // fake kernel to report.
    if mode == 'Q'
        && args.iter().any(|a| a == "--write-cache")
        && let Some(c) = cache_loc
    {
        let dir = c.join("bench.0");
        let _ = std::fs::create_dir_all(&dir);
        for (path, names) in &files {
            let Some(file) = std::path::Path::new(path).file_name() else {
                continue;
            };
            let mut policy = Vec::new();
            let sha = format!("sha={};", file.to_string_lossy());
            for (i, name) in names.iter().enumerate() {
                policy.extend_from_slice(b"\x04\x08\x00version\x00\x02\x20\x07\x00\x00");
                policy.extend_from_slice(b"\x04\x08\x00profile\x00\x07\x05");
                policy.extend_from_slice(&(name.len() as u16 + 1).to_le_bytes());
                policy.extend_from_slice(name.as_bytes());
                policy.push(0);
                // The last entry holds the sha, in a member armord does not read.
                if i + 1 == names.len() {
                    policy.extend_from_slice(b"\x04\x04\x00sha\x00\x05");
                    policy.extend_from_slice(&(sha.len() as u16 + 1).to_le_bytes());
                    policy.extend_from_slice(sha.as_bytes());
                    policy.push(0);
                }
                // The flags (hat, mode enforce, audit), then the ends.
                policy.extend_from_slice(b"\x04\x06\x00flags\x00\x07");
                for _ in 0..3 {
                    policy.extend_from_slice(b"\x02\x00\x00\x00\x00");
                }
                policy.extend_from_slice(b"\x08\x08");
            }
            let _ = std::fs::write(dir.join(file), policy);
        }
    }
    if mode == 'r' {
        let secfs = PathBuf::from(std::env::var("BENCH_SECFS").unwrap_or_default()).join("profiles");
        let mut set: std::collections::BTreeSet<String> = std::fs::read_to_string(&secfs)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        for n in files.iter().flat_map(|(_, names)| names) {
            set.insert(format!("{n} (enforce)"));
        }
        let text: String = set.into_iter().map(|l| l + "\n").collect();
        let _ = std::fs::write(&secfs, text);
        let rev = secfs.with_file_name("revision");
        let n: u64 = std::fs::read_to_string(&rev)
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0);
        let _ = std::fs::write(&rev, format!("{}\n", n + 1));
    }
    // Tell the bench when this call started and ended, so it need not poll
    // and can tell armord's time from the parser's.
    if let Some(sock) = std::env::var_os("BENCH_SOCK")
        && let Ok(s) = UnixDatagram::unbound()
    {
        let _ = s.send_to(format!("{t} {} {}", now_ns(), args.join(" ")).as_bytes(), sock);
    }
}

struct Run {
    dir: tempfile::TempDir,
    child: Child,
    /// Where the no-op parser reports each call.
    calls: UnixDatagram,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(profiles: usize, debounce_ms: u64) -> Run {
    start_with(profiles, debounce_ms, "", &[])
}

/// Start armord on a fresh source of `profiles` files, with `extra` added to
/// its configuration and `env` to its environment; wait for READY.
fn start_with(profiles: usize, debounce_ms: u64, extra: &str, env: &[(&str, PathBuf)]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |s: &str| dir.path().join(s);
    std::fs::create_dir_all(p("src")).unwrap();
    std::fs::create_dir_all(p("secfs/features/policy")).unwrap();
    // A kernel that loads a set of profiles in one write: armord writes
    // what a compile left in the cache to `.replace`, here a FIFO whose
    // reader reports each write as the load call. A FIFO cannot hold up the
    // writer until the profiles are listed, so the kernel lists every name
    // from the start, and armord takes them over at its first reconcile
    // (the changes measured replace those profiles, never add one).
    let listed: String = (0..profiles).map(|i| format!("custom.p{i:04} (enforce)\n")).collect();
    std::fs::write(p("secfs/profiles"), listed).unwrap();
    std::fs::write(p("secfs/features/policy/set_load"), "yes\n").unwrap();
    // The policy revision a kernel keeps (armord's drift poll reads it, and
    // the whole list only when it moved): bumped by each load.
    std::fs::write(p("secfs/revision"), "1\n").unwrap();
    nix::unistd::mkfifo(&p("secfs/.replace"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    report_replace_writes(&p("secfs/.replace"), &p("calls.sock"), &p("secfs/revision"));
    for i in 0..profiles {
        std::fs::write(
            p(&format!("src/p{i:04}")),
            format!("abi <abi/3.0>,\nprofile custom.p{i:04} {{\n  /etc/hostname r,\n}}\n"),
        )
        .unwrap();
    }
    // The parser is this binary itself (no shell in between), told by its
    // environment, which armord passes on, to act as the no-op parser.
    let me = std::env::current_exe().unwrap();
    let wrapper = p("apparmor_parser");
    std::os::unix::fs::symlink(&me, &wrapper).unwrap();
    std::fs::write(
        p("armord.toml"),
        format!(
            "state_dir = \"state\"\nsecurityfs = \"secfs\"\nproc = \"proc\"\ndebounce_ms = {debounce_ms}\n\
             debounce_max_ms = {}\ntakeover = true\nmax_profiles = {}\n[parser]\npath = \"{}\"\ncache_dir = \"cache\"\n[[source]]\npath = \"src\"\n{extra}",
            debounce_ms.max(1) * 10,
            // The default (10,000), raised for a larger bench.
            profiles.max(10_000),
            wrapper.display()
        ),
    )
    .unwrap();
    let calls = UnixDatagram::bind(p("calls.sock")).unwrap();
    let child = spawn_ready(dir.path(), env);
    Run { dir, child, calls }
}

/// Start armord on the tree in `dir` and wait for READY.
fn spawn_ready(dir: &std::path::Path, env: &[(&str, PathBuf)]) -> Child {
    let sock = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock);
    let notify = UnixDatagram::bind(&sock).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_armord"))
        .arg("--config")
        .arg(dir.join("armord.toml"))
        .args(["--bus", "none"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("NOTIFY_SOCKET", &sock)
        .envs(fake_parser_env(dir, &dir.join("secfs")))
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start armord");
    notify.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = notify.recv(&mut buf).expect("READY from armord");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    child
}

/// After the changes: armord's resident memory at rest, then a boot
/// restore: armord stopped, the kernel emptied as a reboot leaves it, and
/// armord started again on its state directory and compile cache; the
/// time from its start to READY (every profile loaded again). With the
/// kernel's one-write set load gone, each load is a no-op parser `-r`
/// run that lists the profiles in the fake kernel at once.
fn rest_and_restart(mut run: Run) -> (u64, f64) {
    // The blocking pool's threads retire after 10 s idle.
    std::thread::sleep(Duration::from_secs(12));
    let rss = rss_kib(run.child.id());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = run.child.wait();
    let secfs = run.dir.path().join("secfs");
    std::fs::write(secfs.join("profiles"), "").unwrap();
    std::fs::remove_file(secfs.join("features/policy/set_load")).unwrap();
    nix::unistd::sync();
    let t0 = std::time::Instant::now();
    run.child = spawn_ready(run.dir.path(), &[]);
    let secs = t0.elapsed().as_secs_f64();
    (rss, secs)
}

/// Read the fake kernel's `.replace` (a FIFO, held open for reading and
/// writing so that a writer never waits and the reader never sees its end)
/// and report each policy written there (by the `sha=NAME;` its last entry holds) as
/// a load call at the moment it is read: later than the write itself, so
/// the figures count the reader's wake-up against armord.
fn report_replace_writes(fifo: &std::path::Path, sock: &std::path::Path, revision: &std::path::Path) {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .expect("open the fake .replace");
    let sock = sock.to_owned();
    let revision = revision.to_owned();
    std::thread::spawn(move || {
        let mut rev = 1u64;
        // Never blocking: a full queue (the first reconcile writes every
        // profile) must not hold up the reader, nor armord's writes behind it.
        let out = UnixDatagram::unbound().expect("a datagram socket");
        let _ = out.set_nonblocking(true);
        let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
        loop {
            let n = match f.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let t = now_ns();
            rev += 1;
            let _ = std::fs::write(&revision, format!("{rev}\n"));
            buf.extend_from_slice(&chunk[..n]);
            while let Some(at) = buf.windows(4).position(|w| w == b"sha=") {
                let Some(end) = buf[at..].iter().position(|&b| b == b';') else {
                    break;
                };
                let sha = String::from_utf8_lossy(&buf[at + 4..at + end]).into_owned();
                let _ = out.send_to(format!("{t} {t} -r .replace {sha}").as_bytes(), &sock);
                buf.drain(..at + end + 1);
            }
        }
    });
}

/// What makes this binary the no-op parser, reporting to `dir/calls.sock`
/// and keeping its kernel in `secfs`. Whoever runs it also drops
/// `LD_LIBRARY_PATH`: `cargo bench` sets a search path of some twenty
/// directories for the toolchain's libraries, armord passes it on, and
/// every start of the no-op parser would look for its libraries in each one
/// before the system's (armord's own time, as the bench counts it). A
/// node's armord runs with no such path.
fn fake_parser_env(dir: &std::path::Path, secfs: &std::path::Path) -> [(&'static str, PathBuf); 4] {
    [
        ("ARMORD_BENCH_FAKE", PathBuf::from("1")),
        ("BENCH_LOG", dir.join("parser.log")),
        ("BENCH_SECFS", secfs.to_owned()),
        ("BENCH_SOCK", dir.join("calls.sock")),
    ]
}

/// One report of the no-op parser: when the call started and ended, and its
/// arguments.
fn call_report(msg: &str) -> Option<(u128, u128, &str)> {
    let mut it = msg.splitn(3, ' ');
    let start = it.next()?.parse().ok()?;
    let end = it.next()?.parse().ok()?;
    Some((start, end, it.next().unwrap_or("")))
}

/// For content `sha`: when the first parser call for it started, when the
/// load call (a write to `.replace`, or `-r`) started, and how long the
/// calls before the load ran.
fn next_calls(calls: &UnixDatagram, sha: &str) -> Option<(u128, u128, u128)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut first, mut inside) = (None, 0);
    loop {
        let n = calls.recv(&mut buf).ok()?;
        let msg = String::from_utf8_lossy(&buf[..n]);
        let (start, end, args) = call_report(&msg)?;
        if !args.contains(sha) {
            continue;
        }
        if args.split(' ').any(|a| a == "-r") {
            return Some((first.unwrap_or(start), start, inside));
        }
        if first.is_none() {
            first = Some(start);
        }
        inside += end - start;
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sees armord write its manifest (`state.json`, renamed into place in
/// the state directory): the end of a reconcile's loads and flushes.
struct ManifestWatch(inotify::Inotify);

impl ManifestWatch {
    fn new(state: &std::path::Path) -> Self {
        let ino = inotify::Inotify::init().expect("inotify");
        ino.watches()
            .add(state, inotify::WatchMask::MOVED_TO)
            .expect("watch the state directory");
        ManifestWatch(ino)
    }

    /// Whether a manifest write was seen since the last look.
    fn seen(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let mut seen = false;
        while let Ok(events) = self.0.read_events(&mut buf) {
            let mut any = false;
            for e in events {
                any = true;
                seen |= e.name.is_some_and(|n| n == "state.json");
            }
            if !any {
                break;
            }
        }
        seen
    }

    /// Wait, at most `limit`, for the next manifest write; false if none came.
    fn wait(&mut self, limit: Duration) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + limit;
        while !self.seen() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(left.as_millis() as u32).unwrap_or(PollTimeout::MAX),
            );
        }
        true
    }
}

/// Per change, in ms, sorted: write → first parser call, write → load
/// call, and the latter less the time spent inside the (no-op) parser calls
/// before the load: armord's own overhead.
fn latency(profiles: usize, changes: usize, debounce_ms: u64) -> ([Vec<f64>; 3], Run) {
    let run = start(profiles, debounce_ms);
    run.calls.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // Steady state: files written in the last two seconds are always read
    // again (their timestamps may not show the next write yet).
    std::thread::sleep(Duration::from_millis(2500));
    // The first reconcile's writes (a thousand stored copies and compiled
    // files) reach the disk now, not in a journal commit that one of the
    // measured changes' flushes would wait for.
    nix::unistd::sync();
    // Drop the reports of the first reconcile's calls.
    run.calls.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1 << 16];
    while run.calls.recv(&mut buf).is_ok() {}
    run.calls.set_nonblocking(false).unwrap();
    let mut manifest = ManifestWatch::new(&run.dir.path().join("state"));
    let mut out: [Vec<f64>; 3] = Default::default();
    for i in 0..changes {
        let k = (i * 7919) % profiles;
        let text = format!("abi <abi/3.0>,\nprofile custom.p{k:04} {{\n  /etc/hostname r,\n  # change {i}\n}}\n");
        let sha = sha256_hex(text.as_bytes());
        let file = run.dir.path().join(format!("src/p{k:04}"));
        let t0 = now_ns();
        // Forget the writes seen so far.
        manifest.seen();
        std::fs::write(&file, &text).unwrap();
        let (t1, t2, inside) = next_calls(&run.calls, &sha).unwrap_or_else(|| panic!("no parser call for change {i}"));
        out[0].push((t1 - t0) as f64 / 1e6);
        out[1].push((t2 - t0) as f64 / 1e6);
        out[2].push((t2 - t0 - inside) as f64 / 1e6);
        // Let the reconcile finish before the next change: its last
        // manifest write (after the loads and their flushes; a slow fsync
        // here has taken over 100 ms), then its store clean-up.
        if !manifest.wait(Duration::from_secs(5)) {
            eprintln!("change {i}: no manifest write seen within 5 s of its load");
        }
        std::thread::sleep(Duration::from_millis(debounce_ms + 10));
    }
    for v in &mut out {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    (out, run)
}

/// A table row of sorted times in ms: p50, p99 and the largest.
fn print_ms_row(label: &str, v: &[f64]) {
    println!(
        "| {label} | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        pct(v, 0.5),
        pct(v, 0.99),
        v[v.len() - 1]
    );
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// (CPU seconds, context switches) of a process, all threads.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0;
    let cpu = (f.get(11).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0))
        / tick;
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches") {
                    switches += l
                        .split_whitespace()
                        .last()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    (cpu, switches)
}

fn main() {
    if std::env::var_os("ARMORD_BENCH_FAKE").is_some() {
        fake_parser();
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let profiles = env("BENCH_PROFILES", 1000);
    let changes = env("BENCH_CHANGES", 200);
    let idle = env("BENCH_IDLE_SECS", 600) as u64;

    println!("| figure | value |");
    println!("|---|---|");
    let debounces: Vec<u64> = std::env::var("BENCH_DEBOUNCES")
        .unwrap_or_else(|_| "200,0".into())
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    for debounce in debounces {
        let ([first, load, own], run) = latency(profiles, changes, debounce);
        for (what, v) in [
            ("first parser call", first),
            ("load call (a write to .replace, or -r)", load),
            (
                "load call, less the time inside the no-op parser calls (armord's own)",
                own,
            ),
        ] {
            print_ms_row(
                &format!("write → {what}, {changes} changes, {profiles} profiles, debounce {debounce} ms"),
                &v,
            );
        }
        if env("BENCH_RESTART", 0) > 0 {
            let (rss, secs) = rest_and_restart(run);
            println!(
                "| idle RSS after the changes, {profiles} profiles | {:.1} MiB |",
                rss as f64 / 1024.0
            );
            println!(
                "| boot restore: start → READY, {profiles} profiles | {:.0} ms |",
                secs * 1000.0
            );
        }
    }

    let rounds = env("BENCH_FLOOR_ROUNDS", 300);
    if rounds > 0 {
        print_ms_row(
            &format!(
                "process floor, no armord: one run of this no-op parser through armord's runner, start to exit, less the time inside it, {rounds} rounds"
            ),
            &process_floor(rounds),
        );
    }

    if idle > 0 {
        steady(profiles, idle);
    }
    let records = env("BENCH_RECORDS", 100_000);
    if records > 0 {
        memory(profiles, records);
    }
}

/// What a change costs in processes alone, with nothing of armord's own work:
/// the compile run through armord's runner, from its start to its exit
/// seen, less the time inside it (as the latency figures count it; the
/// names are read from what it compiled, and the load is a write to
/// `.replace`). Per round, in ms, sorted.
fn process_floor(rounds: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |s: &str| dir.path().join(s);
    std::fs::write(p("profiles"), "").unwrap();
    std::fs::write(p("f"), "profile floor {\n}\n").unwrap();
    let calls = UnixDatagram::bind(p("calls.sock")).unwrap();
    calls.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let me = std::env::current_exe().unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(&me);
        c.args(args)
            .arg(p("f"))
            .envs(fake_parser_env(dir.path(), dir.path()))
            .env_remove("LD_LIBRARY_PATH");
        armord::apparmor::run_with_timeout(c, Duration::from_secs(30))
            .expect("run the no-op parser")
            .expect("no timeout");
    };
    let mut out = Vec::with_capacity(rounds);
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..rounds {
        let t0 = now_ns();
        run(&["-Q", "--write-cache"]);
        let done = now_ns();
        let n = calls.recv(&mut buf).expect("the no-op parser's report");
        let msg = String::from_utf8_lossy(&buf[..n]);
        let (start, end, _) = call_report(&msg).expect("a report: start, end, arguments");
        out.push((done - t0 - (end - start)) as f64 / 1e6);
        std::thread::sleep(Duration::from_millis(20));
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

/// armord with its denial follower on the fake journalctl replaying `journal`.
fn start_with_journal(profiles: usize, journal: &std::path::Path) -> Run {
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_journalctl");
    start_with(
        profiles,
        200,
        &format!("[denials]\njournalctl = \"{}\"\n", fake.display()),
        &[("FAKE_JOURNAL", journal.to_owned())],
    )
}

/// A field of /proc/PID/status or /proc/PID/io, as a number.
fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_field(pid, "status", "VmRSS")
}

/// Nothing changes for `secs`: count parser calls, read syscalls (all of
/// them, profile files or not), opens of profile files (strace, when
/// installed), CPU and wakeups; and the resident memory.
fn steady(profiles: usize, secs: u64) {
    let journal = tempfile::NamedTempFile::new().unwrap();
    let run = start_with_journal(profiles, journal.path());
    let pid = run.child.id();
    // Let the blocking pool's threads retire first.
    std::thread::sleep(Duration::from_secs(12));
    let log = run.dir.path().join("parser.log");
    let calls = || std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    let trace = run.dir.path().join("strace.out");
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,open,read,pread64,readv", "-o"])
        .arg(&trace)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    std::thread::sleep(Duration::from_secs(1));
    let calls0 = calls();
    let (c0, s0) = usage(pid);
    let (r0, b0) = (proc_field(pid, "io", "syscr"), proc_field(pid, "io", "rchar"));
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, s1) = usage(pid);
    let (r1, b1) = (proc_field(pid, "io", "syscr"), proc_field(pid, "io", "rchar"));
    let calls1 = calls();
    let rss = rss_kib(pid);
    let opens = strace.map(|mut st| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(st.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = st.wait();
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let src = run.dir.path().join("src");
        let store = run.dir.path().join("state/store");
        text.lines()
            .filter(|l| {
                l.contains("open") && (l.contains(src.to_str().unwrap()) || l.contains(store.to_str().unwrap()))
            })
            .count()
    });
    let mins = secs as f64 / 60.0;
    println!(
        "| steady {mins:.0} min, {profiles} profiles: parser calls | {} |",
        calls1 - calls0
    );
    println!(
        "| steady {mins:.0} min: profile files opened (strace) | {} |",
        opens
            .map(|n| n.to_string())
            .unwrap_or_else(|| "strace not installed".into())
    );
    println!(
        "| steady {mins:.0} min: read syscalls, bytes (/proc/PID/io, whole process) | {}, {} |",
        r1 - r0,
        b1 - b0
    );
    println!("| steady {mins:.0} min: CPU time | {:.2} s |", c1 - c0);
    println!(
        "| steady {mins:.0} min: context switches (wakeups), all threads | {} |",
        s1 - s0
    );
    println!("| idle RSS, {profiles} profiles | {:.1} MiB |", rss as f64 / 1024.0);
}

/// Replay `records` denials through the fake journalctl and watch the RSS.
fn memory(profiles: usize, records: usize) {
    let journal = tempfile::NamedTempFile::new().unwrap();
    {
        let mut w = std::io::BufWriter::new(journal.as_file());
        for i in 0..records {
            let p = i % profiles;
            writeln!(
                w,
                r#"{{"__CURSOR":"c{i}","_BOOT_ID":"b","_TRANSPORT":"kernel","MESSAGE":"audit: type=1400 audit(1700000000.{ms:03}:{i}): apparmor=\"DENIED\" operation=\"open\" class=\"file\" profile=\"custom.p{p:04}\" name=\"/var/lib/data/{i}\" pid={pid} comm=\"app\" requested_mask=\"r\" denied_mask=\"r\" fsuid=0 ouid=0"}}"#,
                ms = i % 1000,
                pid = 1000 + i % 30000,
            )
            .unwrap();
        }
    }
    let run = start_with_journal(profiles, journal.path());
    let pid = run.child.id();
    let cursor = run.dir.path().join("state/journal.cursor");
    let last = format!("c{}", records - 1);
    let mut samples: Vec<(usize, u64)> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&cursor).unwrap_or_default();
        let at = text
            .lines()
            .next()
            .and_then(|c| c.strip_prefix('c'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        samples.push((at, rss_kib(pid)));
        if text.lines().next() == Some(last.as_str()) || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let max_in = |lo: usize, hi: usize| {
        samples
            .iter()
            .filter(|(n, _)| *n >= lo && *n < hi)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    };
    let q = records / 4;
    println!(
        "| RSS while {records} denials are replayed (max per quarter) | {:.1} / {:.1} / {:.1} / {:.1} MiB |",
        max_in(0, q),
        max_in(q, 2 * q),
        max_in(2 * q, 3 * q),
        max_in(3 * q, records + 1)
    );
    println!(
        "| replay of {records} denials: records/s (re-logged, deduplicated, counted) | {:.0} |",
        records as f64 / secs
    );
}
