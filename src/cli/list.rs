//! `armorctl list`: the profiles armord owns or refused.

use super::*;

pub(super) async fn list(bus: Bus, json: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(bus).await?;
    let profiles = p.list_profiles().await.map_err(|e| bus_error(e, bus))?;
    for pr in &profiles {
        if json {
            println!("{}", serde_json::to_string(pr).unwrap_or_default());
        } else {
            let name = if pr.name.is_empty() { "-" } else { &pr.name };
            let mode = if pr.mode.is_empty() { "-" } else { &pr.mode };
            print!(
                "{}\t{}\t{}\t{}",
                escape::text(name),
                escape::text(mode),
                escape::text(&pr.state),
                escape::text(&pr.file)
            );
            if !pr.error.is_empty() {
                print!("\t{}", escape::text(&pr.error));
            }
            println!();
        }
    }
    Ok(0)
}
