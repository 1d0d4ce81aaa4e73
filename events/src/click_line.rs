//! Decoding click events the way a consumer needs them: borrowed from the message where it
//! can be, and fast for the layout the edge writes.
//!
//! [`ClickLine::decode`] first tries a reader of exactly what [`crate::ClickRef`] encodes (the
//! fields in their order, no whitespace, strings without escapes); it reads such a line in
//! one pass without matching field names. Anything else (another producer's field order,
//! whitespace, escaped strings, an error) goes to `serde_json`, so the result never depends on
//! the path: the fast reader either gives exactly what `serde_json` gives or declines.

use std::borrow::Cow;

use serde::Deserialize;

use crate::Utm;

/// A click event borrowing its text from the line (a string with escapes is copied).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ClickLine<'a> {
    /// Schema version.
    pub v: u16,
    /// Event id.
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    /// The link's numeric id.
    pub link_id: u64,
    /// The short code.
    #[serde(borrow)]
    pub code: Cow<'a, str>,
    /// `GET` or `HEAD`.
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    /// `User-Agent`, empty when absent.
    #[serde(borrow, default)]
    pub ua: Cow<'a, str>,
    /// `Referer`, empty when absent.
    #[serde(borrow, default, rename = "ref")]
    pub referrer: Cow<'a, str>,
    /// `Accept-Language`, empty when absent.
    #[serde(borrow, default)]
    pub lang: Cow<'a, str>,
    /// Client IP as the edge stored it, empty when unknown.
    #[serde(borrow, default)]
    pub ip: Cow<'a, str>,
    /// Two-letter country from the edge's CDN header, empty when unknown.
    #[serde(borrow, default)]
    pub country: Cow<'a, str>,
    /// The request's query string.
    #[serde(borrow, default)]
    pub q: Cow<'a, str>,
    /// The link's UTM parameters at the time of the click.
    #[serde(default)]
    pub utm: Option<Utm>,
}

impl<'a> ClickLine<'a> {
    /// Decodes one NDJSON line (without its newline) as a click event.
    pub fn decode(line: &'a [u8]) -> Result<Self, serde_json::Error> {
        match Reader::new(line).click() {
            Some(click) => Ok(click),
            None => serde_json::from_slice(line),
        }
    }
}

impl ClickLine<'_> {
    /// The event borrowed, for encoding (as NDJSON or into a compact batch).
    pub fn as_click_ref(&self) -> crate::ClickRef<'_> {
        crate::ClickRef {
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

    /// The event with its text copied.
    pub fn to_event(&self) -> crate::ClickEvent {
        crate::ClickEvent {
            v: self.v,
            id: self.id,
            ts: self.ts,
            link_id: self.link_id,
            code: self.code.to_string(),
            method: self.method.to_string(),
            ua: self.ua.to_string(),
            referrer: self.referrer.to_string(),
            lang: self.lang.to_string(),
            ip: self.ip.to_string(),
            country: self.country.to_string(),
            q: self.q.to_string(),
            utm: self.utm.clone(),
        }
    }
}

/// The fast reader: `None` as soon as the line is not exactly the edge's layout.
struct Reader<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(line: &'a [u8]) -> Self {
        Self { line, at: 0 }
    }

    /// Consumes `token` if the line continues with it.
    fn eat(&mut self, token: &[u8]) -> bool {
        let found = self.line[self.at..].starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn expect(&mut self, token: &[u8]) -> Option<()> {
        self.eat(token).then_some(())
    }

    /// An unsigned integer as JSON writes it (no sign, fraction, exponent or leading zero).
    fn unsigned(&mut self) -> Option<u64> {
        let digits = self.line[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.line[self.at] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for b in &self.line[self.at..self.at + digits] {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        self.at += digits;
        // `1.5`, `1e3` and friends are serde_json's to judge.
        match self.line.get(self.at) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b"\"")?;
        let rest = &self.line[self.at..];
        // memchr and a branch-free control-character sweep run a word or a vector at a time;
        // user agents and referrers are long enough for that to matter.
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' || rest[..end].iter().fold(false, |control, b| control | (*b < 0x20)) {
            return None;
        }
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        self.at += end + 1;
        Some(Cow::Borrowed(text))
    }

    /// `,"key":"value"` when the line continues with that key; `Some(empty)` when it does not.
    fn optional_string(&mut self, key: &[u8]) -> Option<Cow<'a, str>> {
        if self.eat(key) { self.string() } else { Some(Cow::Borrowed("")) }
    }

    fn click(mut self) -> Option<ClickLine<'a>> {
        self.expect(b"{\"v\":")?;
        let v = u16::try_from(self.unsigned()?).ok()?;
        self.expect(b",\"id\":")?;
        let id = self.unsigned()?;
        self.expect(b",\"ts\":")?;
        let ts = self.unsigned()?;
        self.expect(b",\"link_id\":")?;
        let link_id = self.unsigned()?;
        self.expect(b",\"code\":")?;
        let code = self.string()?;
        self.expect(b",\"method\":")?;
        let method = self.string()?;
        self.expect(b",\"ua\":")?;
        let ua = self.string()?;
        self.expect(b",\"ref\":")?;
        let referrer = self.string()?;
        self.expect(b",\"lang\":")?;
        let lang = self.string()?;
        self.expect(b",\"ip\":")?;
        let ip = self.string()?;
        let country = self.optional_string(b",\"country\":")?;
        let q = self.optional_string(b",\"q\":")?;
        let utm = if self.eat(b",\"utm\":") {
            let mut json = serde_json::Deserializer::from_slice(&self.line[self.at..]).into_iter::<Option<Utm>>();
            let utm = json.next()?.ok()?;
            self.at += json.byte_offset();
            utm
        } else {
            None
        };
        self.expect(b"}")?;
        if !self.line[self.at..].iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(ClickLine { v, id, ts, link_id, code, method, ua, referrer, lang, ip, country, q, utm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClickEvent, ClickRef};

    /// xorshift: the same lines on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Text mixing plain ASCII with what JSON must escape and what UTF-8 spells in several bytes.
        fn text(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a",
                "Mozilla/5.0 ",
                "é",
                "日本",
                "🦀",
                "\"",
                "\\",
                "/",
                "\n",
                "\t",
                "\u{1}",
                "\u{7f}",
                " ",
                "%20",
                "{",
                "}",
            ];
            let plain = self.below(10) > 0;
            (0..self.below(12))
                .map(|_| {
                    if plain {
                        PIECES[self.below(5) as usize]
                    } else {
                        PIECES[self.below(PIECES.len() as u64) as usize]
                    }
                })
                .collect()
        }
    }

    /// What serde_json makes of `line`, and what `ClickLine::decode` makes of it, agree.
    fn agree(line: &[u8]) -> Option<ClickEvent> {
        let reference: Result<ClickEvent, _> = serde_json::from_slice(line);
        let decoded = ClickLine::decode(line);
        match (&reference, &decoded) {
            (Ok(expected), Ok(got)) => assert_eq!(&got.to_event(), expected, "{}", String::from_utf8_lossy(line)),
            (Err(_), Err(_)) => {}
            _ => panic!("serde_json {reference:?} but decode {decoded:?} for {}", String::from_utf8_lossy(line)),
        }
        reference.ok()
    }

    #[test]
    fn every_line_the_edge_writes_is_serde_jsons_and_decodes_as_serde_json_decodes_it() {
        let mut rng = Rng(0x5eed);
        let mut fast = 0;
        for i in 0..20_000 {
            let texts: Vec<String> = (0..8).map(|_| rng.text()).collect();
            let utm = Utm { source: Some(rng.text()), campaign: Some(rng.text()), ..Utm::default() };
            let event = ClickRef {
                v: 1,
                id: rng.next(),
                ts: rng.below(1 << 45),
                link_id: if i % 7 == 0 { u64::MAX } else { rng.below(1000) },
                code: &texts[0],
                method: if i % 5 == 0 { "HEAD" } else { "GET" },
                ua: &texts[1],
                referrer: &texts[2],
                lang: &texts[3],
                ip: &texts[4],
                country: if i % 3 == 0 { "" } else { &texts[5] },
                q: if i % 2 == 0 { "" } else { &texts[6] },
                utm: (i % 4 == 0).then_some(&utm),
            };
            let mut line = Vec::new();
            event.encode_line(&mut line);
            // The edge's hand-written encoding is serde_json's, byte for byte.
            let mut expected = serde_json::to_vec(&event).unwrap();
            expected.push(b'\n');
            assert_eq!(String::from_utf8_lossy(&line), String::from_utf8_lossy(&expected));
            line.pop();
            assert!(agree(&line).is_some(), "the edge's own line decodes: {}", String::from_utf8_lossy(&line));
            fast += usize::from(Reader::new(&line).click().is_some());
        }
        // Most lines have no escapes; those are read by the fast reader, not handed to serde_json.
        assert!(fast > 5_000, "only {fast} of 20,000 lines took the fast reader");
    }

    #[test]
    fn damaged_or_reordered_lines_get_serde_jsons_answer() {
        let line = br#"{"v":1,"id":7,"ts":1700000000000,"link_id":3,"code":"abc","method":"GET","ua":"Mozilla/5.0","ref":"https://t.co/x","lang":"de","ip":"192.0.2.0","country":"DE","q":"utm_source=a","utm":{"campaign":"spring"}}"#;
        assert!(Reader::new(line).click().is_some(), "the edge's layout takes the fast reader");
        assert_eq!(agree(line).unwrap().utm.unwrap().campaign.as_deref(), Some("spring"));
        // Every prefix, every byte removed, and every byte replaced by a troublesome one.
        for cut in 0..line.len() {
            agree(&line[..cut]);
            let mut without = line.to_vec();
            without.remove(cut);
            agree(&without);
            for b in [b' ', b'"', b'\\', b'0', b'-', b'.', b'e', 0x01, 0xff, b'}', b','] {
                let mut changed = line.to_vec();
                changed[cut] = b;
                agree(&changed);
            }
        }
        for other in [
            r#"{"id":7,"v":1,"ts":1,"link_id":3,"code":"abc","method":"GET"}"#,
            r#"{ "v":1,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"u","ref":"","lang":"","ip":""}"#,
            r#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"u","ref":"","lang":"","ip":""}  "#,
            r#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"u","ref":"","lang":"","ip":""} x"#,
            r#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"u","ref":"","lang":"","ip":"","extra":1}"#,
            r#"{"v":70000,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"","ref":"","lang":"","ip":""}"#,
            r#"{"v":1,"id":18446744073709551616,"ts":1,"link_id":3,"code":"a","method":"GET","ua":"","ref":"","lang":"","ip":""}"#,
            r#"{"v":1,"id":07,"ts":1,"link_id":3,"code":"a","method":"GET","ua":"","ref":"","lang":"","ip":""}"#,
            r#"{"v":1,"id":7,"ts":1.5,"link_id":3,"code":"a","method":"GET","ua":"","ref":"","lang":"","ip":""}"#,
            r#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"a","method":"GET","ua":"","ref":"","lang":"","ip":"","utm":null}"#,
            r#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"a","method":"GET","ua":"","ref":"","lang":"","ip":"","utm":{"x":"y"}}"#,
            "",
            "{}",
            "null",
        ] {
            agree(other.as_bytes());
        }
    }

    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_copied() {
        let line = br#"{"v":1,"id":7,"ts":1,"link_id":3,"code":"abc","method":"GET","ua":"say \"hi\"","ref":"","lang":"","ip":""}"#;
        let click = ClickLine::decode(line).unwrap();
        assert!(matches!(click.code, Cow::Borrowed("abc")));
        assert!(matches!(&click.ua, Cow::Owned(ua) if ua == "say \"hi\""));
    }
}
