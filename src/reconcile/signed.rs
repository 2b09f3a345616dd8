//! Signed sources: a revision's manifest checked against the trusted keys,
//! and the serial of each source's last applied signed revision.

use super::*;
use crate::state::Serials;
use std::collections::BTreeSet;

impl Reconciler {
    /// Check a revision of a source that requires signatures: its manifest
    /// verifies against a trusted key, lists every file it names with the
    /// right hash, is not expired and does not roll back. Files it does not
    /// list are refused as unsigned.
    pub(super) fn check_signed(
        &mut self,
        src: &Path,
        snap: &mut source::SourceSnapshot,
    ) -> Result<(), crate::signing::SignError> {
        use crate::signing::{self, SignError};
        let (keys, errors) = signing::trusted_keys(&self.config.trusted_keys);
        for e in &errors {
            log::warn!("trusted_keys: {e}");
        }
        if keys.is_empty() {
            return Err(SignError::NoTrustedKeys);
        }
        let manifest = match &snap.manifest {
            None => return Err(SignError::NoManifest),
            Some(Err(why)) => return Err(SignError::Unreadable(signing::MANIFEST, why.clone())),
            Some(Ok(t)) => t,
        };
        let signature = match &snap.signature {
            None => return Err(SignError::NoSignature),
            Some(Err(why)) => return Err(SignError::Unreadable(signing::SIGNATURE, why.clone())),
            Some(Ok(t)) => t,
        };
        let m = signing::verify(manifest, signature, &keys)?;
        let files: BTreeMap<String, String> = snap
            .files
            .iter()
            .filter_map(|f| Some((f.path.file_name()?.to_string_lossy().into_owned(), f.sha256.to_string())))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let floor = self.serials.get(src).copied();
        if floor.is_none() && !self.accept_serial_next {
            self.floor_unknown(src, snap)?;
        }
        let unsigned = signing::check(&m, &files, floor, now)?;
        if !unsigned.is_empty() {
            let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut snap.files).into_iter().partition(|f| {
                f.path
                    .file_name()
                    .is_some_and(|n| unsigned.iter().any(|u| n.to_string_lossy() == *u))
            });
            snap.files = keep;
            for f in out {
                snap.refused.push(source::Refusal {
                    path: f.path.to_path_buf(),
                    reason: format!("unsigned: not listed in {}", signing::MANIFEST),
                    text: Some(f.content.to_string()),
                });
            }
        }
        self.pending_serials.insert(src.to_owned(), m.serial);
        Ok(())
    }

    /// A signed source whose last applied serial is unknown while armord
    /// owns profiles from it (the record was lost or damaged): a revision
    /// that would change what is loaded from it could be a rollback, and is
    /// refused until an operator accepts it; one that changes nothing sets
    /// the floor again.
    fn floor_unknown(&self, src: &Path, snap: &source::SourceSnapshot) -> Result<(), crate::signing::SignError> {
        let owned: BTreeSet<&str> = self
            .manifest
            .profiles
            .values()
            .filter(|o| *o.source == *src)
            .map(|o| o.sha256.as_str())
            .collect();
        if owned.is_empty() {
            return Ok(());
        }
        let revision: BTreeSet<&str> = snap.files.iter().map(|f| f.sha256.as_str()).collect();
        if owned == revision {
            return Ok(());
        }
        Err(crate::signing::SignError::FloorUnknown)
    }

    /// Keep the serial of each source's last applied signed revision, in
    /// the manifest (durable with it) and, for older releases, in their
    /// record (`signed-serials.json`).
    pub(super) fn save_serials(&mut self) -> Result<(), ApplyError> {
        if self.pending_serials.is_empty() {
            return Ok(());
        }
        for (src, serial) in std::mem::take(&mut self.pending_serials) {
            let e = self.serials.entry(src).or_insert(serial);
            *e = (*e).max(serial);
        }
        if self.manifest.serials == self.serials {
            return Ok(());
        }
        self.manifest.serials = self.serials.clone();
        self.state.save_manifest(&mut self.manifest)?;
        if let Err(e) = self.state.save_legacy_serials(&self.serials) {
            log::warn!("cannot save the signed serials (the manifest holds them): {e}");
        }
        Ok(())
    }
}

/// The serials at start: the manifest's, raised by what the record of
/// older releases (`signed-serials.json`) holds. A record that cannot be
/// read is set aside with a note; it never lowers a floor.
pub(super) fn load_serials(state: &StateDir, in_manifest: &Serials, notes: &mut Vec<String>) -> Serials {
    let mut serials = in_manifest.clone();
    match state.load_legacy_serials() {
        Ok(file) => {
            for (src, n) in file {
                let e = serials.entry(src).or_insert(0);
                *e = (*e).max(n);
            }
        }
        Err(e) => notes.push(format!(
            "{e}; {}. A signed source whose last serial is not in the manifest either is held: a revision that changes its profiles is refused until `armorctl sync --accept-signed-serial`",
            crate::state::set_aside(e.path())
        )),
    }
    serials
}
