//! `armorctl sync`: reconcile now.

use super::*;

pub(super) async fn sync(bus: Bus, allow_mass_removal: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(bus).await?;
    let r = if allow_mass_removal {
        let options = std::collections::HashMap::from([("allow-mass-removal", zbus::Variant::from(true))]);
        p.sync_with_options(options).await
    } else {
        p.sync().await
    }
    .map_err(|e| bus_error(e, bus))?;
    println!("{}", escape::text(&r.summary));
    for e in &r.problems {
        println!("error: {}", escape::text(e));
    }
    Ok(if r.clean { 0 } else { 2 })
}
