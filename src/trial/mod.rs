//! Trial → enforce: what each owned profile would have denied, learned as
//! rules (`learned`, with `generalise` for what differs between runs), and
//! the gate that promotes a profile in trial to enforce on this node
//! (`gate`).

pub mod book;
pub mod gate;
pub mod generalise;
pub mod learned;
pub mod lesson;
pub mod store;

/// The line that declares every profile of a file in trial: loaded in
/// complain mode until this node's gate promotes it. A comment, so the
/// parser ignores it, and part of the content, so it is versioned with the
/// profile in the repository and a commit that drops it ends the trial.
pub const MARK: &str = "# armord: trial";

/// Does the profile text declare trial? A line that is exactly the mark
/// (white space around it aside).
pub fn declared(text: &str) -> bool {
    text.lines().any(|l| l.trim() == MARK)
}

/// Now, in µs since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub use gate::{Evidence, Gate, Hold, Verdict, decide, spread_offset};
pub use learned::{Bounds, Learned, Observed};

#[cfg(test)]
mod tests {
    #[test]
    fn a_trial_is_declared_by_its_own_line() {
        assert!(super::declared("# armord: trial\nprofile a {}\n"));
        assert!(super::declared("profile a {\n  # armord: trial  \n}\n"));
        assert!(!super::declared("profile a {} # armord: trial\n"));
        assert!(!super::declared("# armord: trial please\nprofile a {}\n"));
    }
}
