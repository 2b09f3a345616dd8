//! `armorctl sync`: reconcile now.

use super::*;

pub(super) async fn sync(to: &Endpoint, allow_mass_removal: bool, accept_signed_serial: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(to).await?;
    let r = if allow_mass_removal || accept_signed_serial {
        let mut options = std::collections::HashMap::new();
        if allow_mass_removal {
            options.insert("allow-mass-removal", zbus::Variant::from(true));
        }
        if accept_signed_serial {
            options.insert("accept-signed-serial", zbus::Variant::from(true));
        }
        p.sync_with_options(options).await
    } else {
        p.sync().await
    }
    .map_err(|e| bus_error(e, to))?;
    outln!("{}", escape::text(&r.summary));
    for e in &r.problems {
        outln!("error: {}", escape::text(e));
    }
    Ok(if r.clean { 0 } else { 2 })
}
