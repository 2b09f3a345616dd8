//! `armorctl validate`: armord's checks, offline.

use super::*;

/// The checks armord applies, offline: the file rules of a source, the
/// configured prefix and mode, reserved and duplicate names, and the real
/// parser. Kernel ownership is not checked (it needs the running node).
pub(super) fn validate(cfg: &config::Config, files: &[PathBuf]) -> Result<i32, CliError> {
    let verdicts = crate::daemon::validate_files(cfg, files).map_err(|e| CliError::Other(e.to_string()))?;
    let mut bad = 0;
    for (file, problem) in verdicts {
        match problem {
            None => outln!("ok: {}", crate::escape::path(&file)),
            Some(p) => {
                bad += 1;
                outln!("error: {p}");
            }
        }
    }
    Ok(if bad > 0 { 2 } else { 0 })
}
