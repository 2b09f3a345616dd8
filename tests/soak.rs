//! Soak: the real daemon against the simulated kernel while a writer adds,
//! edits (in place and atomically, valid and invalid versions), renames and
//! deletes profiles in a plain source, publishes ConfigMap revisions and
//! git-sync worktrees (empty and missing ones among them), and the daemon
//! is killed with SIGKILL every few seconds. An independent checker samples
//! the simulated kernel every few milliseconds.
//!
//! It fails when a profile that was loaded disappears from the kernel while
//! a file that defines it (valid or not) was present, or had been absent for
//! less than the settling time (a short-lived empty revision, a rename); and
//! when the final kernel differs from the sources.
//!
//! `ARMORD_SOAK_SECS` sets how long the writer runs (default 30).

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The daemon's settling time for removals in this test.
const SETTLE: Duration = Duration::from_millis(400);
/// Slack for the time between a file operation and its record in the model.
const SLACK: Duration = Duration::from_millis(60);

/// A small deterministic generator: the run is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// When no file defining a name existed, per name: intervals (start, end).
#[derive(Default)]
struct Model {
    absent: BTreeMap<String, Vec<(Instant, Option<Instant>)>>,
}

impl Model {
    /// Call before the operation that removes the last file defining `name`.
    fn gone(&mut self, name: &str) {
        let v = self.absent.entry(name.to_owned()).or_default();
        if v.last().is_none_or(|(_, e)| e.is_some()) {
            v.push((Instant::now(), None));
        }
    }
    /// Call after the operation that makes a file defining `name` exist.
    fn back(&mut self, name: &str) {
        if let Some((_, e @ None)) = self.absent.entry(name.to_owned()).or_default().last_mut() {
            *e = Some(Instant::now());
        }
    }
    /// Was the removal of `name`, seen between `seen` (still loaded) and
    /// `now` (gone), allowed? Only if no file defined it from at least the
    /// settling time before the removal until the last sample that saw it.
    fn removal_allowed(&self, name: &str, seen: Instant, now: Instant) -> bool {
        self.absent.get(name).is_some_and(|v| {
            v.iter()
                .any(|(s, e)| *s + SETTLE <= now + SLACK && e.is_none_or(|e| e + SLACK >= seen))
        })
    }
}

fn text_of(name: &str, valid: bool) -> String {
    if valid {
        format!("profile {name} {{\n  /tmp/{name} rw,\n}}\n")
    } else {
        format!("profile {name} {{\n  /tmp/{name} rwzz,\n}}\n")
    }
}

fn atomic_write(path: &Path, text: &str) {
    let dir = path.parent().unwrap();
    let tmp = dir.join(format!(".tmp-{}", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn swap_link(link: &Path, target: &str) {
    let tmp = link.with_file_name(".link-tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// The plain source: file `k` (under any of its names) defines `soak.p<k>`.
struct Plain {
    dir: PathBuf,
    files: BTreeMap<u64, (String, bool)>,
    renames: u64,
}

impl Plain {
    fn op(&mut self, rng: &mut Rng, model: &Mutex<Model>) {
        let k = rng.below(12);
        let name = format!("soak.p{k}");
        match (self.files.get(&k).cloned(), rng.below(6)) {
            (None, _) => {
                let file = format!("p{k}");
                std::fs::write(self.dir.join(&file), text_of(&name, true)).unwrap();
                self.files.insert(k, (file, true));
                model.lock().unwrap().back(&name);
            }
            (Some((file, _)), 0) => {
                // In place: truncate and write, as many editors do.
                let valid = rng.below(3) > 0;
                std::fs::write(self.dir.join(&file), text_of(&name, valid)).unwrap();
                self.files.insert(k, (file, valid));
            }
            (Some((file, _)), 1) => {
                let valid = rng.below(3) > 0;
                atomic_write(&self.dir.join(&file), &text_of(&name, valid));
                self.files.insert(k, (file, valid));
            }
            (Some((file, valid)), 2 | 3) => {
                self.renames += 1;
                let to = format!("p{k}.r{}", self.renames);
                std::fs::rename(self.dir.join(&file), self.dir.join(&to)).unwrap();
                self.files.insert(k, (to, valid));
            }
            (Some((file, _)), _) => {
                model.lock().unwrap().gone(&name);
                std::fs::remove_file(self.dir.join(&file)).unwrap();
                self.files.remove(&k);
            }
        }
    }
}

/// A revision-swapping source (ConfigMap or git-sync): file `k` defines
/// `soak.<tag><k>`; each publish is a whole new revision.
struct Revisions {
    root: PathBuf,
    tag: &'static str,
    configmap: bool,
    current: BTreeMap<u64, bool>,
    serial: u64,
    /// The link is gone (git-sync) or points nowhere: a missing revision.
    missing: bool,
}

impl Revisions {
    fn name(&self, k: u64) -> String {
        format!("soak.{}{k}", self.tag)
    }

    fn publish(&mut self, next: BTreeMap<u64, bool>, model: &Mutex<Model>) {
        self.serial += 1;
        let rev = format!("rev{}", self.serial);
        let dir = if self.configmap {
            self.root.join(format!("..{rev}"))
        } else {
            self.root.join(".worktrees").join(&rev)
        };
        std::fs::create_dir_all(&dir).unwrap();
        for (k, valid) in &next {
            std::fs::write(dir.join(format!("{}{k}", self.tag)), text_of(&self.name(*k), *valid)).unwrap();
        }
        let goners: Vec<u64> = self.current.keys().filter(|k| !next.contains_key(k)).copied().collect();
        {
            let mut m = model.lock().unwrap();
            for k in &goners {
                m.gone(&self.name(*k));
            }
        }
        if self.configmap {
            swap_link(&self.root.join("..data"), &format!("..{rev}"));
            for k in next.keys() {
                let key = self.root.join(format!("{}{k}", self.tag));
                if std::fs::symlink_metadata(&key).is_err() {
                    symlink(format!("..data/{}{k}", self.tag), key).unwrap();
                }
            }
            for k in &goners {
                let _ = std::fs::remove_file(self.root.join(format!("{}{k}", self.tag)));
            }
        } else {
            swap_link(&self.root.join("current"), &format!(".worktrees/{rev}"));
        }
        self.missing = false;
        let mut m = model.lock().unwrap();
        for k in next.keys() {
            m.back(&self.name(*k));
        }
        drop(m);
        // Old revisions go, as the tools delete them (keep the previous one a
        // moment, as readers may still be in it).
        if self.serial > 2 {
            let old = format!("rev{}", self.serial - 2);
            let old = if self.configmap {
                self.root.join(format!("..{old}"))
            } else {
                self.root.join(".worktrees").join(old)
            };
            let _ = std::fs::remove_dir_all(old);
        }
        self.current = next;
    }

    fn op(&mut self, rng: &mut Rng, model: &Mutex<Model>) {
        let mut next = self.current.clone();
        match rng.below(10) {
            // A short-lived empty revision, then the previous one again.
            0 => {
                let keep = self.current.clone();
                self.publish(BTreeMap::new(), model);
                std::thread::sleep(Duration::from_millis(rng.below(80)));
                self.publish(keep, model);
                return;
            }
            // A missing revision (git-sync): the link is gone a moment.
            1 if !self.configmap => {
                let _ = std::fs::remove_file(self.root.join("current"));
                self.missing = true;
                std::thread::sleep(Duration::from_millis(rng.below(150)));
                let keep = self.current.clone();
                self.publish(keep, model);
                return;
            }
            2..=4 => {
                next.insert(rng.below(8), rng.below(4) > 0);
            }
            5 => {
                next.remove(&rng.below(8));
            }
            _ => {
                let k = rng.below(8);
                if let Some(v) = next.get_mut(&k) {
                    *v = !*v || rng.below(2) == 0;
                }
            }
        }
        self.publish(next, model);
    }
}

fn start(t: &Tree, cfg: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(t.path("armord.log"))
        .unwrap();
    Command::new(ARMORD)
        .args([
            "--simulate",
            "--bus",
            "none",
            "--verbose",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn kernel_names(path: &Path) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.rsplit_once(" (").map(|(n, _)| n.to_owned()))
            .collect(),
    )
}

#[test]
fn soak_no_good_profile_is_ever_lost() {
    let secs: u64 = std::env::var("ARMORD_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed = std::env::var("ARMORD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let t = Tree::new();
    let plain = t.path("plain");
    let cm = t.path("cm");
    let gs = t.path("gs");
    for d in [&plain, &cm, &gs] {
        std::fs::create_dir_all(d).unwrap();
    }
    let cfg = t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\ndebounce_ms = 30\ndebounce_max_ms = 200\nresync_interval_secs = 300\n\
             removal_settle_ms = {}\nmass_removal_percent = 50\nmass_removal_settle_secs = 2\n\
             [denials]\nenabled = false\n\
             [[source]]\npath = \"plain\"\n[[source]]\npath = \"cm\"\nlayout = \"configmap\"\n\
             [[source]]\npath = \"gs\"\nlayout = \"git-sync\"\nlink = \"current\"\n",
            SETTLE.as_millis()
        ),
    );
    let model = Arc::new(Mutex::new(Model::default()));
    let mut rng = Rng(seed);
    let mut p = Plain {
        dir: plain.clone(),
        files: BTreeMap::new(),
        renames: 0,
    };
    let mut c = Revisions {
        root: cm.clone(),
        tag: "c",
        configmap: true,
        current: BTreeMap::new(),
        serial: 0,
        missing: false,
    };
    let mut g = Revisions {
        root: gs.clone(),
        tag: "g",
        configmap: false,
        current: BTreeMap::new(),
        serial: 0,
        missing: false,
    };
    for _ in 0..8 {
        p.op(&mut rng, &model);
    }
    c.publish((0..5).map(|k| (k, true)).collect(), &model);
    g.publish((0..5).map(|k| (k, true)).collect(), &model);

    let kernel = t.path("state/simulate/profiles");
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicU64::new(0));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let checker = {
        let (stop, samples, violations, model, kernel) = (
            stop.clone(),
            samples.clone(),
            violations.clone(),
            model.clone(),
            kernel.clone(),
        );
        std::thread::spawn(move || {
            let mut last: Option<(Instant, BTreeSet<String>)> = None;
            while !stop.load(Ordering::SeqCst) {
                if let Some(now_set) = kernel_names(&kernel) {
                    let now = Instant::now();
                    samples.fetch_add(1, Ordering::Relaxed);
                    if let Some((seen, prev)) = &last {
                        let m = model.lock().unwrap();
                        for n in prev.difference(&now_set) {
                            if !m.removal_allowed(n, *seen, now) {
                                violations.lock().unwrap().push(format!(
                                    "{n} left the kernel {:?} after it was last seen, while a file defined it or had been gone less than {SETTLE:?}",
                                    now - *seen
                                ));
                            }
                        }
                    }
                    last = Some((now, now_set));
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };

    let mut daemon = KillOnDrop(start(&t, &cfg));
    let began = Instant::now();
    let mut next_kill = began + Duration::from_millis(1500 + rng.below(2000));
    let (mut ops, mut kills) = (0u64, 0u64);
    while began.elapsed() < Duration::from_secs(secs) {
        match rng.below(10) {
            0..=5 => p.op(&mut rng, &model),
            6 | 7 => c.op(&mut rng, &model),
            _ => g.op(&mut rng, &model),
        }
        ops += 1;
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        if Instant::now() >= next_kill {
            let _ = daemon.0.kill();
            let _ = daemon.0.wait();
            kills += 1;
            daemon = KillOnDrop(start(&t, &cfg));
            next_kill = Instant::now() + Duration::from_millis(1500 + rng.below(2500));
        }
    }

    // The final state: every file valid, in a version not seen before; the
    // kernel must come to hold exactly the profiles the sources define, and
    // the plain source's in their final version. With resync far off, this
    // is read by the names inotify reports, so a missed change shows here.
    let final_text = |k: u64| format!("{}# final\n", text_of(&format!("soak.p{k}"), true));
    for (k, (file, _)) in p.files.clone() {
        atomic_write(&plain.join(&file), &final_text(k));
    }
    let want_sha: BTreeMap<String, String> = p
        .files
        .keys()
        .map(|k| {
            (
                format!("soak.p{k}"),
                armord::source::sha256_hex(final_text(*k).as_bytes()),
            )
        })
        .collect();
    let owned_sha = || -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(t.path("state/state.json")).unwrap_or_default();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        m["profiles"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(n, _)| want_sha.contains_key(*n))
                    .map(|(n, v)| (n.clone(), v["sha256"].as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let cm_final: BTreeMap<u64, bool> = c.current.keys().map(|k| (*k, true)).collect();
    c.publish(cm_final, &model);
    let gs_final: BTreeMap<u64, bool> = g.current.keys().map(|k| (*k, true)).collect();
    g.publish(gs_final, &model);
    let want: BTreeSet<String> = p
        .files
        .keys()
        .map(|k| format!("soak.p{k}"))
        .chain(c.current.keys().map(|k| c.name(*k)))
        .chain(g.current.keys().map(|k| g.name(*k)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = BTreeSet::new();
    let mut got_sha = BTreeMap::new();
    while Instant::now() < deadline {
        got = kernel_names(&kernel).unwrap_or_default();
        got_sha = owned_sha();
        if got == want && got_sha == want_sha {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    checker.join().unwrap();
    drop(daemon);
    let violations = violations.lock().unwrap().clone();
    let samples = samples.load(Ordering::Relaxed);
    println!(
        "soak: {secs}s, seed {seed}, {ops} operations, {kills} kills, {samples} samples, {} violations",
        violations.len()
    );
    let log = t.read("armord.log");
    // Reads of only the names inotify reported (the rest from the cache):
    // the soak must exercise them, since the final check relies on them.
    let by_name = log.lines().filter(|l| l.contains("reported names")).count();
    // Of those, the looks of a carried reconcile (the rest of the source as
    // the last reconcile left it, its verdicts and all).
    let carried = log
        .lines()
        .filter(|l| l.contains("as the last reconcile left them"))
        .count();
    println!("soak: {by_name} reads by reported names, {carried} of them carried forward");
    let tail: String = log
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(violations.is_empty(), "{violations:#?}\nlog tail:\n{tail}");
    assert_eq!(
        got, want,
        "the final kernel differs from the sources\nlog tail:\n{tail}"
    );
    assert_eq!(
        got_sha, want_sha,
        "the plain source's final versions are not the ones loaded\nlog tail:\n{tail}"
    );
    assert!(samples > 100 && kills > 0 && ops > 100, "the soak did too little");
    assert!(carried > 0, "no change reconcile was carried forward");
}
