//! Bounded waits: every wait names what it waits for and ends with a timeout error.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Result};

/// Calls `check` every `interval` until it returns `Some`, an error, or `timeout` passes.
pub async fn poll_until<T, F, Fut>(waiting_for: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                waiting_for: waiting_for.to_owned(),
                after: timeout,
            });
        }
        tracing::debug!(waiting_for, elapsed_ms = started.elapsed().as_millis() as u64, "still waiting");
        tokio::time::sleep(interval.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}
