//! The link API, `/api/links`: create (a generated code or a custom alias), read, list with a
//! cursor, change, disable. Every change is recorded on the links topic (the source of truth)
//! and written to the Redis index before the answer, then announced to every edge's cache, so
//! a redirect works on any edge right after 201.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use events::{LinkEvent, LinkOp, Utm};
use metrics::counter;
use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ApiError;
use crate::auth::Scope;
use crate::limits::Class;
use crate::metrics::{CACHE_INVALIDATIONS_TOTAL, LINK_CHANGES_TOTAL};
use crate::server::AppState;

const CODE_LEN: usize = 7;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const MAX_URL_BYTES: usize = 2048;
const MAX_TAGS: usize = 20;
const MAX_TAG_BYTES: usize = 64;
const MAX_UTM_BYTES: usize = 256;
/// Paths the edge serves itself, or may one day; no alias may take them.
const RESERVED: &[&str] = &[
    "api", "metrics", "healthz", "readyz", "health", "status", "admin", "static", "assets", "docs", "openapi", "login",
    "logout", "favicon", "robots",
];

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {message}"))
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

fn check_url(field: &str, raw: &str) -> Result<(), ApiError> {
    validate_destination(raw).map_err(|message| {
        let code = if field == "url" { "invalid_url" } else { "invalid_field" };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            if field == "url" { message } else { format!("{field}: {message}") },
        )
    })
}

/// Checks a custom alias: `[A-Za-z0-9_-]{3,64}`, not a reserved word.
pub(crate) fn validate_alias(alias: &str) -> Result<(), ApiError> {
    if !(3..=64).contains(&alias.len()) || !alias.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(invalid("alias", "must be 3 to 64 characters of A-Z, a-z, 0-9, _ and -"));
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(alias)) {
        return Err(invalid("alias", format!("'{alias}' is reserved")));
    }
    Ok(())
}

fn check_status(status: u16) -> Result<u16, ApiError> {
    if matches!(status, 301 | 302 | 307 | 308) {
        Ok(status)
    } else {
        Err(invalid("redirect_status", "must be 301, 302, 307 or 308"))
    }
}

fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    match tags.iter().find(|t| t.is_empty() || t.len() > MAX_TAG_BYTES || t.chars().any(char::is_control)) {
        Some(tag) => {
            Err(invalid("tags", format!("'{tag}' must be 1 to {MAX_TAG_BYTES} bytes without control characters")))
        }
        None => Ok(()),
    }
}

fn check_utm(utm: &Utm) -> Result<(), ApiError> {
    match utm.pairs().find(|(_, v)| v.is_empty() || v.len() > MAX_UTM_BYTES || v.chars().any(char::is_control)) {
        Some((name, _)) => Err(invalid(
            &format!("utm.{}", name.trim_start_matches("utm_")),
            format!("must be 1 to {MAX_UTM_BYTES} bytes without control characters"),
        )),
        None => Ok(()),
    }
}

fn parse_time(field: &str, text: &str) -> Result<u64, ApiError> {
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| invalid(field, format!("'{text}' is not an RFC 3339 time such as 2030-01-31T12:00:00Z ({e})")))?;
    Ok(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

fn format_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Body of `POST /api/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    url: String,
    alias: Option<String>,
    expires_at: Option<String>,
    fallback_url: Option<String>,
    redirect_status: Option<u16>,
    #[serde(default)]
    passthrough: bool,
    #[serde(default)]
    utm: Utm,
    #[serde(default)]
    tags: Vec<String>,
}

/// `Some(None)` for an explicit `null` (clear the field), `None` when the field is absent.
fn explicit<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /api/links/{code}`: only the fields present change; `null` clears.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchLink {
    url: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit")]
    fallback_url: Option<Option<String>>,
    redirect_status: Option<u16>,
    passthrough: Option<bool>,
    disabled: Option<bool>,
    utm: Option<Utm>,
    tags: Option<Vec<String>>,
}

/// A link as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct LinkView {
    code: String,
    link_id: u64,
    url: String,
    short_url: String,
    redirect_status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_url: Option<String>,
    passthrough: bool,
    disabled: bool,
    #[serde(skip_serializing_if = "Utm::is_empty")]
    utm: Utm,
    tags: Vec<String>,
    created_at: String,
    updated_at: String,
    version: u64,
}

fn view(state: &AppState, link: &LinkEvent) -> LinkView {
    LinkView {
        code: link.code.clone(),
        link_id: link.link_id,
        url: link.url.clone(),
        short_url: format!("{}/{}", state.public_url, link.code),
        redirect_status: link.redirect_status,
        expires_at: link.expires_ms.map(format_time),
        fallback_url: link.fallback_url.clone(),
        passthrough: link.passthrough,
        disabled: link.disabled,
        utm: link.utm.clone(),
        tags: link.tags.clone(),
        created_at: format_time(link.created_ms),
        updated_at: format_time(link.updated_ms.max(link.created_ms)),
        version: link.id,
    }
}

fn new_code() -> String {
    let mut rng = rand::rng();
    (0..CODE_LEN).map(|_| BASE62[rng.random_range(0..BASE62.len())] as char).collect()
}

fn admit(state: &AppState, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
    let key = state.keys.authorize(headers, scope)?;
    state.limits.check(Class::Links, key)
}

/// `POST /api/links`.
pub(crate) async fn create_link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, Scope::LinksWrite)?;
    let Json(request) = body?;
    check_url("url", &request.url)?;
    if let Some(fallback) = &request.fallback_url {
        check_url("fallback_url", fallback)?;
    }
    if let Some(alias) = &request.alias {
        validate_alias(alias)?;
    }
    check_tags(&request.tags)?;
    check_utm(&request.utm)?;
    let now = events::now_ms();
    let id = state.ids.next_id();
    let mut link = LinkEvent::new(id, String::new(), request.url, now);
    link.redirect_status = check_status(request.redirect_status.unwrap_or(302))?;
    link.expires_ms = request.expires_at.as_deref().map(|t| parse_time("expires_at", t)).transpose()?;
    link.fallback_url = request.fallback_url;
    link.passthrough = request.passthrough;
    link.utm = request.utm;
    link.tags = request.tags;

    let index = state.links.index();
    let claimed = match request.alias {
        Some(alias) => {
            link.code = alias;
            index.claim(&link).await.map_err(|e| ApiError::unavailable("link index", e))?
        }
        // 62^7 codes: a collision is rare, and a few retries make a failure vanishingly unlikely.
        None => {
            let mut claimed = false;
            for _ in 0..5 {
                link.code = new_code();
                if index.claim(&link).await.map_err(|e| ApiError::unavailable("link index", e))? {
                    claimed = true;
                    break;
                }
            }
            claimed
        }
    };
    if !claimed {
        return Err(ApiError::new(StatusCode::CONFLICT, "alias_taken", format!("the code '{}' is taken", link.code)));
    }
    if let Err(error) = state.producers.send_link(&link).await {
        // Kafka is the source of truth: without its record the link must not exist.
        if let Err(undo) = index.release(&link).await {
            tracing::error!(%undo, code = %link.code, "could not release a claimed code");
        }
        return Err(ApiError::unavailable("Kafka", error));
    }
    state.links.remember(link.clone());
    counter!(LINK_CHANGES_TOTAL, "op" => "create").increment(1);
    Ok((StatusCode::CREATED, Json(view(&state, &link))).into_response())
}

async fn current(state: &AppState, code: &str) -> Result<LinkEvent, ApiError> {
    // The index, not the cache: an API read must see the latest write of any edge.
    state
        .links
        .index()
        .get(code)
        .await
        .map_err(|e| ApiError::unavailable("link index", e))?
        .ok_or_else(|| ApiError::not_found("no such link"))
}

/// Records a new version of a link: Kafka, then the Redis index, then every edge's cache.
async fn write_version(state: &AppState, mut link: LinkEvent, op: LinkOp) -> Result<LinkEvent, ApiError> {
    link.id = state.ids.next_id();
    link.op = op;
    link.updated_ms = events::now_ms();
    state.producers.send_link(&link).await.map_err(|e| ApiError::unavailable("Kafka", e))?;
    // `put` keeps a newer version written meanwhile by another edge.
    state.links.index().put(&link).await.map_err(|e| ApiError::unavailable("link index", e))?;
    state.links.forget(&link.code);
    match state.links.index().announce(&link.code).await {
        Ok(()) => counter!(CACHE_INVALIDATIONS_TOTAL, "direction" => "sent").increment(1),
        // Other edges still pick the change up when their cache entry expires.
        Err(error) => tracing::warn!(%error, code = %link.code, "could not announce a link change"),
    }
    let name = match op {
        LinkOp::Create => "create",
        LinkOp::Update => "update",
        LinkOp::Disable => "disable",
    };
    counter!(LINK_CHANGES_TOTAL, "op" => name).increment(1);
    Ok(link)
}

/// `GET /api/links/{code}`.
pub(crate) async fn get_link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, Scope::LinksRead)?;
    let link = current(&state, &code).await?;
    Ok(Json(view(&state, &link)).into_response())
}

/// Query of `GET /api/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/links?cursor=…&limit=…`: links oldest first; `next_cursor` fetches the next page.
pub(crate) async fn list_links(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, Scope::LinksRead)?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_parameter("limit must be between 1 and 1000"));
    }
    if let Some(cursor) = &query.cursor
        && (cursor.len() > 200 || !cursor.contains(':'))
    {
        return Err(ApiError::invalid_parameter("cursor is not one this API returned"));
    }
    let page = state
        .links
        .index()
        .list(query.cursor.as_deref(), limit)
        .await
        .map_err(|e| ApiError::unavailable("link index", e))?;
    let links: Vec<LinkView> = page.links.iter().map(|l| view(&state, l)).collect();
    Ok(Json(serde_json::json!({ "links": links, "next_cursor": page.next_cursor })).into_response())
}

/// `PATCH /api/links/{code}`.
pub(crate) async fn patch_link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: Result<Json<PatchLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, Scope::LinksWrite)?;
    let Json(patch) = body?;
    let mut link = current(&state, &code).await?;
    if let Some(url) = patch.url {
        check_url("url", &url)?;
        link.url = url;
    }
    if let Some(expires) = patch.expires_at {
        link.expires_ms = expires.as_deref().map(|t| parse_time("expires_at", t)).transpose()?;
    }
    if let Some(fallback) = patch.fallback_url {
        if let Some(url) = &fallback {
            check_url("fallback_url", url)?;
        }
        link.fallback_url = fallback;
    }
    if let Some(status) = patch.redirect_status {
        link.redirect_status = check_status(status)?;
    }
    if let Some(passthrough) = patch.passthrough {
        link.passthrough = passthrough;
    }
    if let Some(utm) = patch.utm {
        check_utm(&utm)?;
        link.utm = utm;
    }
    if let Some(tags) = patch.tags {
        check_tags(&tags)?;
        link.tags = tags;
    }
    let op = match patch.disabled {
        Some(true) => {
            link.disabled = true;
            LinkOp::Disable
        }
        Some(false) => {
            link.disabled = false;
            LinkOp::Update
        }
        None => LinkOp::Update,
    };
    let link = write_version(&state, link, op).await?;
    Ok(Json(view(&state, &link)).into_response())
}

/// `DELETE /api/links/{code}`: disables the link (its code stays taken, its history kept).
pub(crate) async fn delete_link(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    admit(&state, &headers, Scope::LinksWrite)?;
    let mut link = current(&state, &code).await?;
    link.disabled = true;
    let link = write_version(&state, link, LinkOp::Disable).await?;
    Ok(Json(view(&state, &link)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn aliases_are_checked_for_shape_and_reserved_words() {
        assert!(validate_alias("spring-sale_2026").is_ok());
        for bad in ["ab", "has space", "slash/y", "API", "metrics", &"x".repeat(65)] {
            assert!(validate_alias(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn generated_codes_are_seven_base62_characters_and_differ() {
        let a = new_code();
        assert_eq!(a.len(), 7);
        assert!(a.bytes().all(|b| BASE62.contains(&b)));
        let distinct: std::collections::HashSet<String> = (0..1000).map(|_| new_code()).collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn times_are_rfc3339_in_and_out() {
        let ms = parse_time("expires_at", "2030-01-31T12:00:00Z").unwrap();
        assert_eq!(format_time(ms), "2030-01-31T12:00:00.000Z");
        assert!(parse_time("expires_at", "tomorrow").unwrap_err().status() == StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn patch_tells_an_absent_field_from_an_explicit_null() {
        let patch: PatchLink = serde_json::from_str(r#"{"expires_at": null}"#).unwrap();
        assert_eq!(patch.expires_at, Some(None));
        assert_eq!(patch.fallback_url, None);
    }
}
