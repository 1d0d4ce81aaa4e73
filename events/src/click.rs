//! The click event: one redirect (or HEAD) served by an edge.

use serde::{Deserialize, Serialize};

use crate::Utm;

/// Longest query string a click event carries; longer ones are cut at a character boundary.
pub const MAX_QUERY_BYTES: usize = 2048;

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
    /// The request's query string (without `?`), at most [`MAX_QUERY_BYTES`]; its `utm_*`
    /// parameters are the click's own campaign fields.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub q: String,
    /// The link's UTM parameters at the time of the click, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
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
    /// The request's query string, at most [`MAX_QUERY_BYTES`].
    #[serde(skip_serializing_if = "str::is_empty")]
    pub q: &'a str,
    /// The link's UTM parameters, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utm: Option<&'a Utm>,
}

/// `query` cut to at most [`MAX_QUERY_BYTES`] at a character boundary.
pub fn capped_query(query: &str) -> &str {
    if query.len() <= MAX_QUERY_BYTES {
        return query;
    }
    let mut end = MAX_QUERY_BYTES;
    while !query.is_char_boundary(end) {
        end -= 1;
    }
    &query[..end]
}

impl ClickEvent {
    /// The event borrowed, for encoding.
    pub fn as_click_ref(&self) -> ClickRef<'_> {
        ClickRef {
            v: self.v,
            id: self.id,
            ts: self.ts,
            link_id: self.link_id,
            code: &self.code,
            method: &self.method,
            ua: &self.ua,
            referrer: &self.referrer,
            lang: &self.lang,
            ip: &self.ip,
            country: &self.country,
            q: &self.q,
            utm: self.utm.as_ref(),
        }
    }
}

impl ClickRef<'_> {
    /// Appends the event as one NDJSON line: the bytes `serde_json` writes for it, written field
    /// by field without serde's machinery, once per redirect (`click_line`'s tests compare the
    /// two on 20,000 generated events). The layout is the one [`crate::ClickLine::decode`]
    /// reads fastest.
    pub fn encode_line(&self, out: &mut Vec<u8>) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(b"{\"v\":");
        out.extend_from_slice(digits.format(self.v).as_bytes());
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(digits.format(self.id).as_bytes());
        out.extend_from_slice(b",\"ts\":");
        out.extend_from_slice(digits.format(self.ts).as_bytes());
        out.extend_from_slice(b",\"link_id\":");
        out.extend_from_slice(digits.format(self.link_id).as_bytes());
        json_field(out, b",\"code\":", self.code);
        json_field(out, b",\"method\":", self.method);
        json_field(out, b",\"ua\":", self.ua);
        json_field(out, b",\"ref\":", self.referrer);
        json_field(out, b",\"lang\":", self.lang);
        json_field(out, b",\"ip\":", self.ip);
        if !self.country.is_empty() {
            json_field(out, b",\"country\":", self.country);
        }
        if !self.q.is_empty() {
            json_field(out, b",\"q\":", self.q);
        }
        if let Some(utm) = self.utm {
            out.extend_from_slice(b",\"utm\":");
            serde_json::to_writer(&mut *out, utm).expect("UTM fields serialize");
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `prefix` then `text` as a JSON string. Text with nothing to escape (the usual header) is
/// copied as it is; anything else is escaped by `serde_json`, so the bytes are always its own.
fn json_field(out: &mut Vec<u8>, prefix: &[u8], text: &str) {
    out.extend_from_slice(prefix);
    if text.bytes().fold(false, |escape, b| escape | (b == b'"') | (b == b'\\') | (b < 0x20)) {
        serde_json::to_writer(&mut *out, text).expect("a string serializes");
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
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
            q: "utm_source=x&a=1",
            utm: Some(&Utm { campaign: Some("spring".into()), ..Utm::default() }),
        };
        let mut line = Vec::new();
        r.encode_line(&mut line);
        let owned: ClickEvent = serde_json::from_slice(&line).unwrap();
        let mut again = Vec::new();
        crate::encode_ndjson(&mut again, [&owned]);
        assert_eq!(line, again);
        assert_eq!(owned.ua, "u\"a");
        assert_eq!(owned.utm.unwrap().campaign.as_deref(), Some("spring"));
    }

    #[test]
    fn long_queries_are_cut_at_a_character_boundary() {
        assert_eq!(capped_query("a=1"), "a=1");
        let long = "é".repeat(MAX_QUERY_BYTES);
        let cut = capped_query(&long);
        assert!(cut.len() <= MAX_QUERY_BYTES && cut.len() >= MAX_QUERY_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
