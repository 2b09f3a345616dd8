//! `armorctl list`: the profiles armord owns or refused.

use super::*;

pub(super) async fn list(to: &Endpoint, json: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(to).await?;
    let profiles = p.list_profiles().await.map_err(|e| bus_error(e, to))?;
    // An older armord has no trials to tell.
    let trials = p.trials().await.unwrap_or_default();
    let lints = p.lints().await.unwrap_or_default();
    for pr in &profiles {
        let trial = trials.get(&pr.name);
        let lint = lints.get(&pr.name).filter(|l| !l.is_empty());
        if json {
            let mut j = serde_json::to_value(pr).unwrap_or_default();
            if let (Some(t), Some(o)) = (trial, j.as_object_mut()) {
                o.insert("trial".into(), t.clone().into());
            }
            if let (Some(l), Some(o)) = (lint, j.as_object_mut()) {
                o.insert("lints".into(), l.clone().into());
            }
            outln!("{j}");
        } else {
            let name = if pr.name.is_empty() { "-" } else { &pr.name };
            let mode = if pr.mode.is_empty() { "-" } else { &pr.mode };
            // An owned profile whose file is now invalid: its last good
            // version is what the kernel runs. Say both.
            let state = if pr.state == "invalid" && !pr.sha256.is_empty() {
                "loaded (last good), file invalid"
            } else {
                pr.state.as_str()
            };
            out!(
                "{}\t{}\t{}\t{}",
                escape::text(name),
                escape::text(mode),
                escape::text(state),
                escape::text(&pr.file)
            );
            if !pr.error.is_empty() {
                out!("\t{}", escape::text(&pr.error));
            }
            if let Some(t) = trial {
                out!("\t{}", escape::text(t));
            }
            if let Some(l) = lint {
                out!("\t{} lint warnings (armorctl status)", l.len());
            }
            outln!();
        }
    }
    Ok(0)
}
