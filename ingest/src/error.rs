//! Errors: [`EdgeError`] for start-up, [`ApiError`] for HTTP answers. Every HTTP error has one
//! JSON shape, `{"error": {"code": "...", "message": "..."}}`; internal detail only goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A setting is unusable; names the variable.
    #[error("invalid {variable}: {reason}")]
    Invalid { variable: &'static str, reason: String },
    /// Kafka set-up failed.
    #[error(transparent)]
    Kafka(#[from] events::kafka::KafkaSetupError),
    /// Redis or ClickHouse set-up failed.
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
    /// The producer could not be created.
    #[error("creating the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    rate_limit: Option<u32>,
    details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with a stable `code` and a message the client can act on.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_s: None, rate_limit: None, details: None }
    }

    /// 400 `invalid_parameter`: a query parameter is missing, malformed or out of range.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }

    /// 404 `not_found`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 503 `unavailable` with `Retry-After`; `detail` is logged, not sent.
    pub fn unavailable(service: &str, detail: impl std::fmt::Display) -> Self {
        Self::unavailable_with(service, detail, format!("{service} is unavailable; retry later"))
    }

    /// 503 `unavailable` with `Retry-After` and the given advice for the client.
    pub fn unavailable_with(service: &str, detail: impl std::fmt::Display, message: impl Into<String>) -> Self {
        tracing::warn!(service, error = %detail, "dependency unavailable");
        Self { retry_after_s: Some(5), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message) }
    }

    /// Adds a machine-readable list (for example every invalid field of a batch).
    pub(crate) fn with_details(self, details: serde_json::Value) -> Self {
        Self { details: Some(details), ..self }
    }

    /// Adds `Retry-After` and the `RateLimit-*` headers of a refused request.
    pub(crate) fn with_rate_limit(self, limit: u32, retry_after_s: u64) -> Self {
        Self { retry_after_s: Some(retry_after_s), rate_limit: Some(limit), ..self }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let body = serde_json::json!({ "error": error });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let (Some(limit), Some(reset)) = (self.rate_limit, self.retry_after_s) {
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(0));
            headers.insert("ratelimit-reset", HeaderValue::from(reset));
        }
        response
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::invalid_parameter(rejection.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        match rejection {
            R::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            R::JsonDataError(e) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", e.body_text()),
            R::JsonSyntaxError(e) => Self::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()),
            R::BytesRejection(_) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body too large")
            }
            other => Self::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
        }
    }
}
