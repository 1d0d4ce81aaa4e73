//! Turns a click event into a `clicks` row: visitor id and bot flag.

use events::ClickEvent;
use sinks::clickhouse::ClickRow;

/// Substrings of user agents that crawlers and link-preview fetchers send.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "preview",
    "curl/",
    "wget/",
    "python-requests",
    "headless",
];

/// Whether a click came from a machine: HEAD requests, empty or known crawler user agents.
pub(crate) fn is_bot(method: &str, user_agent: &str) -> bool {
    if method == "HEAD" || user_agent.trim().is_empty() {
        return true;
    }
    let lower = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|marker| lower.contains(marker))
}

/// A stable id for a visitor: a hash of the (already truncated) IP and the user agent.
pub(crate) fn visitor_id(ip: &str, user_agent: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(ip.as_bytes());
    hasher.update(&[0]);
    hasher.update(user_agent.as_bytes());
    hasher.digest()
}

/// The row stored for `event`, read from `partition` at `offset`.
pub(crate) fn click_row(event: ClickEvent, partition: i32, offset: i64) -> ClickRow {
    ClickRow {
        event_id: event.id,
        ts: (event.ts / 1000) as u32,
        link_id: event.link_id,
        visitor_id: visitor_id(&event.ip, &event.ua),
        is_bot: u8::from(is_bot(&event.method, &event.ua)),
        code: event.code,
        method: event.method,
        user_agent: event.ua,
        referrer: event.referrer,
        accept_language: event.lang,
        ip: event.ip,
        country: event.country,
        kafka_partition: partition,
        kafka_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_requests_empty_agents_and_crawlers_are_bots_browsers_are_not() {
        assert!(is_bot("HEAD", "Mozilla/5.0"));
        assert!(is_bot("GET", ""));
        assert!(is_bot("GET", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"));
        assert!(is_bot("GET", "facebookexternalhit/1.1"));
        assert!(!is_bot(
            "GET",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
        ));
    }

    #[test]
    fn visitor_ids_depend_on_ip_and_agent() {
        assert_eq!(visitor_id("192.0.2.0", "a"), visitor_id("192.0.2.0", "a"));
        assert_ne!(visitor_id("192.0.2.0", "a"), visitor_id("192.0.3.0", "a"));
        assert_ne!(visitor_id("192.0.2.0", "a"), visitor_id("192.0.2.0", "b"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(visitor_id("ab", "c"), visitor_id("a", "bc"));
    }
}
