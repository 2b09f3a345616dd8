//! Signed sources: a revision's manifest checked against the trusted keys,
//! and the serial of each source's last applied signed revision.

use super::*;

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
            .filter_map(|f| Some((f.path.file_name()?.to_string_lossy().into_owned(), f.sha256.clone())))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let unsigned = signing::check(&m, &files, self.serials.get(src).copied(), now)?;
        if !unsigned.is_empty() {
            let (out, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut snap.files).into_iter().partition(|f| {
                f.path
                    .file_name()
                    .is_some_and(|n| unsigned.iter().any(|u| n.to_string_lossy() == *u))
            });
            snap.files = keep;
            for f in out {
                snap.refused.push(source::Refusal {
                    path: f.path,
                    reason: format!("unsigned: not listed in {}", signing::MANIFEST),
                    text: Some(f.content),
                });
            }
        }
        self.pending_serials.insert(src.to_owned(), m.serial);
        Ok(())
    }

    /// Keep the serial of each source's last applied signed revision.
    pub(super) fn save_serials(&mut self) {
        if self.pending_serials.is_empty() {
            return;
        }
        let mut changed = false;
        for (src, serial) in std::mem::take(&mut self.pending_serials) {
            let e = self.serials.entry(src).or_insert(0);
            if serial > *e {
                *e = serial;
                changed = true;
            }
        }
        if changed && let Ok(json) = serde_json::to_vec_pretty(&self.serials) {
            let path = self.config.state_dir.join(SERIALS_FILE);
            if let Err(e) = crate::state::atomic_write(&path, &json) {
                log::error!("cannot save the signed serials: {e}");
            }
        }
    }
}
