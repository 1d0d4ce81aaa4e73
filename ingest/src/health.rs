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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render()).into_response()
}

/// Any other path.
pub(crate) async fn fallback() -> ApiError {
    ApiError::not_found("no such route")
}
