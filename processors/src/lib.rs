//! Runnel's processors: Kafka consumer groups that decode, enrich and batch events into the
//! sinks, exactly once in effect.
//!
//! At-least-once from Kafka becomes exactly-once in effect through the sinks' offset fences:
//! each sink knows the highest offset it stored per partition and skips what is at or below
//! it; Kafka commits follow the sinks and are only a hint of where to resume.

mod batch;
mod clicks;
mod config;
mod dedup;
mod dlq;
mod enrich;
mod error;
mod links;
mod metrics;
mod retry;

pub use clicks::run_clicks;
pub use config::{Pipeline, ProcessConfig};
pub use error::ProcessError;
pub use links::{RebuildReport, rebuild_links, run_links};

use std::future::Future;

/// Runs the configured pipelines side by side until `shutdown` completes, then drains them.
/// The first pipeline to fail stops the others.
pub async fn run(
    config: ProcessConfig,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProcessError> {
    let pipelines = config.pipelines()?;
    metrics::describe();
    let listener = tokio::net::TcpListener::bind(config.metrics_addr).await.map_err(|e| ProcessError::Invalid {
        variable: "RUNNEL_PROCESS_METRICS_ADDR",
        reason: format!("cannot listen on {}: {e}", config.metrics_addr),
    })?;
    tokio::spawn(metrics::serve(listener, prometheus));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let config = &config;
    let runs = pipelines.into_iter().map(|pipeline| {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let run: std::pin::Pin<Box<dyn Future<Output = Result<(), ProcessError>> + '_>> = match pipeline {
            Pipeline::Clicks => Box::pin(run_clicks(config, shutdown)),
            Pipeline::Links => Box::pin(run_links(config, shutdown)),
        };
        run
    });
    // Side by side on this task; the first to fail ends the others (their unstored batches are
    // read again after a restart, and the fences keep that exact).
    futures::future::try_join_all(runs).await.map(|_| ())
}
