//! Fault injection for tests: `ARMORD_FAILPOINT` names points where armord
//! dies by SIGKILL (`after-load`), fails with an I/O error
//! (`state-write=enospc`, `state-write=erofs`) or panics (`reconcile=panic`),
//! comma-separated; so does
//! the file `ARMORD_FAILPOINT_FILE` names. Unset (as in production) every
//! point is a no-op after one environment read.
//!
//! Points: `after-load` (the parser loaded, the manifest not yet written),
//! `store-write` (a store file half-written: temp file written, not renamed),
//! `after-relog` (a denial re-logged, the journal cursor not yet saved),
//! `between-members` (the simulated kernel holds some files of a batch, not
//! all), `between-removes` (one profile removed, the next not), `state-write`
//! (every write into the state directory), `reconcile` (the start of every
//! reconcile; `reconcile=panic` stands in for a bug there).

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Errno(i32),
    Panic,
}

type Points = Vec<(String, Action)>;

fn parse(spec: &str) -> Points {
    spec.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((name, "enospc")) => (name.to_owned(), Action::Errno(nix::libc::ENOSPC)),
            Some((name, "erofs")) => (name.to_owned(), Action::Errno(nix::libc::EROFS)),
            Some((name, "panic")) => (name.to_owned(), Action::Panic),
            Some((name, _)) => (name.to_owned(), Action::Errno(nix::libc::EIO)),
            None => (s.to_owned(), Action::Kill),
        })
        .collect()
}

/// The points from `ARMORD_FAILPOINT`, and the file `ARMORD_FAILPOINT_FILE`
/// names (read at every point, so a test can arm and disarm a running
/// daemon).
fn points() -> Points {
    static FIXED: OnceLock<(Points, Option<String>)> = OnceLock::new();
    let (fixed, file) = FIXED.get_or_init(|| {
        (
            parse(&std::env::var("ARMORD_FAILPOINT").unwrap_or_default()),
            std::env::var("ARMORD_FAILPOINT_FILE").ok(),
        )
    });
    let mut all = fixed.clone();
    if let Some(f) = file {
        all.extend(parse(&std::fs::read_to_string(f).unwrap_or_default()));
    }
    all
}

/// Pass point `name`: die here, or fail here, when the environment says so.
pub fn hit(name: &str) -> std::io::Result<()> {
    for (p, action) in &points() {
        if p == name {
            match action {
                Action::Kill => {
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                }
                Action::Errno(e) => return Err(std::io::Error::from_raw_os_error(*e)),
                Action::Panic => panic!("failpoint {name}"),
            }
        }
    }
    Ok(())
}
