//! `armorctl wait`: block until armord is ready.

use super::*;

pub(super) async fn wait(to: &Endpoint, timeout: std::time::Duration) -> Result<i32, CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<String>;
    loop {
        let state = async {
            let (_c, p) = proxy(to).await?;
            p.state().await.map_err(|e| bus_error(e, to))
        }
        .await;
        match state {
            Ok(s) if s == "ready" => return Ok(0),
            Ok(s) if s == "degraded" => {
                eprintln!("armorctl: armord is ready with problems (see armorctl status)");
                return Ok(0);
            }
            // No bus at all is not "not ready yet": it will not come by
            // waiting here.
            Err(e @ (CliError::PermissionDenied | CliError::NoBus(..))) => return Err(e),
            Ok(s) => last = Some(format!("armord is {s}")),
            Err(e) => last = Some(e.to_string()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Timeout(timeout, last.unwrap_or_else(|| "no answer".into())));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
