//! `armorctl wait`: block until armord is ready.

use super::*;

pub(super) async fn wait(bus: Bus, timeout: std::time::Duration) -> Result<i32, CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let state = async {
            let (_c, p) = proxy(bus).await?;
            p.state().await.map_err(|e| bus_error(e, bus))
        }
        .await;
        match state {
            Ok(s) if s == "ready" => return Ok(0),
            Ok(s) if s == "degraded" => {
                eprintln!("armorctl: armord is ready with problems (see armorctl status)");
                return Ok(0);
            }
            Err(CliError::PermissionDenied) => return Err(CliError::PermissionDenied),
            Ok(s) => last = Some(s),
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(s) = last {
                eprintln!("armorctl: armord is {s}");
            }
            return Err(CliError::Timeout(timeout));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
