//! `armorctl suggest`: the rules that would allow a profile's denials.

use super::journal_read::{Tally, journal_query, journal_records};
use super::*;

/// The profile text armord loaded for `name`, from its store.
pub(super) fn loaded_profile_text(cfg: &config::Config, name: &str) -> Option<String> {
    let state = StateDir::new(cfg.state_dir.clone());
    let Loaded::Found(m) = state.load_manifest() else {
        return None;
    };
    let o = m.profiles.get(name)?;
    String::from_utf8(state.store_get(&o.sha256)?).ok()
}

pub(super) fn compiles(cfg: &config::Config, text: &str) -> Result<(), String> {
    let parser = crate::daemon::find_program(&cfg.parser.path).ok_or("apparmor_parser not found")?;
    let dir = tempfile_dir().map_err(|e| e.to_string())?;
    let file = dir.join("profile");
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    let mut c = Command::new(parser);
    c.args(["-Q", "-K"]);
    if !cfg.securityfs.join("features").exists()
        && let Some(f) = cfg.parser.features_file.clone().or_else(default_features_file)
    {
        c.arg("-M").arg(f);
    }
    let out = c.arg(&file).output().map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.starts_with("Cache"))
            .unwrap_or("rejected")
            .to_owned())
    }
}

pub(super) fn tempfile_dir() -> std::io::Result<PathBuf> {
    crate::state::private_temp_dir("armorctl")
}

pub(super) fn suggest_cmd(cfg: &config::Config, a: &SuggestArgs, writer: &Writer) -> Result<i32, CliError> {
    let input = a.input.open(&cfg.denials.journalctl)?;
    input.warn();
    let mut child = journal_query(cfg, &input, Some(&a.profile), a.since.as_deref(), false)?;
    let mut lines = Vec::new();
    let mut tally = Tally::default();
    let read_to_end = journal_records(&mut child, writer, &mut tally, |_, rec| {
        lines.push(rec);
        true
    });
    let failed = super::journal_read::finished(cfg, &mut child, read_to_end);
    tally.warn();
    failed?;
    // Rebuild records from their JSON form.
    let owned: Vec<Record<'static>> = lines.iter().filter_map(record_from_json).collect();
    if a.spec {
        let lines = crate::spec::suggest(&owned);
        if lines.is_empty() {
            eprintln!("armorctl: no denials of {} to suggest spec additions for", a.profile);
            return Ok(1);
        }
        outln!("# add to {}{}:", a.profile, crate::spec::SPEC_SUFFIX);
        for l in lines {
            outln!("{l}");
        }
        return Ok(input.exit_code());
    }
    let rules = suggest::rules(&owned);
    if rules.is_empty() {
        eprintln!("armorctl: no denials of {} to suggest rules for", a.profile);
        return Ok(1);
    }
    // Check each rule in a copy of the loaded profile (or a bare profile).
    let base = loaded_profile_text(cfg, &a.profile);
    let mut out = String::new();
    let mut failed = 0;
    for rule in &rules {
        let text = base
            .as_deref()
            .and_then(|t| suggest::insert_rules(t, &a.profile, std::slice::from_ref(rule)))
            .unwrap_or_else(|| format!("abi <abi/3.0>,\nprofile armorctl.check {{\n  {rule}\n}}\n"));
        match compiles(cfg, &text) {
            Ok(()) => out.push_str(&format!("  {rule}\n")),
            Err(e) => {
                failed += 1;
                out.push_str(&format!("  # {rule}  (does not compile: {e})\n"));
            }
        }
    }
    if base.is_none() {
        eprintln!(
            "armorctl: {} is not in armord's store; each rule was checked in a bare profile",
            a.profile
        );
    }
    out!("{out}");
    Ok(if failed > 0 { 2 } else { input.exit_code() })
}
