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
