//! The edge's metric names (`runnel_edge_*`), declared in one place.

use crate::hot_metrics::{HotCounter, HotHistogram};

/// Requests by route template and status class (counter).
pub(crate) const REQUESTS_TOTAL: &str = "runnel_edge_requests_total";
/// Request latency by route template (histogram, seconds).
pub(crate) const REQUEST_DURATION_SECONDS: &str = "runnel_edge_request_duration_seconds";
/// Redirect answers by result: `found`, `fallback`, `expired`, `disabled`, `not_found` (orphan
/// visits), `error` (counter).
pub(crate) const REDIRECTS_TOTAL: &str = "runnel_edge_redirects_total";
/// Link lookups by cache tier (`memory`, `redis`) and result (`hit`, `miss`) (counter).
pub(crate) const LINK_LOOKUPS_TOTAL: &str = "runnel_edge_link_lookups_total";
/// Click events handed to the producer (counter).
pub(crate) const CLICKS_PRODUCED_TOTAL: &str = "runnel_edge_clicks_produced_total";
/// Click events Kafka acknowledged (counter).
pub(crate) const CLICKS_DELIVERED_TOTAL: &str = "runnel_edge_clicks_delivered_total";
/// Click events written to the spool while Kafka was unavailable (counter).
pub(crate) const CLICKS_SPOOLED_TOTAL: &str = "runnel_edge_clicks_spooled_total";
/// Spooled click events that Kafka acknowledged on replay (counter).
pub(crate) const CLICKS_REPLAYED_TOTAL: &str = "runnel_edge_clicks_replayed_total";
/// Click messages (batches) in the producer's memory queue, not yet acknowledged (gauge).
pub(crate) const PRODUCER_QUEUE_MESSAGES: &str = "runnel_edge_producer_queue_messages";
/// Bytes the click spool holds (gauge).
pub(crate) const SPOOL_BYTES: &str = "runnel_edge_spool_bytes";
/// Click events lost, by reason: `spool_full`, `spool_error` (counter).
pub(crate) const CLICKS_DROPPED_TOTAL: &str = "runnel_edge_clicks_dropped_total";
/// Requests refused by a rate limit, by class: `links`, `orders`, `reports`, `redirects` (counter).
pub(crate) const RATE_LIMITED_TOTAL: &str = "runnel_edge_rate_limited_total";
/// Link changes announced to other edges' caches, and announcements received (counter, by `direction`).
pub(crate) const CACHE_INVALIDATIONS_TOTAL: &str = "runnel_edge_cache_invalidations_total";
/// Link changes by operation: `create`, `update`, `disable` (counter).
pub(crate) const LINK_CHANGES_TOTAL: &str = "runnel_edge_link_changes_total";
/// Order events by result: `accepted`, `invalid`, `unavailable` (counter).
pub(crate) const ORDER_EVENTS_TOTAL: &str = "runnel_edge_order_events_total";

/// Registers descriptions so `/metrics` explains itself.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(REQUESTS_TOTAL, "HTTP requests by route template and status class");
    describe_histogram!(REQUEST_DURATION_SECONDS, metrics::Unit::Seconds, "HTTP request latency by route template");
    describe_counter!(REDIRECTS_TOTAL, "Redirect answers by result");
    describe_counter!(LINK_LOOKUPS_TOTAL, "Link lookups by cache tier and result");
    describe_counter!(CLICKS_PRODUCED_TOTAL, "Click events handed to the Kafka producer");
    describe_counter!(CLICKS_DELIVERED_TOTAL, "Click events acknowledged by Kafka");
    describe_counter!(CLICKS_DROPPED_TOTAL, "Click events lost, by reason");
    describe_counter!(CLICKS_SPOOLED_TOTAL, "Click events written to the spool while Kafka was unavailable");
    describe_counter!(CLICKS_REPLAYED_TOTAL, "Spooled click events acknowledged by Kafka on replay");
    metrics::describe_gauge!(PRODUCER_QUEUE_MESSAGES, "Click messages in the producer's queue, not yet acknowledged");
    metrics::describe_gauge!(SPOOL_BYTES, metrics::Unit::Bytes, "Bytes held by the click spool");
    describe_counter!(RATE_LIMITED_TOTAL, "Requests refused by a rate limit, by class");
    describe_counter!(CACHE_INVALIDATIONS_TOTAL, "Link-cache invalidations sent and received");
    describe_counter!(LINK_CHANGES_TOTAL, "Link changes by operation");
    describe_counter!(ORDER_EVENTS_TOTAL, "Order events by result");
    describe_counter!(sinks::reports::TOP_LINKS_TOTAL, "Top-links reports by how they were answered");
    describe_counter!(sinks::reports::LINK_SERIES_TOTAL, "Link series by how they were answered");
}

/// Creates every counter with its known labels at zero, so `/metrics` lists them from the start
/// and `increase()` in an alert sees the first event (a series born at 1 has not increased).
pub(crate) fn register_known() {
    use metrics::counter;
    for (tier, result) in
        [("memory", "hit"), ("memory", "miss"), ("memory", "stale"), ("redis", "hit"), ("redis", "miss")]
    {
        counter!(LINK_LOOKUPS_TOTAL, "tier" => tier, "result" => result).absolute(0);
    }
    for name in [CLICKS_PRODUCED_TOTAL, CLICKS_DELIVERED_TOTAL, CLICKS_SPOOLED_TOTAL, CLICKS_REPLAYED_TOTAL] {
        counter!(name).absolute(0);
    }
    for reason in ["spool_full", "spool_error"] {
        counter!(CLICKS_DROPPED_TOTAL, "reason" => reason).absolute(0);
    }
    for class in ["links", "orders", "reports", "redirects"] {
        counter!(RATE_LIMITED_TOTAL, "class" => class).absolute(0);
    }
    for direction in ["sent", "received"] {
        counter!(CACHE_INVALIDATIONS_TOTAL, "direction" => direction).absolute(0);
    }
    for op in ["create", "update", "disable"] {
        counter!(LINK_CHANGES_TOTAL, "op" => op).absolute(0);
    }
    for result in ["accepted", "invalid", "unavailable"] {
        counter!(ORDER_EVENTS_TOTAL, "result" => result).absolute(0);
    }
    for path in ["leaders", "plain"] {
        counter!(sinks::reports::TOP_LINKS_TOTAL, "path" => path).absolute(0);
    }
    for path in ["link_days", "plain"] {
        counter!(sinks::reports::LINK_SERIES_TOTAL, "path" => path).absolute(0);
    }
    metrics::gauge!(SPOOL_BYTES).increment(0.0);
    metrics::gauge!(PRODUCER_QUEUE_MESSAGES).increment(0.0);
}

/// Redirect-result counters, registered once (the redirect path must not look them up).
pub(crate) struct RedirectCounters {
    /// Nearly every redirect's: counted per thread.
    pub(crate) found: HotCounter,
    pub(crate) fallback: metrics::Counter,
    pub(crate) expired: metrics::Counter,
    pub(crate) disabled: metrics::Counter,
    pub(crate) not_found: metrics::Counter,
    pub(crate) error: metrics::Counter,
}

impl RedirectCounters {
    pub(crate) fn register() -> Self {
        let c = |result: &'static str| metrics::counter!(REDIRECTS_TOTAL, "result" => result);
        Self {
            found: HotCounter::new(c("found")),
            fallback: c("fallback"),
            expired: c("expired"),
            disabled: c("disabled"),
            not_found: c("not_found"),
            error: c("error"),
        }
    }
}

/// Request metrics of one route template, counted per thread (every request updates them).
pub(crate) struct RouteMetrics {
    pub(crate) duration: HotHistogram,
    /// By status class: 1xx … 5xx.
    pub(crate) requests: [HotCounter; 5],
}

/// Request metrics per route template, registered on first use and then only read.
#[derive(Default)]
pub(crate) struct RouteMetricsCache {
    routes: std::sync::RwLock<std::collections::HashMap<String, std::sync::Arc<RouteMetrics>>>,
}

impl RouteMetricsCache {
    pub(crate) fn get(&self, route: &str) -> std::sync::Arc<RouteMetrics> {
        if let Some(found) = self.routes.read().expect("not poisoned").get(route) {
            return std::sync::Arc::clone(found);
        }
        let owned = route.to_string();
        let class = |c: &'static str| {
            HotCounter::new(metrics::counter!(REQUESTS_TOTAL, "route" => owned.clone(), "status_class" => c))
        };
        let metric = std::sync::Arc::new(RouteMetrics {
            duration: HotHistogram::new(metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => owned.clone())),
            requests: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
        });
        self.routes.write().expect("not poisoned").entry(owned).or_insert(metric).clone()
    }
}
