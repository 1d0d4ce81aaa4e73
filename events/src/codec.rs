//! JSON encoding of events: one object per line (NDJSON), several events per Kafka message.

use serde::{Serialize, de::DeserializeOwned};

/// A line of a message that is not a valid event.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct DecodeError {
    /// 1-based line number within the message.
    pub line: usize,
    /// What the JSON decoder said.
    #[source]
    pub source: serde_json::Error,
}

/// Appends `events` to `out` as newline-delimited JSON.
pub fn encode_ndjson<'a, T: Serialize + 'a>(out: &mut Vec<u8>, events: impl IntoIterator<Item = &'a T>) {
    for event in events {
        // Serializing these plain structs into a Vec cannot fail.
        serde_json::to_writer(&mut *out, event).expect("event serializes");
        out.push(b'\n');
    }
}

/// The lines of a message: what `payload.split(|b| *b == b'\n')` gives (a trailing empty line
/// after a final newline included), found with `memchr` a word at a time rather than a byte.
pub fn lines(payload: &[u8]) -> Lines<'_> {
    Lines { rest: Some(payload) }
}

/// The iterator [`lines`] returns.
pub struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b'\n', rest) {
            Some(end) => {
                self.rest = Some(&rest[end + 1..]);
                Some(&rest[..end])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Decodes every non-empty line of `payload` as one event.
pub fn decode_ndjson<T: DeserializeOwned>(payload: &[u8]) -> impl Iterator<Item = Result<T, DecodeError>> + '_ {
    lines(payload)
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| serde_json::from_slice(line).map_err(|source| DecodeError { line: i + 1, source }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClickEvent;

    fn click(id: u64) -> ClickEvent {
        ClickEvent {
            v: 1,
            id,
            ts: 1_700_000_000_000,
            link_id: 9,
            code: "abc".into(),
            method: "GET".into(),
            ua: "Mozilla/5.0".into(),
            referrer: String::new(),
            lang: "en".into(),
            ip: "192.0.2.0".into(),
            country: String::new(),
            q: String::new(),
            utm: None,
        }
    }

    #[test]
    fn lines_are_what_splitting_at_newlines_gives() {
        for payload in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"\n\na\n\nbc\n", b"{\"x\":1}\r\n{}\n\n"] {
            let split: Vec<&[u8]> = payload.split(|b| *b == b'\n').collect();
            assert_eq!(lines(payload).collect::<Vec<_>>(), split, "{payload:?}");
        }
    }

    #[test]
    fn several_events_in_one_message_round_trip() {
        let mut buf = Vec::new();
        let events = [click(1), click(2), click(3)];
        encode_ndjson(&mut buf, &events);
        let back: Vec<ClickEvent> = decode_ndjson(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number_and_the_others_still_decode() {
        let mut buf = Vec::new();
        encode_ndjson(&mut buf, &[click(1)]);
        buf.extend_from_slice(b"{not json}\n");
        encode_ndjson(&mut buf, &[click(3)]);
        let results: Vec<Result<ClickEvent, _>> = decode_ndjson(&buf).collect();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().line, 2);
    }

    #[test]
    fn missing_optional_headers_decode_as_empty() {
        let json = br#"{"v":1,"id":5,"ts":1,"link_id":2,"code":"x","method":"HEAD"}"#;
        let event: ClickEvent = decode_ndjson(json).next().unwrap().unwrap();
        assert_eq!(event.ua, "");
        assert_eq!(event.referrer, "");
    }
}
