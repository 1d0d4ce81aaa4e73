//! Builds the edge's state and router, serves until the shutdown signal, then flushes the
//! producer within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use events::EventIdGenerator;
use futures::FutureExt;
use ipnet::IpNet;
use metrics_exporter_prometheus::PrometheusHandle;
use sinks::clickhouse::ClickhouseConfig;
use sinks::redis::LinkIndex;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::auth::ApiKeys;
use crate::cache::LinkResolver;
use crate::limits::Limits;
use crate::metrics::{RedirectCounters, RouteMetrics, RouteMetricsCache, describe};
use crate::producer::Producers;
use crate::{ApiError, EdgeConfig, EdgeError, health, links, orders, redirect, stats};

/// Longest request path served; longer ones answer 414.
const MAX_PATH_BYTES: usize = 2048;

/// The redirect's route template (its metrics' `route` label).
pub(crate) const REDIRECT_ROUTE: &str = "/{code}";

/// Everything a request handler needs.
pub struct AppState {
    pub(crate) links: LinkResolver,
    pub(crate) producers: Producers,
    pub(crate) ids: EventIdGenerator,
    pub(crate) keys: ApiKeys,
    pub(crate) limits: Limits,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) country_header: String,
    pub(crate) store_full_ip: bool,
    pub(crate) capture_clicks: bool,
    pub(crate) redirects: RedirectCounters,
    route_metrics: RouteMetricsCache,
    /// The metrics of the redirect route, looked up once for the fast paths.
    pub(crate) redirect_metrics: Arc<RouteMetrics>,
    pub(crate) cache_control: HeaderValue,
    pub(crate) public_url: String,
    pub(crate) clickhouse: ClickhouseConfig,
    pub(crate) counters: sinks::redis::Counters,
    pub(crate) prometheus: PrometheusHandle,
    links_max_body_bytes: usize,
    pub(crate) orders_max_body_bytes: usize,
    pub(crate) orders_max_events: usize,
}

impl AppState {
    /// Checks the configuration, connects to Redis (failing with a message naming it when it
    /// does not answer) and builds the producers. Kafka may be away: redirects are served and
    /// their clicks spooled until it answers. ClickHouse is only needed by the stats route.
    pub async fn build(config: &EdgeConfig, prometheus: PrometheusHandle) -> Result<Self, EdgeError> {
        config.validate()?;
        let conn = config.redis.connect().await?;
        if let Err(error) = config.kafka.check_reachable().await {
            tracing::warn!(%error, "Kafka does not answer at start; serving anyway, clicks are spooled until it does");
        }
        let index = LinkIndex::new(config.redis.clone(), conn.clone());
        // The fast path's metrics are the router's `/{code}` ones: one set of per-thread slots.
        let route_metrics = RouteMetricsCache::default();
        let redirect_metrics = route_metrics.get(REDIRECT_ROUTE);
        Ok(Self {
            links: LinkResolver::new(
                index,
                config.link_cache_capacity,
                Duration::from_millis(config.link_cache_ttl_ms),
            ),
            producers: Producers::new(config)?,
            ids: EventIdGenerator::new(config.worker()),
            keys: ApiKeys::parse(&config.api_keys)?,
            limits: Limits::new(config),
            trusted_proxies: crate::client::parse_cidrs(&config.trusted_proxies)?,
            country_header: config.country_header.to_ascii_lowercase(),
            store_full_ip: config.store_full_ip,
            capture_clicks: config.capture_clicks,
            redirects: RedirectCounters::register(),
            route_metrics,
            redirect_metrics,
            cache_control: HeaderValue::from_str(&config.redirect_cache_control).expect("validated"),
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", config.addr))
                .trim_end_matches('/')
                .to_string(),
            clickhouse: config.clickhouse.clone(),
            // Only read (live report); the retention is the processors' concern.
            counters: sinks::redis::Counters::new(config.redis.clone(), conn, 0),
            prometheus,
            links_max_body_bytes: config.links_max_body_bytes,
            orders_max_body_bytes: config.orders_max_body_bytes,
            orders_max_events: config.orders_max_events,
        })
    }
}

/// The edge's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let link_body_limit = DefaultBodyLimit::max(state.links_max_body_bytes);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/links", get(links::list_links).post(links::create_link).layer(link_body_limit))
        .route(
            "/api/links/{code}",
            get(links::get_link).patch(links::patch_link).delete(links::delete_link).layer(link_body_limit),
        )
        .route("/api/links/{code}/stats", get(stats::link_stats))
        .route("/api/links/{code}/stats/{dimension}", get(stats::link_breakdown))
        .route("/api/reports/{name}", get(stats::named_report))
        .route("/api/openapi.json", get(health::openapi))
        .route(
            "/api/orders/events",
            post(orders::order_events).layer(DefaultBodyLimit::max(state.orders_max_body_bytes)),
        )
        // `get` also answers HEAD; the handler records the method in the click event.
        .route(REDIRECT_ROUTE, get(redirect::redirect))
        .fallback(health::fallback)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// A request's id: its `X-Request-Id`, the `request_id` of its log lines and, for a redirect,
/// its click event's id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestId(pub(crate) u64);

/// Refuses over-long paths, gives every request an id (its `X-Request-Id` header and the span of
/// its log lines; a redirect's is its click event's id), counts requests by route template and
/// status class, and times them.
async fn track(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = state.ids.next_id();
    request.extensions_mut().insert(RequestId(id));
    // A clone of the matched path is a reference-count bump, not a copy.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route_name = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!("request", request_id = id, route = route_name);
    let mut response = if request.uri().path().len() > MAX_PATH_BYTES {
        ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", format!("paths are at most {MAX_PATH_BYTES} bytes"))
            .into_response()
    } else {
        let method = request.method().clone();
        let response = next.run(request).instrument(span.clone()).await;
        span.in_scope(|| tracing::debug!(%method, status = response.status().as_u16(), "request served"));
        response
    };
    finish(&state.route_metrics.get(route_name), started, id, &mut response);
    response
}

/// What every answer gets: its `X-Request-Id`, and its count and time in its route's metrics.
fn finish(metrics: &RouteMetrics, started: Instant, id: u64, response: &mut Response) {
    response.headers_mut().insert("x-request-id", HeaderValue::from(id));
    record(metrics, started, response.status());
}

/// Counts an answer of `status` and its time since `started` in its route's metrics.
pub(crate) fn record(metrics: &RouteMetrics, started: Instant, status: StatusCode) {
    let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
    metrics.duration.record(started.elapsed().as_secs_f64());
    metrics.requests[class].increment(1);
}

/// The redirect path without the router: `GET|HEAD /{code}` where the code is one plain path
/// segment (no `%`-escapes, not another route's name) is answered straight away, exactly as the
/// router's `/{code}` route with [`track`] would (a test compares the two). Every other request
/// goes to the router. Routing, the middleware's boxing and the extractors were about a sixth
/// of the edge's CPU per redirect.
fn fast_redirect_code(request: &Request) -> Option<&str> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return None;
    }
    let path = request.uri().path();
    let code = path.strip_prefix('/')?;
    let plain = !code.is_empty() && path.len() <= MAX_PATH_BYTES && !code.contains(['/', '%']);
    (plain && !matches!(code, "healthz" | "readyz")).then_some(code)
}

async fn fast_redirect(state: Arc<AppState>, peer: SocketAddr, request: Request) -> Response {
    let started = Instant::now();
    let id = state.ids.next_id();
    let span = tracing::info_span!("request", request_id = id, route = REDIRECT_ROUTE);
    let (parts, _) = request.into_parts();
    let code = parts.uri.path().strip_prefix('/').unwrap_or_default();
    let answer = redirect::answer(&state, code, parts.uri.query(), &parts.method, peer.ip(), id, &parts.headers);
    let mut response = match answer.instrument(span.clone()).await {
        Ok(redirect) => redirect.into_response(&state.cache_control),
        Err(error) => error.into_response(),
    };
    span.in_scope(|| tracing::debug!(method = %parts.method, status = response.status().as_u16(), "request served"));
    finish(&state.redirect_metrics, started, id, &mut response);
    response
}

/// The service of a connection served by hyper ([`crate::http1`] hands over every connection
/// with a request it does not answer itself): the redirect fast path, else the router (with
/// the peer's address as `ConnectInfo`).
#[derive(Clone)]
pub(crate) struct Connection {
    state: Arc<AppState>,
    router: Router,
    peer: SocketAddr,
}

impl Connection {
    pub(crate) fn new(state: Arc<AppState>, router: Router, peer: SocketAddr) -> Self {
        Self { state, router, peer }
    }
}

impl tower::Service<Request> for Connection {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if fast_redirect_code(&request).is_some() {
            return Box::pin(fast_redirect(Arc::clone(&self.state), self.peer, request).map(Ok));
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Box::pin(tower::Service::call(&mut self.router, request))
    }
}

/// Serves the edge on `listener` until `shutdown` completes, then stops accepting, finishes
/// in-flight requests and waits (bounded) for Kafka to acknowledge what was produced.
pub async fn run(
    listener: TcpListener,
    metrics_listener: TcpListener,
    config: EdgeConfig,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EdgeError> {
    describe();
    crate::metrics::register_known();
    let state = Arc::new(AppState::build(&config, prometheus).await?);
    if config.api_keys.trim().is_empty() {
        tracing::warn!(
            "no API keys configured (RUNNEL_API_KEYS): every /api request answers 401; `runnel api-key` makes one"
        );
    }
    let changes = tokio::spawn(state.links.clone().follow_changes(config.redis.client()?));
    let replayer = tokio::spawn(Arc::clone(&state.producers.clicks).replay_forever());
    let batcher = tokio::spawn(Arc::clone(&state.producers.clicks).send_batches_forever());
    let app = router(Arc::clone(&state));
    let metrics_app = Router::new().route("/metrics", get(health::metrics)).with_state(Arc::clone(&state));
    tracing::info!(addr = %metrics_listener.local_addr()?, "edge metrics serving");
    let metrics = tokio::spawn(async move { axum::serve(metrics_listener, metrics_app).await });
    tracing::info!(addr = %listener.local_addr()?, "edge serving");
    let timeouts = crate::http1::Timeouts {
        idle: Duration::from_millis(config.idle_timeout_ms),
        header: Duration::from_millis(config.header_timeout_ms),
    };
    crate::http1::serve(listener, Arc::clone(&state), app, timeouts, shutdown).await;
    changes.abort();
    metrics.abort();
    replayer.abort();
    batcher.abort();

    let in_flight = state.producers.in_flight();
    tracing::info!(in_flight, "edge stopped accepting; flushing click events");
    let flush_timeout = Duration::from_millis(config.shutdown_flush_ms);
    tokio::task::spawn_blocking(move || state.producers.flush(flush_timeout)).await.expect("flush does not panic");
    Ok(())
}
