//! `armorctl sign` and `armorctl verify`: signed revisions.

use super::*;
use crate::signing;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn sign(
    dir: &std::path::Path,
    key: &std::path::Path,
    serial: Option<u64>,
    expires: Option<std::time::Duration>,
) -> Result<i32, CliError> {
    let serial = serial.unwrap_or_else(now);
    let expires = expires.map(|d| now() + d.as_secs());
    match signing::sign_dir(dir, key, serial, expires) {
        Ok(m) => {
            outln!(
                "signed {} files of {} with serial {serial}{}",
                m.files.len(),
                escape::path(dir),
                expires.map(|e| format!(", expiring at {e}")).unwrap_or_default()
            );
            Ok(0)
        }
        Err(e) => Err(CliError::Other(e.to_string())),
    }
}

pub(super) fn verify(cfg: &config::Config, dir: &std::path::Path) -> Result<i32, CliError> {
    let (keys, errors) = signing::trusted_keys(&cfg.trusted_keys);
    for e in &errors {
        eprintln!("armorctl: trusted_keys: {e}");
    }
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| CliError::Io(p, e))
    };
    let verdict = (|| {
        if keys.is_empty() {
            return Err(signing::SignError::NoTrustedKeys.to_string());
        }
        let manifest = read(signing::MANIFEST).map_err(|e| e.to_string())?;
        let signature = read(signing::SIGNATURE).map_err(|e| e.to_string())?;
        let m = signing::verify(&manifest, &signature, &keys).map_err(|e| e.to_string())?;
        let files = signing::revision_files(dir, cfg.max_file_bytes).map_err(|e| e.to_string())?;
        let unsigned = signing::check(&m, &files, None, now()).map_err(|e| e.to_string())?;
        Ok((m, unsigned))
    })();
    match verdict {
        Ok((m, unsigned)) => {
            outln!(
                "ok: {} files signed, serial {}{}",
                m.files.len(),
                m.serial,
                m.expires.map(|e| format!(", expires at {e}")).unwrap_or_default()
            );
            for u in &unsigned {
                outln!("unsigned: {} (not listed; armord refuses it)", escape::text(u));
            }
            Ok(if unsigned.is_empty() { 0 } else { 2 })
        }
        Err(why) => {
            outln!("refused: {}", escape::text(&why));
            Ok(2)
        }
    }
}
