//! `POST /api/orders/events` (scope `orders:write`): one JSON event (`application/json`) or a
//! batch as NDJSON (`application/x-ndjson`). Every event is checked first, each error reported
//! with its line and field path; a batch with any bad event is refused whole (400). The answer
//! is 202 only after Kafka acknowledged every event (`acks=all`, idempotent producer).
//!
//! Kafka transactions would make a batch atomic inside Kafka too; the local broker (tansu 0.6)
//! has none, so a Kafka failure part-way answers 503 for the whole batch and the client sends
//! the same batch again: events carry the client's `event_id`, which downstream stores once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::{FieldError, OrderEvent, decode_order};
use metrics::counter;

use crate::ApiError;
use crate::auth::Scope;
use crate::limits::Class;
use crate::metrics::ORDER_EVENTS_TOTAL;
use crate::server::AppState;

/// At most this many errors are listed in a 400 answer.
const MAX_LISTED_ERRORS: usize = 100;

/// One problem of a batch, for the 400 answer.
#[derive(Debug, serde::Serialize)]
struct LineError {
    line: usize,
    path: String,
    message: String,
}

/// Checks one event's fields beyond what [`OrderEvent::problems`] knows (the time format).
fn problems(event: &OrderEvent) -> Vec<FieldError> {
    let mut problems = event.problems();
    if humantime::parse_rfc3339_weak(&event.time).is_err() {
        problems.push(FieldError {
            path: "time".into(),
            message: format!("'{}' is not an RFC 3339 time such as 2026-11-01T10:00:00Z", event.time),
        });
    }
    problems
}

/// Splits the body into numbered lines by content type.
fn lines<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Vec<(usize, &'a [u8])>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(vec![(1, body)]),
        "application/x-ndjson" | "application/ndjson" | "application/jsonlines" => Ok(events::lines(body)
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| (i + 1, line))
            .collect()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send one event as application/json or a batch as application/x-ndjson",
        )),
    }
}

pub(crate) async fn order_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = state.keys.authorize(&headers, Scope::OrdersWrite)?;
    state.limits.check(Class::Orders, key)?;
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a request body is at most {} bytes", state.orders_max_body_bytes),
        )
    })?;
    let lines = lines(&headers, &body)?;
    if lines.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty_batch", "the request holds no event"));
    }
    if lines.len() > state.orders_max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} events in one request; at most {} are allowed", lines.len(), state.orders_max_events),
        ));
    }

    let mut accepted = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    for (line, json) in &lines {
        let found = match decode_order(json) {
            Ok(event) => {
                let found = problems(&event);
                if found.is_empty() {
                    accepted.push(event);
                }
                found
            }
            Err(error) => vec![error],
        };
        errors.extend(found.into_iter().map(|e| LineError { line: *line, path: e.path, message: e.message }));
    }
    if !errors.is_empty() {
        counter!(ORDER_EVENTS_TOTAL, "result" => "invalid").increment(lines.len() as u64);
        let invalid_lines = {
            let mut l: Vec<usize> = errors.iter().map(|e| e.line).collect();
            l.dedup();
            l.len()
        };
        let first = &errors[0];
        let message = format!(
            "{invalid_lines} of {} events are invalid, nothing was accepted; first: line {}: {}{}",
            lines.len(),
            first.line,
            if first.path.is_empty() { String::new() } else { format!("{}: ", first.path) },
            first.message
        );
        errors.truncate(MAX_LISTED_ERRORS);
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_events", message).with_details(serde_json::json!(errors))
        );
    }

    let received = events::now_ms();
    for event in &mut accepted {
        event.received_ms = received;
    }
    if let Err(error) = state.producers.send_orders(&accepted).await {
        counter!(ORDER_EVENTS_TOTAL, "result" => "unavailable").increment(accepted.len() as u64);
        return Err(ApiError::unavailable_with(
            "Kafka",
            error,
            "Kafka is unavailable; the batch was not accepted. Send the same batch again later (event ids make the retry safe)",
        ));
    }
    counter!(ORDER_EVENTS_TOTAL, "result" => "accepted").increment(accepted.len() as u64);
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "accepted": accepted.len() }))).into_response())
}
