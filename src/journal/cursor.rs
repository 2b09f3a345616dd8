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
    read_cursor_file(path).ok()?.0
}

/// A cursor file's content: the cursor, and the keys handled last.
type SavedCursor = (Option<String>, Vec<(String, AuditId)>);

/// The saved cursor and the keys handled last, for the follower. A file
/// that cannot be read or parsed is set aside (logged), and reading starts
/// as on a first run.
pub(super) fn load_cursor_file(path: &Path) -> SavedCursor {
    read_cursor_file(path).unwrap_or_else(|why| {
        let aside = crate::state::set_aside(path);
        log::warn!(
            "{}: damaged journal cursor: {why}; {aside}; reading starts afresh",
            crate::escape::path(path)
        );
        (None, Vec::new())
    })
}

/// The cursor file parsed (nothing when there is none), or what is wrong
/// with it.
fn read_cursor_file(path: &Path) -> Result<SavedCursor, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, Vec::new())),
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    let mut lines = text.lines();
    let cursor = lines.next().map(str::trim).filter(|s| !s.is_empty());
    let cursor = cursor.ok_or("no cursor on its first line")?.to_owned();
    let mut keys = Vec::new();
    for (i, line) in lines.enumerate() {
        let key = line
            .split_once(' ')
            .and_then(|(boot, id)| Some((boot.to_owned(), AuditId::parse(id)?)));
        keys.push(key.ok_or_else(|| format!("line {}: not `BOOT_ID AUDIT_ID`", i + 2))?);
    }
    Ok((Some(cursor), keys))
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
