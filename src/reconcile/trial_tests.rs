//! The promotion gate through the reconciler, as a property over random
//! timelines: versions written (in trial or not), records learned,
//! processes confined, audit losses, kill -9 restarts, the clock moving
//! and the gate's ticks. An independent model of what each trial has been
//! through says when a promotion is allowed, and when one is due.

use super::tests::Fixture;
use super::*;
use crate::audit::suggest::One;
use crate::trial::learned::{At, Bounds, Learned};
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::BTreeSet;

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(1_000_000_000_000_000) };
}

fn clock() -> u64 {
    NOW.with(Cell::get)
}

const MIN: u64 = 60_000_000;
const NAME: &str = "custom.t";

#[derive(Debug, Clone)]
enum Ev {
    /// The file's version `v`, declared in trial or not.
    Write(u8, bool),
    /// A process runs under the profile, and exits.
    Confine,
    /// A record of something the loaded version would deny.
    Record,
    /// Audit records lost.
    Loss,
    /// The clock moves by this many quarters of `min_trial`.
    Advance(u8),
    /// kill -9 and a start again (the kernel keeps its policy).
    Restart,
    /// The gate's tick.
    Tick,
}

fn arb_ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => (0u8..3, any::<bool>()).prop_map(|(v, t)| Ev::Write(v, t)),
        2 => Just(Ev::Confine),
        1 => Just(Ev::Record),
        1 => Just(Ev::Loss),
        4 => (0u8..6).prop_map(Ev::Advance),
        1 => Just(Ev::Restart),
        4 => Just(Ev::Tick),
    ]
}

/// The current trial, as the model saw it.
#[derive(Debug, Clone)]
struct Epoch {
    version: u8,
    since: u64,
    confined: bool,
    learned: bool,
    lossy: bool,
    promoted: bool,
}

fn mode(f: &Fixture) -> Option<crate::apparmor::Mode> {
    f.kernel().get(NAME).cloned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_gate_promotes_exactly_when_every_condition_holds(
        // Most timelines start with a trial: it is what they are about.
        first in prop_oneof![4 => Just(Ev::Write(0, true)), 1 => arb_ev()],
        rest in proptest::collection::vec(arb_ev(), 1..24),
        spread in proptest::bool::weighted(0.75),
    ) {
        use crate::apparmor::Mode;
        let evs: Vec<Ev> = std::iter::once(first).chain(rest).collect();
        NOW.with(|n| n.set(1_000_000_000_000_000));
        let f = Fixture::new();
        let mut c = f.config();
        c.trial.min_trial = Duration::from_micros(MIN);
        let id = f.dir.path().join("machine-id");
        std::fs::write(&id, "0123456789abcdef0123456789abcdef\n").unwrap();
        c.trial.machine_id = id;
        if spread {
            c.trial.fleet_spread = Duration::from_micros(MIN);
        }
        let open = |c: &Config| {
            let mut r = f.open_with(c.clone());
            r.clock = clock;
            r
        };
        let mut r = open(&c);
        r.reconcile().unwrap();
        let bounds = Bounds { max_rules: 64, max_profiles: 8 };
        let mut learned = Learned::default();
        // What the model knows.
        let mut file: Option<(u8, bool)> = None;
        let mut epoch: Option<Epoch> = None;
        // A version that learned something, ever.
        let mut ever_learned: BTreeSet<u8> = BTreeSet::new();
        // May a trial version load in complain mode? Not over a version
        // enforced by other means than a promotion.
        let mut may_trial = true;
        let mut pid = 100;
        let mut rule = 0;
        for (i, ev) in evs.iter().enumerate() {
            let now = clock();
            match *ev {
                Ev::Write(v, trial) => {
                    let mark = if trial { "# armord: trial\n" } else { "" };
                    f.write("t", &format!("{mark}profile {NAME} {{\n  # v{v}\n}}\n"));
                    r.reconcile().unwrap();
                    let same = file == Some((v, trial));
                    file = Some((v, trial));
                    if !trial {
                        epoch = None;
                        may_trial = false;
                        prop_assert_eq!(mode(&f), Some(Mode::Enforce), "step {}: {:?}", i, evs);
                    } else if !may_trial {
                        prop_assert_eq!(mode(&f), Some(Mode::Enforce), "step {}: a trial weakened an enforced version: {:?}", i, evs);
                    } else if !same {
                        epoch = Some(Epoch { version: v, since: now, confined: false, learned: false, lossy: false, promoted: false });
                    }
                    if let Some(e) = &epoch {
                        let want = if e.promoted { Mode::Enforce } else { Mode::Complain };
                        prop_assert_eq!(mode(&f), Some(want), "step {}: {:?}", i, evs);
                    }
                    let sha = r.manifest.profiles[NAME].sha256.clone();
                    learned.version_loaded(NAME, &sha);
                }
                Ev::Confine => {
                    if let Some(m) = mode(&f) {
                        pid += 1;
                        let dir = f.dir.path().join(format!("proc/{pid}/attr"));
                        std::fs::create_dir_all(&dir).unwrap();
                        std::fs::write(dir.join("current"), format!("{NAME} ({m})\n")).unwrap();
                        let confined = r.kernel.confined().unwrap();
                        r.trial_evidence(&confined, 0).unwrap();
                        std::fs::remove_dir_all(f.dir.path().join(format!("proc/{pid}"))).unwrap();
                        if let Some(e) = epoch.as_mut().filter(|e| !e.promoted) {
                            e.confined = true;
                        }
                    }
                }
                Ev::Record => {
                    if let Some(o) = r.manifest.profiles.get(NAME) {
                        rule += 1;
                        let one = One::File(format!("/etc/x{rule}"), ['r'].into());
                        learned.observe(NAME, &o.sha256, &one, At::us(now), bounds);
                        if let Some(e) = epoch.as_mut() {
                            e.learned |= !e.promoted;
                            ever_learned.insert(e.version);
                        } else if let Some((v, _)) = file {
                            ever_learned.insert(v);
                        }
                    }
                }
                Ev::Loss => {
                    r.trial_evidence(&BTreeMap::new(), 3).unwrap();
                    if let Some(e) = epoch.as_mut().filter(|e| !e.promoted) {
                        e.lossy = true;
                    }
                }
                Ev::Advance(quarters) => NOW.with(|n| n.set(now + u64::from(quarters) * MIN / 4)),
                Ev::Restart => {
                    drop(r);
                    r = open(&c);
                    r.reconcile().unwrap();
                }
                Ev::Tick => {
                    let (promoted, _) = r.run_gate(|n, s| learned.pending(n, s)).unwrap();
                    let due = epoch.as_ref().filter(|e| !e.promoted).map(|e| {
                        let sha = &r.manifest.profiles[NAME].sha256;
                        let gate = r.gate_of(NAME, sha);
                        let turn = e.since + MIN + u64::try_from(gate.offset.as_micros()).unwrap();
                        (now >= turn, e.confined, !e.learned, !e.lossy, !ever_learned.contains(&e.version))
                    });
                    if !promoted.is_empty() {
                        let Some((time, confined, quiet, whole, _)) = due else {
                            return Err(TestCaseError::fail(format!("step {i}: promoted with no trial running: {evs:?}")));
                        };
                        prop_assert!(time, "step {}: promoted before min_trial and the spread: {:?}", i, evs);
                        prop_assert!(confined, "step {}: promoted with nothing confined: {:?}", i, evs);
                        prop_assert!(quiet, "step {}: promoted with a rule learned: {:?}", i, evs);
                        prop_assert!(whole, "step {}: promoted during an audit loss: {:?}", i, evs);
                        r.reconcile().unwrap();
                        prop_assert_eq!(mode(&f), Some(Mode::Enforce), "step {}: {:?}", i, evs);
                        if let Some(e) = epoch.as_mut() {
                            e.promoted = true;
                        }
                    } else if let Some((true, true, true, true, true)) = due {
                        return Err(TestCaseError::fail(format!("step {i}: every condition held and the gate did not open: {evs:?}")));
                    }
                }
            }
            // A promoted version stays enforced, across restarts.
            if epoch.as_ref().is_some_and(|e| e.promoted) {
                prop_assert_eq!(mode(&f), Some(Mode::Enforce), "step {}: {:?}", i, evs);
            }
        }
    }
}
