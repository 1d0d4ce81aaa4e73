//! `GET|HEAD /{code}`: resolve the link, answer with its redirect, hand a click event to the
//! producer without waiting. Rules: disabled → 404; expired → its fallback URL, else 410;
//! unknown → 404 (an orphan visit, counted); HEAD answers like GET and its event says `HEAD`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Extension, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use events::{ClickRef, LinkEvent, SCHEMA_VERSION};

use crate::ApiError;
use crate::client::{RequestHeaders, client_ip, country_code, ip_text, truncate_ip};
use crate::limits::Class;
use crate::server::{AppState, RequestId};

/// Longest code looked up; longer paths cannot be links.
pub(crate) const MAX_CODE_BYTES: usize = 64;

/// The router's handler of `/{code}`. GET and HEAD requests of one plain path segment are
/// answered before the router by [`answer`], as here: by the edge's own HTTP/1.1 path
/// ([`crate::http1`]) or, on connections served by hyper, [`crate::server`]'s fast path.
pub(crate) async fn redirect(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(RequestId(id)): Extension<RequestId>,
    // The request by value: its headers are read in place (the `HeaderMap` extractor clones them).
    request: Request,
) -> Result<Response, ApiError> {
    let redirect = answer(&state, &code, query.as_deref(), &method, peer.ip(), id, request.headers()).await?;
    Ok(redirect.into_response(&state.cache_control))
}

/// A redirect's status and `Location` (the `Cache-Control` is the edge's).
pub(crate) struct Redirect {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<HeaderValue>,
}

impl Redirect {
    /// The response: its status, `Location` and `cache_control`.
    pub(crate) fn into_response(self, cache_control: &HeaderValue) -> Response {
        let mut response = self.status.into_response();
        let h = response.headers_mut();
        // Destinations are validated when written, so they are valid header values.
        if let Some(location) = self.location {
            h.insert(header::LOCATION, location);
        }
        h.insert(header::CACHE_CONTROL, cache_control.clone());
        response
    }
}

/// The redirect of `code` for a request from `peer`, its click event handed to the producer.
pub(crate) async fn answer<H: RequestHeaders + ?Sized>(
    state: &AppState,
    code: &str,
    query: Option<&str>,
    method: &Method,
    peer: IpAddr,
    id: u64,
    headers: &H,
) -> Result<Redirect, ApiError> {
    let ip = client_ip(peer, headers, &state.trusted_proxies);
    if state.limits.limits_redirects() {
        state.limits.check(Class::Redirects, &ip.to_string())?;
    }
    if code.len() > MAX_CODE_BYTES {
        state.redirects.not_found.increment(1);
        return Err(ApiError::not_found("no such link"));
    }
    let cached = match state.links.resolve(code).await {
        Ok(Some(cached)) => cached,
        Ok(None) => {
            state.redirects.not_found.increment(1);
            return Err(ApiError::not_found("no such link"));
        }
        Err(error) => {
            state.redirects.error.increment(1);
            return Err(ApiError::unavailable("link index", error));
        }
    };
    let link = &cached.link;
    if link.disabled {
        state.redirects.disabled.increment(1);
        return Err(ApiError::not_found("no such link"));
    }
    let now = events::now_ms();
    let (status, location) = if link.is_expired(now) {
        match &link.fallback_url {
            Some(fallback) => {
                state.redirects.fallback.increment(1);
                (StatusCode::FOUND, HeaderValue::from_str(fallback).ok())
            }
            None => {
                state.redirects.expired.increment(1);
                return Err(ApiError::new(StatusCode::GONE, "expired", "this link has expired"));
            }
        }
    } else {
        state.redirects.found.increment(1);
        let location = match query {
            // Only a passthrough link with a query needs its Location built per request.
            Some(q) if link.passthrough && !q.is_empty() => HeaderValue::from_str(&destination(link, Some(q))).ok(),
            _ => cached.location.clone(),
        };
        (StatusCode::from_u16(link.redirect_status).unwrap_or(StatusCode::FOUND), location)
    };

    if state.capture_clicks {
        let texts = headers.click_texts(&state.country_header);
        let mut ip_buf = [0u8; 48];
        let ip = ip_text(if state.store_full_ip { ip } else { truncate_ip(ip) }, &mut ip_buf);
        let country = country_code(texts.country);
        state.producers.send_click(&ClickRef {
            v: SCHEMA_VERSION,
            id,
            ts: now,
            link_id: link.link_id,
            code,
            method: method.as_str(),
            ua: texts.ua,
            referrer: texts.referrer,
            lang: texts.lang,
            ip,
            country: country.as_ref().and_then(|c| std::str::from_utf8(c).ok()).unwrap_or(""),
            q: events::capped_query(query.unwrap_or("")),
            utm: (!link.utm.is_empty()).then_some(&link.utm),
        });
    }

    Ok(Redirect { status, location })
}

/// The link's destination with its UTM parameters added (where the destination has none of
/// that name) and, for passthrough links, the incoming query merged in (incoming values win).
pub(crate) fn destination(link: &LinkEvent, incoming: Option<&str>) -> String {
    let incoming = incoming.filter(|q| link.passthrough && !q.is_empty());
    if incoming.is_none() && link.utm.is_empty() {
        return link.url.clone();
    }
    let Ok(mut url) = url::Url::parse(&link.url) else { return link.url.clone() };
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (name, value) in link.utm.pairs() {
        if !pairs.iter().any(|(k, _)| k == name) {
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    for (name, value) in url::form_urlencoded::parse(incoming.unwrap_or("").as_bytes()).into_owned() {
        match pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(pair) => pair.1 = value,
            None => pairs.push((name, value)),
        }
    }
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(url: &str) -> LinkEvent {
        LinkEvent::new(1, "abc", url, 0)
    }

    #[test]
    fn a_plain_link_redirects_to_its_destination_untouched() {
        assert_eq!(destination(&link("https://e.com/p?a=1"), Some("x=2")), "https://e.com/p?a=1");
    }

    #[test]
    fn passthrough_merges_the_incoming_query_and_incoming_values_win() {
        let mut l = link("https://e.com/p?a=1&b=2");
        l.passthrough = true;
        assert_eq!(destination(&l, Some("b=9&c=3")), "https://e.com/p?a=1&b=9&c=3");
        assert_eq!(destination(&l, None), "https://e.com/p?a=1&b=2");
    }

    #[test]
    fn utm_fields_are_added_unless_the_destination_sets_them() {
        let mut l = link("https://e.com/?utm_source=own");
        l.utm.source = Some("link".into());
        l.utm.campaign = Some("spring sale".into());
        assert_eq!(destination(&l, None), "https://e.com/?utm_source=own&utm_campaign=spring+sale");
    }
}
