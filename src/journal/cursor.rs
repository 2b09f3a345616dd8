//! The follower's cursor file: the cursor on the first line, then the keys
//! of recently handled records.

use super::JournalError;
use crate::audit::AuditId;
use std::collections::VecDeque;
use std::path::Path;

/// How many recently handled keys are saved with the cursor: a record that
/// arrives over the second transport after a restart is still known.
const SAVED_KEYS: usize = 1024;

/// The cursor file: the cursor on the first line, then recently handled
/// keys, one `BOOT_ID AUDIT_ID` per line.
pub fn load_cursor(path: &Path) -> Option<String> {
    load_cursor_file(path).0
}

pub(super) fn load_cursor_file(path: &Path) -> (Option<String>, Vec<(String, AuditId)>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let cursor = lines.next().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let keys = lines
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(b, id)| Some((b.to_owned(), AuditId::parse(id)?)))
        .collect();
    (cursor, keys)
}

pub fn save_cursor(path: &Path, cursor: &str, keys: &VecDeque<(String, AuditId)>) -> Result<(), JournalError> {
    let mut text = format!("{cursor}\n");
    let skip = keys.len().saturating_sub(SAVED_KEYS);
    for (boot, id) in keys.iter().skip(skip) {
        text.push_str(&format!("{boot} {id}\n"));
    }
    crate::state::atomic_write(path, text.as_bytes()).map_err(|e| JournalError::Cursor {
        path: path.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}
