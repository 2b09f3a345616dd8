//! The learned state's cost at a size a busy node could reach: PROFILES
//! profiles with RULES learned rules each (default 1,000 × 100), through
//! the store armord uses (`trial::store::Store`): the memory it holds (RSS
//! before and after, in this process), the time to learn every rule (each
//! new rule is appended to `learned.log` and fsynced), the log's size
//! before the first flush (the most it holds between flushes), the
//! snapshot's size, and the time a restart takes to read it back.
//!
//! Run: `cargo bench --bench learned` (`BENCH_PROFILES`, `BENCH_RULES`).

use armord::audit::suggest::One;
use armord::state::StateDir;
use armord::trial::learned::{At, Bounds};
use armord::trial::store::Store;
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let profiles = env("BENCH_PROFILES", 1000);
    let rules = env("BENCH_RULES", 100);
    // On the disk the build is on (a state directory is not on tmpfs).
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let dir = tempfile::tempdir_in(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    let state = StateDir::new(dir.path().to_owned());
    state.prepare().unwrap_or_else(|e| panic!("{e}"));
    let bounds = Bounds {
        max_rules: rules,
        max_profiles: profiles,
    };
    let rss0 = rss_kib();
    let mut store = Store::open(&state, bounds);
    let t = Instant::now();
    let mut serial = 0;
    for p in 0..profiles {
        let sha = format!("{p:064x}");
        let name = format!("custom.workload-{p:05}");
        for r in 0..rules {
            serial += 1;
            let one = if r % 10 == 9 {
                One::Rule(format!("capability cap_{r},"))
            } else {
                One::File(format!("/srv/app-{p}/data/dir-{r}/file"), ['r', 'w'].into())
            };
            let at = At {
                us: 1_700_000_000_000_000 + serial,
                serial,
            };
            store.observe(&name, &sha, &one, at).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let learn = t.elapsed();
    let rss1 = rss_kib();
    let log = size(&state.learned_log());
    let t = Instant::now();
    store.flush().unwrap_or_else(|e| panic!("{e}"));
    let flush = t.elapsed();
    let snapshot = size(&state.learned());
    drop(store);
    let t = Instant::now();
    let again = Store::open(&state, bounds);
    let reopen = t.elapsed();
    let kept: usize = again.learned.profiles.values().map(|p| p.current.len()).sum();
    assert_eq!(kept, profiles * rules, "every rule read back");
    let n = profiles * rules;
    println!("{profiles} profiles × {rules} rules = {n} learned rules");
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| memory held (RSS after − before) | {:.1} MiB ({:.0} bytes a rule) |",
        (rss1.saturating_sub(rss0)) as f64 / 1024.0,
        (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64
    );
    println!(
        "| learning every rule (one fsynced log line each) | {:.2} s ({:.0} µs a rule) |",
        learn.as_secs_f64(),
        learn.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "| learned.log before the first flush | {:.1} MiB |",
        log as f64 / 1048576.0
    );
    println!(
        "| learned.json (the snapshot) | {:.1} MiB ({:.0} bytes a rule) |",
        snapshot as f64 / 1048576.0,
        snapshot as f64 / n as f64
    );
    println!(
        "| flush (write the snapshot, drop the log) | {:.0} ms |",
        flush.as_secs_f64() * 1000.0
    );
    println!(
        "| a restart reading it back | {:.0} ms |",
        reopen.as_secs_f64() * 1000.0
    );
}
