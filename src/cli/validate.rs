//! `armorctl validate`: armord's checks, offline, and the lints.

use super::*;

/// The checks armord applies, offline: the file rules of a source, the
/// configured prefix and mode, reserved and duplicate names, and the real
/// parser. Kernel ownership is not checked (it needs the running node).
/// A file that passes is then linted against this host: warnings, which
/// never change the exit code.
pub(super) fn validate(cfg: &config::Config, files: &[PathBuf]) -> Result<i32, CliError> {
    let verdicts = crate::daemon::validate_files(cfg, files).map_err(|e| CliError::Other(e.to_string()))?;
    let host = crate::lint::Host::of(cfg);
    let forced = cfg.mode == config::ForcedMode::Complain;
    let mut bad = 0;
    for (file, problem) in verdicts {
        match problem {
            None => {
                outln!("ok: {}", crate::escape::path(&file));
                let Ok(text) = std::fs::read_to_string(&file) else {
                    continue;
                };
                let complain = forced || crate::trial::declared(&text);
                for l in crate::lint::file(&file, &text, complain, &host, &cfg.lint.off) {
                    let at = l.line.map(|n| format!(":{n}")).unwrap_or_default();
                    outln!(
                        "warning: {}{at}: {}",
                        crate::escape::path(&file),
                        escape::text(&l.to_string())
                    );
                }
            }
            Some(p) => {
                bad += 1;
                outln!("error: {p}");
            }
        }
    }
    Ok(if bad > 0 { 2 } else { 0 })
}
