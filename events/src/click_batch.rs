//! The compact click batch: many click events in one Kafka message, each distinct text written
//! once per message. An edge's batch holds one partition's clicks, so a link's code, the user
//! agents, referrers and languages of its visitors repeat, and the message is a fraction of the
//! NDJSON lines' size (the broker's cost per click follows the bytes; `bench/README.md`).
//! The edge's default layout for clicks (`RUNNEL_CLICK_ENCODING=ndjson` writes NDJSON lines
//! instead, what any JSON consumer reads). Runnel's processors read both.
//!
//! Layout, version 2 (what [`Encoder`] writes; every integer a LEB128 varint):
//!
//! ```text
//! message := MAGIC event*
//! event   := v id_delta ts_delta link text{8}   (method ua ref lang ip country q utm)
//! id_delta = zigzag(id - previous event's id)   (the first event: from 0)
//! ts_delta = zigzag(ts - previous event's ts)   (the first event: from 0)
//! link    := 0 link_id text                     a new (link id, code), appended to the link table
//!          | index + 1                          the link table's entry number `index`
//! text    := 0                                  empty
//!          | 2·len literal-bytes                a new text (UTF-8), appended to the text table
//!          | 2·index + 1                        the text table's entry number `index`
//! ```
//!
//! Version 1 (`\0RC1`, written by earlier edges, still read) wrote `id` and `link_id`
//! whole and the code as a text in every event: `event := v id ts_delta link_id text{9}`. An
//! edge's ids are consecutive across its clicks, and a batch's clicks come from a few popular
//! links, so version 2 takes about half the bytes per click.
//!
//! `utm` is the link's UTM fields as JSON (empty for none). A message that does not decode
//! whole is refused whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::{ClickLine, ClickRef, Utm};

/// The first bytes of a compact batch as [`Encoder`] writes it (no NDJSON line starts with a
/// zero byte); the last one is the layout's version.
pub const MAGIC: &[u8; 4] = b"\0RC2";
/// The header of version 1, still read.
const MAGIC_V1: &[u8; 4] = b"\0RC1";

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
    /// Link id → (link table index, text table index of its code).
    links: HashMap<u64, (u32, u32), foldhash::fast::FixedState>,
    /// Entries in the link table.
    link_count: u32,
    hasher: foldhash::fast::FixedState,
    last_id: u64,
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
            links: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            link_count: 0,
            hasher: foldhash::fast::FixedState::default(),
            last_id: 0,
            last_ts: 0,
            events: 0,
            utm_json: Vec::new(),
        }
    }

    /// Appends one event.
    pub fn push(&mut self, event: &ClickRef<'_>) {
        varint(&mut self.out, u64::from(event.v));
        varint(&mut self.out, zigzag(event.id.wrapping_sub(self.last_id) as i64));
        self.last_id = event.id;
        varint(&mut self.out, zigzag(event.ts.wrapping_sub(self.last_ts) as i64));
        self.last_ts = event.ts;
        self.link(event.link_id, event.code.as_bytes());
        for text in [event.method, event.ua, event.referrer, event.lang, event.ip, event.country, event.q] {
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

    /// Writes a link: a reference when this batch had the same link id with the same code.
    fn link(&mut self, link_id: u64, code: &[u8]) {
        if let Some(&(index, code_index)) = self.links.get(&link_id)
            && self.table_text(code_index) == Some(code)
        {
            varint(&mut self.out, u64::from(index) + 1);
            return;
        }
        self.out.push(0);
        varint(&mut self.out, link_id);
        let code_index = self.text(code);
        // A link id seen with another code (never written by an edge) keeps its first entry;
        // the second pair is written out each time.
        if let Some(code_index) = code_index {
            self.links.entry(link_id).or_insert((self.link_count, code_index));
        }
        self.link_count += 1;
    }

    /// The text table's entry `index`.
    fn table_text(&self, index: u32) -> Option<&[u8]> {
        let (start, len) = *self.table.get(index as usize)?;
        self.out.get(start as usize..(start + len) as usize)
    }

    /// Writes a text; returns its text table index (`None` for the empty text).
    fn text(&mut self, text: &[u8]) -> Option<u32> {
        if text.is_empty() {
            self.out.push(0);
            return None;
        }
        let hash = self.hasher.hash_one(text);
        if let Some(&index) = self.seen.get(&hash)
            && self.table_text(index) == Some(text)
        {
            varint(&mut self.out, 2 * u64::from(index) + 1);
            return Some(index);
        }
        varint(&mut self.out, 2 * text.len() as u64);
        let start = self.out.len() as u32;
        self.out.extend_from_slice(text);
        let index = self.table.len() as u32;
        self.table.push((start, text.len() as u32));
        // A hash shared by two texts keeps the first; the second is written out each time.
        self.seen.entry(hash).or_insert(index);
        Some(index)
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
        self.links.clear();
        self.link_count = 0;
        self.last_id = 0;
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
    let version = if payload.starts_with(MAGIC) {
        2
    } else if payload.starts_with(MAGIC_V1) {
        1
    } else {
        return Err(fail(0, "not a version-1 or version-2 compact batch (unknown header)"));
    };
    let mut reader =
        Reader { buf: payload, at: MAGIC.len(), table: Vec::new(), links: Vec::new(), last_id: 0, last_ts: 0 };
    let mut events = Vec::new();
    while reader.at < payload.len() {
        let number = events.len() + 1;
        let event = if version == 2 { reader.event() } else { reader.event_v1() };
        events.push(event.map_err(|reason| fail(number, reason))?);
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
    /// Version 2's link table: (link id, code).
    links: Vec<(u64, &'a str)>,
    last_id: u64,
    last_ts: u64,
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

    fn delta(&mut self, last: u64) -> Result<u64, &'static str> {
        Ok(last.wrapping_add(unzigzag(self.varint()?) as u64))
    }

    /// A version-2 event.
    fn event(&mut self) -> Result<ClickLine<'a>, &'static str> {
        let v = u16::try_from(self.varint()?).map_err(|_| "schema version out of range")?;
        self.last_id = self.delta(self.last_id)?;
        self.last_ts = self.delta(self.last_ts)?;
        let (link_id, code) = match self.varint()? {
            0 => {
                let link = (self.varint()?, self.text()?);
                self.links.push(link);
                link
            }
            tag => usize::try_from(tag - 1)
                .ok()
                .and_then(|i| self.links.get(i).copied())
                .ok_or("unknown link reference")?,
        };
        let mut texts = [""; 8];
        for text in &mut texts {
            *text = self.text()?;
        }
        let [method, ua, referrer, lang, ip, country, q, utm] = texts;
        self.line(v, link_id, [code, method, ua, referrer, lang, ip, country, q, utm])
    }

    /// A version-1 event.
    fn event_v1(&mut self) -> Result<ClickLine<'a>, &'static str> {
        let v = u16::try_from(self.varint()?).map_err(|_| "schema version out of range")?;
        self.last_id = self.varint()?;
        self.last_ts = self.delta(self.last_ts)?;
        let link_id = self.varint()?;
        let mut texts = [""; 9];
        for text in &mut texts {
            *text = self.text()?;
        }
        self.line(v, link_id, texts)
    }

    /// The event read, its id and time the last read.
    fn line(&self, v: u16, link_id: u64, texts: [&'a str; 9]) -> Result<ClickLine<'a>, &'static str> {
        let [code, method, ua, referrer, lang, ip, country, q, utm] = texts;
        let utm = if utm.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Utm>(utm).map_err(|_| "UTM fields are not valid JSON")?)
        };
        Ok(ClickLine {
            v,
            id: self.last_id,
            ts: self.last_ts,
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
        assert_eq!(decode(b"\0RC9...").unwrap_err().event, 0, "another version is refused");
        let error = decode(&[MAGIC.as_slice(), &[1, 1, 0, 1]].concat()).unwrap_err();
        assert_eq!((error.event, error.reason.as_str()), (1, "unknown link reference"));
        let error = decode(&[MAGIC.as_slice(), &[1, 1, 0, 0, 5, 3]].concat()).unwrap_err();
        assert_eq!((error.event, error.reason.as_str()), (1, "unknown text reference"));
        let error = decode(&[MAGIC.as_slice(), &[1, 1, 0, 0, 5, 8, b'a', b'b']].concat()).unwrap_err();
        assert_eq!(error.reason, "cut short");
        let error = decode(&[MAGIC_V1.as_slice(), &[1, 1, 0, 1, 3]].concat()).unwrap_err();
        assert_eq!((error.event, error.reason.as_str()), (1, "unknown text reference"));
    }

    /// Version 1's layout, as edges wrote it before version 2.
    fn encode_v1(events: &[ClickEvent]) -> Vec<u8> {
        let mut out = MAGIC_V1.to_vec();
        let mut table: Vec<String> = Vec::new();
        let mut last_ts = 0;
        for e in events {
            let e = e.as_click_ref();
            varint(&mut out, u64::from(e.v));
            varint(&mut out, e.id);
            varint(&mut out, zigzag(e.ts.wrapping_sub(last_ts) as i64));
            last_ts = e.ts;
            varint(&mut out, e.link_id);
            let utm = e.utm.map(|u| serde_json::to_string(u).unwrap()).unwrap_or_default();
            for text in [e.code, e.method, e.ua, e.referrer, e.lang, e.ip, e.country, e.q, &utm] {
                match table.iter().position(|t| t == text) {
                    _ if text.is_empty() => out.push(0),
                    Some(i) => varint(&mut out, 2 * i as u64 + 1),
                    None => {
                        varint(&mut out, 2 * text.len() as u64);
                        out.extend_from_slice(text.as_bytes());
                        table.push(text.to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn version_1_batches_still_decode_and_version_2_takes_half_the_bytes() {
        let events = events(2_000);
        let v1 = encode_v1(&events);
        let back: Vec<ClickEvent> = decode(&v1).unwrap().iter().map(ClickLine::to_event).collect();
        assert_eq!(back, events);
        assert!(is_compact(&v1));
        assert_eq!(to_lines(&v1).unwrap(), to_lines(&encode(&events)).unwrap());

        // An edge's clicks: event ids from its generator, link ids as links get them, a few
        // popular links, one user agent per visitor.
        let ids = crate::EventIdGenerator::new(3);
        let links: Vec<u64> = (0..20).map(|_| ids.next_id()).collect();
        let mut rng = Rng(7);
        let clicks: Vec<ClickEvent> = (0..5_000)
            .map(|i| {
                let link = rng.below(20) as usize * rng.below(2) as usize;
                let mut e = events[i % events.len()].clone();
                (e.id, e.link_id, e.code) = (ids.next_id(), links[link], format!("code{link}"));
                e
            })
            .collect();
        let (v1, v2) = (encode_v1(&clicks), encode(&clicks));
        assert_eq!(decode(&v2).unwrap().iter().map(ClickLine::to_event).collect::<Vec<_>>(), clicks);
        assert!(v2.len() * 2 < v1.len(), "version 2: {} bytes, version 1: {}", v2.len(), v1.len());
    }
}
