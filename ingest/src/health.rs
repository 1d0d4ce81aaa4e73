//! Health, readiness, metrics, and the answer for unknown routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;
use crate::server::AppState;

/// `GET /healthz`: the process is alive.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when Redis answers and Kafka's metadata is reachable, else 503 naming
/// what is not.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let redis_ok = state.links.index().ping().await.is_ok();
    let kafka_ok = state.producers.kafka_reachable().await;
    let body = serde_json::json!({
        "redis": redis_ok,
        "kafka": kafka_ok,
        "clicks_in_flight": state.producers.in_flight(),
        "spooling": state.producers.clicks.spooling(),
    });
    let status = if redis_ok && kafka_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    // What the request path counted per thread, first (crate::hot_metrics).
    crate::hot_metrics::flush();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render()).into_response()
}

/// Any other path.
pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}

/// The OpenAPI 3 document of the `/api` routes (`ingest/openapi.json`; a test keeps it in step
/// with the router).
pub(crate) const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /api/openapi.json`.
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    /// Every `/api` route the router serves is documented (the reverse — every documented
    /// operation is served — is checked against a running edge in `tests/edge.rs`).
    #[test]
    fn every_api_route_of_the_router_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        // The router's source with whitespace folded, cut at each `.route(`.
        let source: String = include_str!("server.rs").split_whitespace().collect::<Vec<_>>().join(" ");
        let mut routes = 0;
        for call in source.split(".route(").skip(1).filter(|c| c.trim_start().starts_with("\"/api")) {
            let path = call.split('"').nth(1).unwrap();
            let handlers = call.split(".fallback(").next().unwrap();
            routes += 1;
            let documented = &doc["paths"][path];
            assert!(documented.is_object(), "{path} is served but not documented");
            for method in ["get", "post", "patch", "delete"] {
                if handlers.contains(&format!("{method}(")) {
                    assert!(documented[method].is_object(), "{method} {path} is served but not documented");
                }
            }
        }
        assert!(routes >= 5, "found only {routes} /api routes in server.rs");
    }
}
