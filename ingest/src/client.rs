//! Who is asking: the client IP (from the socket, or from `X-Forwarded-For` when the peer is a
//! trusted proxy), truncated unless configured otherwise, and the country a CDN put in a header.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::EdgeError;

/// Parses comma separated CIDRs (a bare address counts as a /32 or /128).
pub(crate) fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, EdgeError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| EdgeError::Invalid {
                variable: "RUNNEL_TRUSTED_PROXIES",
                reason: format!("'{s}' is not a CIDR such as 10.0.0.0/8"),
            })
        })
        .collect()
}

/// A request's headers as the redirect reads them: an `http` [`HeaderMap`] (requests served by
/// hyper), or the headers as `httparse` found them in the request (the edge's own HTTP/1.1
/// path, [`crate::http1`]), read in place.
pub(crate) trait RequestHeaders {
    /// The first value of the header `name` (lower-case), when it is visible ASCII text (as
    /// [`axum::http::HeaderValue::to_str`] requires).
    fn text(&self, name: &str) -> Option<&str>;
    /// Every value of the header `name` (lower-case) that is visible ASCII text, in order.
    fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str>;
    /// The headers a click event carries, each as [`RequestHeaders::text`] reads it ("" for
    /// none); `country_header` is the name of the CDN's country header ("" for none).
    fn click_texts(&self, country_header: &str) -> ClickTexts<'_> {
        let text = |name: &str| if name.is_empty() { "" } else { self.text(name).unwrap_or("") };
        ClickTexts {
            ua: text("user-agent"),
            referrer: text("referer"),
            lang: text("accept-language"),
            country: text(country_header),
        }
    }
}

/// The headers of a request that go into its click event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClickTexts<'a> {
    pub(crate) ua: &'a str,
    pub(crate) referrer: &'a str,
    pub(crate) lang: &'a str,
    /// The CDN's country header as sent (see [`country_code`]).
    pub(crate) country: &'a str,
}

impl RequestHeaders for HeaderMap {
    fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }

    fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.get_all(name).iter().filter_map(|v| v.to_str().ok())
    }
}

impl RequestHeaders for [httparse::Header<'_>] {
    fn text(&self, name: &str) -> Option<&str> {
        self.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| parsed_text(h.value))
    }

    fn texts<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).filter_map(|h| parsed_text(h.value))
    }

    /// One pass over the headers (a redirect's hot path), the first of each name counting.
    fn click_texts(&self, country_header: &str) -> ClickTexts<'_> {
        // The first header of each name, found or not yet.
        let mut found: [Option<&[u8]>; 4] = [None; 4];
        for header in self {
            let name = header.name;
            let slot = match name.len() {
                10 if name.eq_ignore_ascii_case("user-agent") => 0,
                7 if name.eq_ignore_ascii_case("referer") => 1,
                15 if name.eq_ignore_ascii_case("accept-language") => 2,
                n if n == country_header.len() && n > 0 && name.eq_ignore_ascii_case(country_header) => 3,
                _ => continue,
            };
            found[slot].get_or_insert(header.value);
        }
        let [ua, referrer, lang, country] = found.map(|value| value.and_then(parsed_text).unwrap_or(""));
        ClickTexts { ua, referrer, lang, country }
    }
}

/// A header value `httparse` accepted, as text when it is visible ASCII (`HeaderValue::to_str`'s
/// rule). `httparse` lets through only tabs, visible ASCII and bytes from 0x80 up, so ASCII is
/// all that is left to check.
fn parsed_text(value: &[u8]) -> Option<&str> {
    if value.is_ascii() { std::str::from_utf8(value).ok() } else { None }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub(crate) fn client_ip<H: RequestHeaders + ?Sized>(peer: IpAddr, headers: &H, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers.texts("x-forwarded-for").flat_map(|v| v.split(','));
    let hops: Vec<IpAddr> = forwarded.filter_map(|hop| hop.trim().parse().ok()).collect();
    hops.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
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

/// `ip` as its `Display` text, written into `buf` without allocating: IPv4 (nearly every
/// click) octet by octet, IPv6 through `Display`.
pub(crate) fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let text = digits.format(octet).as_bytes();
                buf[len..len + text.len()].copy_from_slice(text);
                len += text.len();
            }
            len
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // At most 45 bytes (`ffff:…:255.255.255.255`): the buffer holds any of them.
            let _ = write!(cursor, "{v6}");
            cursor.position() as usize
        }
    };
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// A two-letter country code from the configured header's value, upper-cased; `None` when not
/// a country code (CDNs send `XX` or `T1` for unknown and Tor).
pub(crate) fn country_code(value: &str) -> Option<[u8; 2]> {
    match value.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() && !value.eq_ignore_ascii_case("xx") => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_the_display_text() {
        let mut buf = [0u8; 48];
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "192.168.100.255",
            "255.255.255.255",
            "10.0.0.10",
            "::",
            "::1",
            "2001:db8::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "fe80::1:2:3:4",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string());
        }
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = parse_cidrs("10.0.0.0/8, 192.168.1.1").unwrap();
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(client_ip(peer, &xff("203.0.113.9, 10.9.9.9"), &trusted).to_string(), "203.0.113.9");
        // A client cannot claim an address through an untrusted peer.
        assert_eq!(
            client_ip("198.51.100.7".parse().unwrap(), &xff("203.0.113.9"), &trusted).to_string(),
            "198.51.100.7"
        );
        // A spoofed left-most entry is ignored: the right-most untrusted hop wins.
        assert_eq!(client_ip(peer, &xff("1.1.1.1, 203.0.113.9"), &trusted).to_string(), "203.0.113.9");
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
        assert!(parse_cidrs("10.0.0.0/33").unwrap_err().to_string().contains("RUNNEL_TRUSTED_PROXIES"));
    }

    #[test]
    fn ips_are_truncated_to_their_network() {
        assert_eq!(truncate_ip("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(truncate_ip("2001:db8:abcd:12::1".parse().unwrap()).to_string(), "2001:db8:abcd::");
        assert_eq!(truncate_ip("::ffff:198.51.100.9".parse().unwrap()).to_string(), "198.51.100.0");
    }

    #[test]
    fn only_real_country_codes_are_taken_from_the_cdn_header() {
        assert_eq!(country_code("de"), Some(*b"DE"));
        assert_eq!(country_code("NZ"), Some(*b"NZ"));
        for not_a_country in ["XX", "xx", "T1", "", "D", "DEU", "dé"] {
            assert_eq!(country_code(not_a_country), None, "{not_a_country:?}");
        }
    }

    #[test]
    fn click_texts_read_like_text_in_one_pass() {
        let raw: &[(&str, &[u8])] = &[
            ("Host", b"e.com"),
            ("user-agent", b"Mozilla/5.0"),
            ("Referer", "https://b\u{e9}.example/".as_bytes()),
            ("CF-IPCountry", b"de"),
            ("User-Agent", b"second"),
            ("Accept-Language", b"en-US,en;q=0.9"),
        ];
        let parsed: Vec<httparse::Header<'_>> =
            raw.iter().map(|(name, value)| httparse::Header { name, value }).collect();
        let mut map = HeaderMap::new();
        for (name, value) in raw {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let expected = ClickTexts { ua: "Mozilla/5.0", referrer: "", lang: "en-US,en;q=0.9", country: "de" };
        assert_eq!(parsed.click_texts("cf-ipcountry"), expected, "the first of a name counts; non-ASCII is none");
        assert_eq!(map.click_texts("cf-ipcountry"), expected);
        assert_eq!(parsed.click_texts("").country, "", "no country header configured");
        assert_eq!(map.click_texts("").country, "");
        assert_eq!(parsed[..1].click_texts("cf-ipcountry"), ClickTexts::default());
    }
}
