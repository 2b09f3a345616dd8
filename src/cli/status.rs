//! `armorctl status`: state, counts, held removals and every problem.

use super::*;

pub(super) async fn status(to: &Endpoint) -> Result<i32, CliError> {
    let (_c, p) = proxy(to).await?;
    let state = p.state().await.map_err(|e| bus_error(e, to))?;
    let counts = p.counts().await.map_err(|e| bus_error(e, to))?;
    let (_, summary) = p.last_sync().await.map_err(|e| bus_error(e, to))?;
    let profiles = p.list_profiles().await.map_err(|e| bus_error(e, to))?;
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    outln!("state: {state}");
    outln!(
        "profiles: {} loaded, {} invalid, {} refused, {} deferred, {} sources unavailable",
        n("loaded"),
        n("invalid"),
        n("refused"),
        n("deferred"),
        n("unavailable")
    );
    outln!("last sync: {}", escape::text(&summary));
    let mut problems: Vec<&str> = profiles
        .iter()
        .filter(|p| !p.error.is_empty() && p.state != "held")
        .map(|p| p.error.as_str())
        .collect();
    problems.sort();
    problems.dedup();
    for p in profiles.iter().filter(|p| p.state == "held") {
        outln!("held: {}: {}", escape::text(&p.name), escape::text(&p.error));
    }
    if n("held") > 0 {
        outln!(
            "hint: {} removals are held as a mass removal; `armorctl sync --allow-mass-removal` removes them now",
            n("held")
        );
    }
    let mut trials: Vec<(String, String)> = p.trials().await.unwrap_or_default().into_iter().collect();
    trials.sort();
    for (name, t) in &trials {
        outln!("{}: {}", escape::text(name), escape::text(t));
    }
    // Warnings: they never change the exit code.
    let mut lints: Vec<(String, Vec<String>)> = p.lints().await.unwrap_or_default().into_iter().collect();
    lints.sort();
    for (_, lines) in &lints {
        for l in lines {
            outln!("warning: {}", escape::text(l));
        }
    }
    if let Ok((lost, since)) = p.denial_loss().await
        && lost > 0
    {
        outln!(
            "denials: {lost} audit records lost since {} (see armord's log for the cause)",
            super::denials::local_time(since / 1_000_000)
        );
    }
    for e in &problems {
        outln!("error: {}", escape::text(e));
    }
    Ok(if state == "ready" && problems.is_empty() { 0 } else { 2 })
}
