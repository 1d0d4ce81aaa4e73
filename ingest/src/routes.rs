//! HTTP handlers: redirects, the link API, per-link stats, health and readiness.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::{ClickEvent, LinkEvent, LinkOp, SCHEMA_VERSION};
use metrics::counter;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::metrics::{LINKS_CREATED_TOTAL, REDIRECTS_TOTAL};
use crate::server::AppState;

const CODE_LEN: usize = 7;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_URL_BYTES: usize = 2048;
const MAX_CODE_BYTES: usize = 64;

/// `GET|HEAD /{code}`: 302 to the link's destination, and a click event to Kafka.
pub(crate) async fn redirect(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if code.len() > MAX_CODE_BYTES {
        counter!(REDIRECTS_TOTAL, "result" => "not_found").increment(1);
        return Err(ApiError::not_found("no such link"));
    }
    let link = match state.links.resolve(&code).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            counter!(REDIRECTS_TOTAL, "result" => "not_found").increment(1);
            return Err(ApiError::not_found("no such link"));
        }
        Err(error) => {
            counter!(REDIRECTS_TOTAL, "result" => "error").increment(1);
            return Err(ApiError::unavailable("link index", error));
        }
    };
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let event = ClickEvent {
        v: SCHEMA_VERSION,
        id: state.ids.next_id(),
        ts: events::now_ms(),
        link_id: link.link_id,
        code,
        method: method.as_str().to_string(),
        ua: header(header::USER_AGENT),
        referrer: header(header::REFERER),
        lang: header(header::ACCEPT_LANGUAGE),
        ip: truncate_ip(peer.ip()).to_string(),
    };
    state.producers.send_click(&event);
    counter!(REDIRECTS_TOTAL, "result" => "found").increment(1);

    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    // Destination URLs are validated on creation, so they are valid header values.
    if let Ok(location) = HeaderValue::from_str(&link.url) {
        h.insert(header::LOCATION, location);
    }
    h.insert(header::CACHE_CONTROL, state.cache_control.clone());
    h.insert("x-request-id", HeaderValue::from(event.id));
    Ok(response)
}

/// Keeps the network part of an address: /24 for IPv4, /48 for IPv6.
pub(crate) fn truncate_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate_ip(IpAddr::V4(v4));
            }
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Body of `POST /api/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    url: String,
}

/// A link as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LinkView {
    code: String,
    link_id: u64,
    url: String,
    short_url: String,
    created_ms: u64,
}

fn view(state: &AppState, link: &LinkEvent) -> LinkView {
    LinkView {
        code: link.code.clone(),
        link_id: link.link_id,
        url: link.url.clone(),
        short_url: format!("{}/{}", state.public_url, link.code),
        created_ms: link.created_ms,
    }
}

/// Checks a destination URL: absolute http(s), at most 2,048 bytes, no whitespace or control
/// characters. The message says what is wrong.
pub(crate) fn validate_destination(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("url is {} bytes; at most {MAX_URL_BYTES} are allowed", raw.len()));
    }
    if let Some(c) = raw.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("url contains the character {c:?}; whitespace and control characters are not allowed"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("url is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url scheme '{}' is not allowed; use http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    Ok(())
}

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN).map(|_| BASE62[rng.random_range(0..BASE62.len())] as char).collect()
}

/// `POST /api/links`: claims a fresh code in the Redis index, then records the link on the
/// links topic; answers 201 only when both hold it, so a redirect works right after.
pub(crate) async fn create_link(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    validate_destination(&request.url)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_url", message))?;
    let index = state.links.index();
    let id = state.ids.next_id();
    let mut link = LinkEvent {
        v: SCHEMA_VERSION,
        id,
        op: LinkOp::Create,
        link_id: id,
        code: String::new(),
        url: request.url,
        created_ms: events::now_ms(),
    };
    // 62^7 codes: a collision is rare; a few retries make one vanishingly unlikely to fail.
    let mut claimed = false;
    for _ in 0..5 {
        link.code = new_code();
        if index.claim(&link).await.map_err(|e| ApiError::unavailable("link index", e))? {
            claimed = true;
            break;
        }
    }
    if !claimed {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "code_space_exhausted",
            "could not find a free code; retry",
        ));
    }
    if let Err(error) = state.producers.send_link(&link).await {
        // Kafka is the source of truth: without it the link must not exist.
        if let Err(undo) = index.release(&link).await {
            tracing::error!(%undo, code = %link.code, "could not release a claimed code");
        }
        return Err(ApiError::unavailable("Kafka", error));
    }
    state.links.remember(link.clone());
    counter!(LINKS_CREATED_TOTAL).increment(1);
    Ok((StatusCode::CREATED, Json(view(&state, &link))).into_response())
}

/// Query of `GET /api/links/{code}/stats`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatsQuery {
    days: Option<u32>,
}

/// `GET /api/links/{code}/stats?days=N`: clicks per day from the pre-aggregated view.
pub(crate) async fn link_stats(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.body_text()))?;
    let days = query.days.unwrap_or(30);
    if !(1..=3660).contains(&days) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", "days must be between 1 and 3660"));
    }
    let link = state
        .links
        .resolve(&code)
        .await
        .map_err(|e| ApiError::unavailable("link index", e))?
        .ok_or_else(|| ApiError::not_found("no such link"))?;
    let days_stats = sinks::clickhouse::daily_stats(&state.clickhouse, link.link_id, days)
        .await
        .map_err(|e| ApiError::unavailable("ClickHouse", e))?;
    let clicks: u64 = days_stats.iter().map(|d| d.clicks).sum();
    let human_clicks: u64 = days_stats.iter().map(|d| d.human_clicks).sum();
    Ok(Json(serde_json::json!({
        "code": link.code,
        "link_id": link.link_id,
        "clicks": clicks,
        "human_clicks": human_clicks,
        "days": days_stats,
    }))
    .into_response())
}

/// `GET /healthz`: the process is alive.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 when Redis answers and Kafka's metadata is reachable, else 503 naming
/// what is not.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let redis_ok = state.links.index().ping().await.is_ok();
    let kafka_ok = state.producers.kafka_reachable().await;
    let body =
        serde_json::json!({ "redis": redis_ok, "kafka": kafka_ok, "clicks_in_flight": state.producers.in_flight() });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_truncated_to_their_network() {
        assert_eq!(truncate_ip("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(truncate_ip("2001:db8:abcd:12::1".parse().unwrap()).to_string(), "2001:db8:abcd::");
        assert_eq!(truncate_ip("::ffff:198.51.100.9".parse().unwrap()).to_string(), "198.51.100.0");
    }

    #[test]
    fn destinations_must_be_absolute_http_urls_without_whitespace() {
        assert!(validate_destination("https://example.com/a?b=c").is_ok());
        assert!(validate_destination("ftp://example.com/").unwrap_err().contains("scheme"));
        assert!(validate_destination("/relative").unwrap_err().contains("absolute"));
        assert!(validate_destination("https://example.com/a b").unwrap_err().contains("whitespace"));
        assert!(
            validate_destination(&format!("https://example.com/{}", "a".repeat(2100))).unwrap_err().contains("2048")
        );
    }

    #[test]
    fn generated_codes_are_seven_base62_characters_and_differ() {
        let a = new_code();
        assert_eq!(a.len(), 7);
        assert!(a.bytes().all(|b| BASE62.contains(&b)));
        let distinct: std::collections::HashSet<String> = (0..1000).map(|_| new_code()).collect();
        assert_eq!(distinct.len(), 1000);
    }
}
