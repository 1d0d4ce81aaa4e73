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
mod dump;
mod enrich;
mod error;
mod links;
mod metrics;
mod orders;
mod pipeline;
mod retry;

pub use config::{Pipeline, ProcessConfig};
pub use dump::{DumpReport, DumpTopic, dump};
pub use error::ProcessError;
pub use links::{RebuildReport, rebuild_links, run_links};

use std::future::Future;
use tracing::Instrument;

use clicks::Clicks;
use orders::Orders;
use sha2::Digest;
use sinks::redis::Counters;

/// The clicks pipeline's enricher: GeoIP database opened, visitor secret agreed.
async fn enricher(config: &ProcessConfig, counters: &Counters) -> Result<enrich::Enricher, ProcessError> {
    let geo = match &config.geoip_db {
        Some(path) => {
            let reader = enrich::open_geoip(path)
                .map_err(|e| ProcessError::Invalid { variable: "RUNNEL_GEOIP_DB", reason: e.to_string() })?;
            tracing::info!(path = %path.display(), "GeoIP database opened");
            Some(reader)
        }
        None => None,
    };
    let secret = match &config.visitor_secret {
        Some(secret) => secret.clone(),
        None => {
            let candidate: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
            counters.shared_secret("visitor", &candidate).await?
        }
    };
    let key: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    Ok(enrich::Enricher::new(key, geo, config.store_ip))
}

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
    let counters = if pipelines.iter().any(|p| matches!(p, Pipeline::Clicks | Pipeline::Orders)) {
        config.kafka.check_reachable().await?;
        config.clickhouse.server_version().await?;
        let counters =
            Counters::new(config.redis.clone(), config.redis.connect().await?, config.counter_retention_days);
        counters.load().await?;
        Some(counters)
    } else {
        None
    };
    let mut enricher = match (&counters, pipelines.contains(&Pipeline::Clicks)) {
        (Some(counters), true) => Some(enricher(config, counters).await?),
        _ => None,
    };
    if pipelines.contains(&Pipeline::Clicks) && config.rollup_interval_secs > 0 {
        tokio::spawn(rollup(config.clickhouse.clone(), config.rollup_interval_secs, stopped.clone()));
    }
    let runs = pipelines.into_iter().map(|pipeline| {
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let run: std::pin::Pin<Box<dyn Future<Output = Result<(), ProcessError>> + '_>> = match pipeline {
            Pipeline::Clicks => {
                let clicks = Clicks::new(enricher.take().expect("made for the clicks pipeline"));
                Box::pin(pipeline::run(clicks, config, counters.clone().expect("connected"), shutdown))
            }
            Pipeline::Orders => Box::pin(pipeline::run(Orders, config, counters.clone().expect("connected"), shutdown)),
            Pipeline::Links => {
                Box::pin(run_links(config, shutdown).instrument(tracing::info_span!("pipeline", pipeline = "links")))
            }
        };
        run
    });
    // Side by side on this task; the first to fail ends the others (their unstored batches are
    // read again after a restart, and the fences keep that exact).
    futures::future::try_join_all(runs).await.map(|_| ())
}

/// Lists each closed day's leading links every `interval` seconds (the first time a few seconds
/// after start) until shutdown; a failure is logged and tried again at the next interval.
async fn rollup(
    clickhouse: sinks::clickhouse::ClickhouseConfig,
    interval: u64,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use sinks::reports::leaders;
    ::metrics::counter!(metrics::ROLLUP_DAYS_LISTED_TOTAL).absolute(0);
    ::metrics::counter!(metrics::ROLLUP_FAILURES_TOTAL).absolute(0);
    ::metrics::gauge!(metrics::ROLLUP_LAST_SUCCESS).set(0.0);
    let mut wait = std::time::Duration::from_secs(interval.min(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        wait = std::time::Duration::from_secs(interval);
        let started = std::time::Instant::now();
        let now = jiff::Timestamp::now();
        match sinks::reports::rollup(&clickhouse, now, leaders::DEFAULT_DAYS, |_| {}).await {
            Ok(sinks::reports::RolledUp { links: done, customers, link_days }) => {
                ::metrics::counter!(metrics::ROLLUP_DAYS_LISTED_TOTAL).increment(done.listed.len() as u64);
                ::metrics::gauge!(metrics::ROLLUP_LAST_SUCCESS).set(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                );
                let customers_listed = customers != sinks::reports::new_customers::Refreshed::Current;
                if !done.listed.is_empty()
                    || !done.changing.is_empty()
                    || done.first_hours.is_some()
                    || customers_listed
                    || !link_days.rolled.is_empty()
                    || !link_days.changing.is_empty()
                {
                    tracing::info!(
                        listed = done.listed.len(),
                        first_hours = ?done.first_hours.map(|(span, _)| span.hours),
                        current = done.current,
                        changing = done.changing.len(),
                        new_customers = ?customers,
                        link_days_rolled = link_days.rolled.len(),
                        link_days_changing = link_days.changing.len(),
                        seconds = started.elapsed().as_secs_f64(),
                        "rollup listed leading links (closed days, today's closed hours) and new customers, \
                         and rolled up each link's counts of closed days"
                    );
                }
            }
            Err(error) => {
                ::metrics::counter!(metrics::ROLLUP_FAILURES_TOTAL).increment(1);
                tracing::warn!(%error, "rollup failed; trying again at the next interval");
            }
        }
    }
}
