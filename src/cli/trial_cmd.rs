//! `armorctl promote` and `armorctl trial`: an operator's word on a trial
//! (root only, over D-Bus; armord logs the caller).

use super::*;

/// Promote `name` (true) or put it back in trial (false).
pub(super) async fn set_trial(to: &Endpoint, name: &str, promote: bool) -> Result<i32, CliError> {
    let (_c, p) = proxy(to).await?;
    let said = if promote {
        p.promote(name).await
    } else {
        p.trial(name).await
    };
    match said {
        Ok(what) => {
            outln!("{}", escape::text(&what));
            Ok(0)
        }
        // A refusal armord explains (not in trial, never was): exit 2.
        Err(zbus::Error::MethodError(n, Some(why), _)) if n.as_str() == "org.freedesktop.DBus.Error.Failed" => {
            eprintln!("armorctl: {}", escape::text(&why));
            Ok(2)
        }
        Err(zbus::Error::FDO(e)) if matches!(*e, zbus::fdo::Error::Failed(_)) => {
            eprintln!("armorctl: {}", escape::text(&e.to_string()));
            Ok(2)
        }
        Err(e) => Err(bus_error(e, to)),
    }
}
