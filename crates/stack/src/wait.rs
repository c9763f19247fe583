//! Waiting is always condition polling against a deadline, never a bare
//! sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll interval of every wait.
pub const POLL_INTERVAL: Duration = Duration::from_millis(75);

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Ok` or `timeout`
/// passes; on timeout returns the last `Err` (a description of the last
/// observed state).
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`poll_until`] but panics on timeout with `what`, the last observed
/// state and `context` (e.g. where the service logs are).
pub async fn eventually<T, F, Fut>(what: &str, context: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match poll_until(timeout, check).await {
        Ok(v) => v,
        Err(last) => {
            panic!("timed out after {timeout:?} waiting for {what}\nlast seen: {last}\n{context}")
        }
    }
}
