//! The record of each signed source's last applied serial that older
//! releases kept in `signed-serials.json`. The manifest holds the serials
//! now; the record is still written (a downgrade reads it) and read at
//! start, where it can only raise a floor.

use super::{StateDir, StateError, atomic_write};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;

/// Each signed source's last applied serial.
pub type Serials = BTreeMap<PathBuf, u64>;

impl StateDir {
    /// The serials the record holds: none when there is no record; an
    /// error naming the file when it cannot be read or parsed.
    pub fn load_legacy_serials(&self) -> Result<Serials, StateError> {
        let path = self.legacy_signed_serials();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Serials::new()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
            path,
            what: "signed-serial record",
            reason: e.to_string(),
        })
    }

    /// Write the record (durably, as every state file).
    pub fn save_legacy_serials(&self, serials: &Serials) -> Result<(), StateError> {
        let path = self.legacy_signed_serials();
        let json = serde_json::to_vec_pretty(serials).map_err(|e| StateError::Damaged {
            path: path.clone(),
            what: "signed-serial record",
            reason: e.to_string(),
        })?;
        atomic_write(&path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_a_damaged_one_is_an_error_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::new(t.path().to_owned());
        assert!(s.load_legacy_serials().unwrap().is_empty());
        let serials: Serials = [(PathBuf::from("/src"), 7)].into();
        s.save_legacy_serials(&serials).unwrap();
        assert_eq!(s.load_legacy_serials().unwrap(), serials);
        std::fs::write(s.legacy_signed_serials(), "{\"/src\": ").unwrap();
        let e = s.load_legacy_serials().unwrap_err();
        assert_eq!(e.path(), s.legacy_signed_serials());
        assert!(
            e.to_string()
                .contains("signed-serials.json: damaged signed-serial record: "),
            "{e}"
        );
    }
}
