//! Runnel's processors: Kafka consumer groups that decode, enrich and batch events into the
//! sinks, exactly once in effect.
//!
//! At-least-once from Kafka becomes exactly-once in effect through the sinks' offset fences:
//! each sink knows the highest offset it stored per partition and skips what is at or below
//! it; Kafka commits follow the sinks and are only a hint of where to resume.

mod batch;
mod clicks;
mod config;
mod enrich;
mod error;
mod metrics;
mod retry;

pub use clicks::run_clicks;
pub use config::{Pipeline, ProcessConfig};
pub use error::ProcessError;

use std::future::Future;

/// Runs the configured pipelines until `shutdown` completes, then drains them.
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
    // One pipeline today; each further pipeline gets its own task and consumer group.
    let mut shutdown = Some(shutdown);
    for pipeline in pipelines {
        match pipeline {
            Pipeline::Clicks => run_clicks(&config, shutdown.take().expect("one pipeline")).await?,
        }
    }
    Ok(())
}
