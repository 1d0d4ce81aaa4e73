//! Builds the edge's state and router, serves until the shutdown signal, then flushes the
//! producer within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use events::EventIdGenerator;
use metrics::{counter, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use sinks::clickhouse::ClickhouseConfig;
use sinks::redis::LinkIndex;
use tokio::net::TcpListener;

use crate::cache::LinkResolver;
use crate::metrics::{REQUEST_DURATION_SECONDS, REQUESTS_TOTAL, describe};
use crate::producer::Producers;
use crate::{EdgeConfig, EdgeError, routes};

/// Everything a request handler needs.
pub struct AppState {
    pub(crate) links: LinkResolver,
    pub(crate) producers: Producers,
    pub(crate) ids: EventIdGenerator,
    pub(crate) cache_control: HeaderValue,
    pub(crate) public_url: String,
    pub(crate) clickhouse: ClickhouseConfig,
    pub(crate) prometheus: PrometheusHandle,
}

impl AppState {
    /// Connects to Redis and Kafka (failing with a message naming the one that does not
    /// answer) and builds the producers. ClickHouse is only needed by the stats route and is
    /// not required at start.
    pub async fn build(config: &EdgeConfig, prometheus: PrometheusHandle) -> Result<Self, EdgeError> {
        config.validate()?;
        let conn = config.redis.connect().await?;
        config.kafka.check_reachable().await?;
        let index = LinkIndex::new(config.redis.clone(), conn);
        Ok(Self {
            links: LinkResolver::new(
                index,
                config.link_cache_capacity,
                Duration::from_millis(config.link_cache_ttl_ms),
            ),
            producers: Producers::new(config)?,
            ids: EventIdGenerator::new(config.worker()),
            cache_control: HeaderValue::from_str(&config.redirect_cache_control).expect("validated"),
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.addr))
                .trim_end_matches('/')
                .to_string(),
            clickhouse: config.clickhouse.clone(),
            prometheus,
        })
    }
}

/// The edge's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/api/links", post(routes::create_link))
        .route("/api/links/{code}/stats", get(routes::link_stats))
        // `get` also answers HEAD; the handler records the method in the click event.
        .route("/{code}", get(routes::redirect))
        .fallback(routes::fallback)
        .layer(middleware::from_fn(track))
        .with_state(state)
}

/// Counts every request by route template and status class, and times it.
async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    histogram!(REQUEST_DURATION_SECONDS, "route" => route.clone()).record(started.elapsed().as_secs_f64());
    counter!(REQUESTS_TOTAL, "route" => route, "status_class" => class).increment(1);
    response
}

/// Serves the edge on `listener` until `shutdown` completes, then stops accepting, finishes
/// in-flight requests and waits (bounded) for Kafka to acknowledge what was produced.
pub async fn run(
    listener: TcpListener,
    config: EdgeConfig,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EdgeError> {
    describe();
    let state = Arc::new(AppState::build(&config, prometheus).await?);
    let app = router(Arc::clone(&state));
    tracing::info!(addr = %listener.local_addr()?, "edge serving");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;

    let in_flight = state.producers.in_flight();
    tracing::info!(in_flight, "edge stopped accepting; flushing click events");
    let flush_timeout = Duration::from_millis(config.shutdown_flush_ms);
    let flushed =
        tokio::task::spawn_blocking(move || state.producers.flush(flush_timeout)).await.expect("flush does not panic");
    if let Err(error) = flushed {
        tracing::error!(%error, "click events still unacknowledged at shutdown");
    }
    Ok(())
}
