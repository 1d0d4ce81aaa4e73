//! The compact click batch: many click events in one Kafka message, each distinct text written
//! once per message. An edge's batch holds one partition's clicks, so a link's code, the user
//! agents, referrers and languages of its visitors repeat, and the message is a fraction of the
//! NDJSON lines' size (the broker's cost per click follows the bytes; `bench/README.md`).
//! The edge's default layout for clicks (`RUNNEL_CLICK_ENCODING=ndjson` writes NDJSON lines
//! instead, what any JSON consumer reads). Runnel's processors read both.
//!
//! Layout (every integer a LEB128 varint):
//!
//! ```text
//! message := MAGIC event*
//! event   := v id ts_delta link_id text{9}      (code method ua ref lang ip country q utm)
//! ts_delta = zigzag(ts - previous event's ts)   (the first event: from 0)
//! text    := 0                                  empty
//!          | 2·len literal-bytes                a new text (UTF-8), appended to the table
//!          | 2·index + 1                        the table's text number `index`
//! ```
//!
//! `utm` is the link's UTM fields as JSON (empty for none). A message that does not decode
//! whole is refused whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::{ClickLine, ClickRef, Utm};

/// The first bytes of a compact batch (no NDJSON line starts with a zero byte); the last one is
/// the layout's version.
pub const MAGIC: &[u8; 4] = b"\0RC1";

/// Whether `payload` is a compact batch (of any version) rather than NDJSON lines.
pub fn is_compact(payload: &[u8]) -> bool {
    payload.starts_with(&MAGIC[..3])
}

/// Writes click events into one compact batch.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
    /// Text hash → table index; the text itself is read back from `out` to confirm a match.
    seen: HashMap<u64, u32, foldhash::fast::FixedState>,
    /// Where each table text lies in `out`.
    table: Vec<(u32, u32)>,
    hasher: foldhash::fast::FixedState,
    last_ts: u64,
    events: usize,
    utm_json: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Encoder {
    /// An empty batch with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = Vec::with_capacity(bytes.max(MAGIC.len()));
        out.extend_from_slice(MAGIC);
        Self {
            out,
            seen: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            table: Vec::new(),
            hasher: foldhash::fast::FixedState::default(),
            last_ts: 0,
            events: 0,
            utm_json: Vec::new(),
        }
    }

    /// Appends one event.
    pub fn push(&mut self, event: &ClickRef<'_>) {
        varint(&mut self.out, u64::from(event.v));
        varint(&mut self.out, event.id);
        varint(&mut self.out, zigzag(event.ts.wrapping_sub(self.last_ts) as i64));
        self.last_ts = event.ts;
        varint(&mut self.out, event.link_id);
        for text in [event.code, event.method, event.ua, event.referrer, event.lang, event.ip, event.country, event.q] {
            self.text(text.as_bytes());
        }
        let mut utm = std::mem::take(&mut self.utm_json);
        utm.clear();
        if let Some(fields) = event.utm {
            serde_json::to_writer(&mut utm, fields).expect("UTM fields serialize");
        }
        self.text(&utm);
        self.utm_json = utm;
        self.events += 1;
    }

    fn text(&mut self, text: &[u8]) {
        if text.is_empty() {
            self.out.push(0);
            return;
        }
        let hash = self.hasher.hash_one(text);
        if let Some(&index) = self.seen.get(&hash) {
            let (start, len) = self.table[index as usize];
            if &self.out[start as usize..(start + len) as usize] == text {
                varint(&mut self.out, 2 * u64::from(index) + 1);
                return;
            }
        }
        varint(&mut self.out, 2 * text.len() as u64);
        let start = self.out.len() as u32;
        self.out.extend_from_slice(text);
        let index = self.table.len() as u32;
        self.table.push((start, text.len() as u32));
        // A hash shared by two texts keeps the first; the second is written out each time.
        self.seen.entry(hash).or_insert(index);
    }

    /// Bytes written so far, the header included.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Events written so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether no event was written.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The message, leaving an empty batch with the same capacity behind.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.out.capacity();
        let mut fresh = Vec::with_capacity(capacity);
        fresh.extend_from_slice(MAGIC);
        self.seen.clear();
        self.table.clear();
        self.last_ts = 0;
        self.events = 0;
        std::mem::replace(&mut self.out, fresh)
    }
}

/// Why a compact batch does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("compact click batch, event {event}: {reason}")]
pub struct BatchError {
    /// 1-based number of the event that does not decode (0: the header).
    pub event: usize,
    /// What is wrong.
    pub reason: String,
}

/// Every event of a compact batch, its text borrowed from `payload`; an error for the first
/// event that does not decode (nothing of a batch that fails is returned).
pub fn decode(payload: &[u8]) -> Result<Vec<ClickLine<'_>>, BatchError> {
    let fail = |event: usize, reason: &str| BatchError { event, reason: reason.into() };
    if !payload.starts_with(MAGIC) {
        return Err(fail(0, "not a version-1 compact batch (unknown header)"));
    }
    let mut reader = Reader { buf: payload, at: MAGIC.len(), table: Vec::new() };
    let mut events = Vec::new();
    let mut last_ts: u64 = 0;
    while reader.at < payload.len() {
        let number = events.len() + 1;
        let event = reader.event(&mut last_ts).map_err(|reason| fail(number, reason))?;
        events.push(event);
    }
    Ok(events)
}

/// The events of a click message in either layout as NDJSON lines (what the edge's spool keeps).
pub fn to_lines(payload: &[u8]) -> Result<Vec<u8>, BatchError> {
    if !is_compact(payload) {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::with_capacity(payload.len() * 4);
    for event in decode(payload)? {
        event.as_click_ref().encode_line(&mut out);
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    table: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.at) else { return Err("cut short") };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than 64 bits")
    }

    fn text(&mut self) -> Result<&'a str, &'static str> {
        let tag = self.varint()?;
        if tag == 0 {
            return Ok("");
        }
        if tag & 1 == 1 {
            return usize::try_from(tag >> 1)
                .ok()
                .and_then(|i| self.table.get(i).copied())
                .ok_or("unknown text reference");
        }
        let len = usize::try_from(tag >> 1).map_err(|_| "text too long")?;
        let end = self.at.checked_add(len).filter(|end| *end <= self.buf.len()).ok_or("cut short")?;
        let text = std::str::from_utf8(&self.buf[self.at..end]).map_err(|_| "text is not UTF-8")?;
        self.at = end;
        self.table.push(text);
        Ok(text)
    }

    fn event(&mut self, last_ts: &mut u64) -> Result<ClickLine<'a>, &'static str> {
        let v = u16::try_from(self.varint()?).map_err(|_| "schema version out of range")?;
        let id = self.varint()?;
        let ts = last_ts.wrapping_add(unzigzag(self.varint()?) as u64);
        *last_ts = ts;
        let link_id = self.varint()?;
        let mut texts = [""; 9];
        for text in &mut texts {
            *text = self.text()?;
        }
        let [code, method, ua, referrer, lang, ip, country, q, utm] = texts;
        let utm = if utm.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Utm>(utm).map_err(|_| "UTM fields are not valid JSON")?)
        };
        Ok(ClickLine {
            v,
            id,
            ts,
            link_id,
            code: Cow::Borrowed(code),
            method: Cow::Borrowed(method),
            ua: Cow::Borrowed(ua),
            referrer: Cow::Borrowed(referrer),
            lang: Cow::Borrowed(lang),
            ip: Cow::Borrowed(ip),
            country: Cow::Borrowed(country),
            q: Cow::Borrowed(q),
            utm,
        })
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClickEvent;

    /// xorshift: the same events on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len() as u64) as usize]
        }
    }

    fn events(n: usize) -> Vec<ClickEvent> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let utm = Utm { campaign: Some("spring \"sale\"".into()), source: Some("mail".into()), ..Default::default() };
        (0..n)
            .map(|i| ClickEvent {
                v: 1,
                id: 383_169_784_225_554_432 + i as u64 * 7,
                // Out of order now and then, as clicks of two edge threads are.
                ts: 1_795_000_000_000 + i as u64 * 3 - rng.below(5),
                link_id: rng.below(4) + 1,
                code: rng.pick(&["aB3dE9x", "sale", "x"]).into(),
                method: rng.pick(&["GET", "GET", "HEAD"]).into(),
                ua: rng
                    .pick(&["", "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", "curl/8.4", "ü \"quoted\" \\ \t"])
                    .into(),
                referrer: rng.pick(&["", "https://www.google.com/", "https://t.co/abc"]).into(),
                lang: rng.pick(&["", "en-US,en;q=0.9", "de"]).into(),
                ip: format!("203.0.{}.0", rng.below(300)),
                country: rng.pick(&["", "NZ", "DE"]).into(),
                q: rng.pick(&["", "utm_source=x&a=%20b"]).into(),
                utm: (rng.below(3) == 0).then(|| utm.clone()),
            })
            .collect()
    }

    fn encode(events: &[ClickEvent]) -> Vec<u8> {
        let mut encoder = Encoder::with_capacity(1024);
        for e in events {
            encoder.push(&e.as_click_ref());
        }
        assert_eq!(encoder.events(), events.len());
        encoder.take()
    }

    #[test]
    fn a_batch_decodes_to_the_events_written_and_to_their_ndjson_lines() {
        let events = events(2_000);
        let batch = encode(&events);
        assert!(is_compact(&batch));
        let back: Vec<ClickEvent> = decode(&batch).unwrap().iter().map(ClickLine::to_event).collect();
        assert_eq!(back, events);
        let mut lines = Vec::new();
        for e in &events {
            e.as_click_ref().encode_line(&mut lines);
        }
        assert_eq!(to_lines(&batch).unwrap(), lines, "the spool's lines are the NDJSON layout's");
        assert_eq!(to_lines(&lines).unwrap(), lines, "NDJSON stays as it is");
        assert!(!is_compact(&lines));
        assert!(batch.len() * 4 < lines.len(), "{} bytes against {} as NDJSON", batch.len(), lines.len());
    }

    #[test]
    fn taking_a_batch_starts_the_next_from_nothing() {
        let events = events(20);
        let mut encoder = Encoder::default();
        for e in &events[..10] {
            encoder.push(&e.as_click_ref());
        }
        let first = encoder.take();
        assert!(encoder.is_empty());
        for e in &events[10..] {
            encoder.push(&e.as_click_ref());
        }
        let second = encoder.take();
        let back: Vec<ClickEvent> =
            decode(&first).unwrap().iter().chain(&decode(&second).unwrap()).map(ClickLine::to_event).collect();
        assert_eq!(back, events, "no text reference reaches into the batch before");
        assert_eq!(decode(&Encoder::default().take()).unwrap(), vec![], "an empty batch is its header");
    }

    #[test]
    fn a_damaged_batch_is_refused_whole_without_panicking() {
        let batch = encode(&events(40));
        // Every cut, and every byte flipped, either decodes or says which event failed.
        for end in 0..batch.len() {
            match decode(&batch[..end]) {
                Ok(events) => assert!(end >= MAGIC.len() && events.len() <= 40),
                Err(error) => assert!(error.event <= 40, "{error}"),
            }
        }
        for at in 0..batch.len() {
            let mut damaged = batch.clone();
            damaged[at] ^= 0xa5;
            let _ = decode(&damaged);
        }
        assert_eq!(decode(b"\0RC2...").unwrap_err().event, 0, "another version is refused");
        let error = decode(&[MAGIC.as_slice(), &[1, 1, 0, 1, 3]].concat()).unwrap_err();
        assert_eq!((error.event, error.reason.as_str()), (1, "unknown text reference"));
        let error = decode(&[MAGIC.as_slice(), &[1, 1, 0, 1, 8, b'a', b'b']].concat()).unwrap_err();
        assert_eq!(error.reason, "cut short");
    }
}
