//! Denials from the journal: a `journalctl --output=json` follower with a
//! cursor saved after the events it covers are handled, de-duplication of
//! records that arrive over both the audit and the kernel transport, and the
//! structured re-logging of each denial.
//!
//! - `entry`: one line of journalctl's JSON, and the rule for a field;
//! - `records`: what an entry is, and which records were handled already;
//! - `cursor`: the cursor file;
//! - `follower`: journalctl supervised, records handed on once;
//! - `relog`: the structured entry armord writes for each denial;
//! - `trust`: which entries armord itself wrote (`_`-prefixed fields only).

mod cursor;
mod entry;
mod follower;
mod records;
mod relog;
mod trust;

pub use cursor::{load_cursor, save_cursor};
pub use entry::{Entry, Relogged, field_string, parse_entry, parse_relogged};
pub use follower::{Follower, FollowerConfig, FollowerStats, Stopper};
pub use records::{Classified, Dedupe, Event, classify};
pub use relog::{Counters, MESSAGE_ID, RateLimit, SUPPRESSED_MESSAGE_ID, relog, relog_fields};
pub use trust::{Imitations, UNIT, Writer};

use std::path::PathBuf;

/// The field of armord's re-logged entries that holds the original record's
/// de-duplication key, `BOOT_ID AUDIT_ID`.
pub const AUDIT_KEY_FIELD: &str = "ARMORD_AUDIT_KEY";

/// Lines longer than this are not journal entries we can use: skipped.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot run {program}: {source}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Cursor { path: PathBuf, source: std::io::Error },
}

#[cfg(test)]
mod tests;
