//! The click event: one redirect (or HEAD) served by an edge.

use serde::{Deserialize, Serialize};

/// One redirect served by an edge, as produced to the clicks topic (key: link id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// Schema version.
    pub v: u16,
    /// Event id (Snowflake); also the redirect's `X-Request-Id`.
    pub id: u64,
    /// When the edge served the redirect, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The link's numeric id.
    pub link_id: u64,
    /// The short code that was requested.
    pub code: String,
    /// `GET` or `HEAD`.
    pub method: String,
    /// `User-Agent` header, empty when absent.
    #[serde(default)]
    pub ua: String,
    /// `Referer` header, empty when absent.
    #[serde(default, rename = "ref")]
    pub referrer: String,
    /// `Accept-Language` header, empty when absent.
    #[serde(default)]
    pub lang: String,
    /// Client IP as the edge saw it (possibly truncated), empty when unknown.
    #[serde(default)]
    pub ip: String,
    /// Two-letter country from the edge's CDN header, empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
}

/// A click event borrowing its text from the request, for encoding on the redirect path
/// without copying headers. Encodes exactly as [`ClickEvent`] (a test checks it).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClickRef<'a> {
    /// Schema version.
    pub v: u16,
    /// Event id.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// The link's numeric id.
    pub link_id: u64,
    /// The short code.
    pub code: &'a str,
    /// `GET` or `HEAD`.
    pub method: &'a str,
    /// `User-Agent`.
    pub ua: &'a str,
    /// `Referer`.
    #[serde(rename = "ref")]
    pub referrer: &'a str,
    /// `Accept-Language`.
    pub lang: &'a str,
    /// Client IP as stored.
    pub ip: &'a str,
    /// Two-letter country or empty.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub country: &'a str,
}

impl ClickRef<'_> {
    /// Appends the event as one NDJSON line.
    pub fn encode_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("click event serializes");
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_click_encodes_like_an_owned_one() {
        let r = ClickRef {
            v: 1,
            id: 7,
            ts: 9,
            link_id: 3,
            code: "c",
            method: "GET",
            ua: "u\"a",
            referrer: "r",
            lang: "l",
            ip: "1.2.3.0",
            country: "",
        };
        let mut line = Vec::new();
        r.encode_line(&mut line);
        let owned: ClickEvent = serde_json::from_slice(&line).unwrap();
        let mut again = Vec::new();
        crate::encode_ndjson(&mut again, [&owned]);
        assert_eq!(line, again);
        assert_eq!(owned.ua, "u\"a");
    }
}
