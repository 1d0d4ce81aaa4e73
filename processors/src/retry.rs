//! Retrying a sink operation: exponential backoff with jitter for retryable errors, at once
//! for permanent ones. The caller's loop does not advance meanwhile, so nothing is committed
//! past unstored data.

use std::future::Future;
use std::time::{Duration, Instant};

use metrics::counter;
use sinks::SinkError;

use crate::metrics::RETRIES_TOTAL;

/// Calls `op` until it succeeds or fails permanently.
pub(crate) async fn with_backoff<T, F, Fut>(
    pipeline: &'static str,
    sink: &'static str,
    max_backoff: Duration,
    op: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    with_backoff_until(pipeline, sink, Retrying { max_backoff, deadline: None, on_retry: &|| {} }, op).await
}

/// How a flush retries its sinks.
#[derive(Clone, Copy)]
pub(crate) struct Retrying<'a> {
    /// The longest pause between two attempts.
    pub(crate) max_backoff: Duration,
    /// After this, a retryable error is returned instead of retried.
    pub(crate) deadline: Option<Instant>,
    /// Called before each retry (the pipeline pauses its partitions).
    pub(crate) on_retry: &'a (dyn Fn() + Sync),
}

/// Calls `op` until it succeeds, fails permanently, or (with a deadline) still fails with a
/// retryable error once the deadline has passed; that error is returned.
pub(crate) async fn with_backoff_until<T, F, Fut>(
    pipeline: &'static str,
    sink: &'static str,
    retry: Retrying<'_>,
    mut op: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && retry.deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(error);
            }
            Err(error) if error.is_retryable() => {
                (retry.on_retry)();
                counter!(RETRIES_TOTAL, "pipeline" => pipeline, "sink" => sink).increment(1);
                let jittered = jittered(backoff);
                tracing::warn!(%error, pipeline, sink, backoff_ms = jittered.as_millis() as u64, "sink failed, retrying");
                tokio::time::sleep(jittered).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            Err(error) => return Err(error),
        }
    }
}

/// `backoff` scaled by a random factor in [0.5, 1): restarted processors do not retry in step.
pub(crate) fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + pseudo_random_unit() * 0.5)
}

fn pseudo_random_unit() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}
