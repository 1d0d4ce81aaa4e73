//! Click rows encoded in ClickHouse's `RowBinary` as they are made, instead of held as
//! [`ClickRow`] structs and serialized at the INSERT: the processor builds one borrowed
//! [`ClickRowRef`] per event, writes it to bytes, and keeps the bytes and a few numbers. Rows
//! are read back into [`ClickRow`] only for the Parquet archive.
//!
//! `RowBinary`: integers little-endian, `DateTime` as `UInt32`, `String` as its byte length in
//! unsigned LEB128 and the bytes. The columns are [`CLICK_COLUMNS`], in `ClickRow`'s field order
//! (a test checks it against the `Row` derive, and another that the server reads the bytes as
//! the derive's INSERT writes them).

use super::ClickRow;

/// The `clicks` columns a row's bytes hold, in order.
pub const CLICK_COLUMNS: &[&str] = &[
    "event_id",
    "ts",
    "link_id",
    "code",
    "method",
    "user_agent",
    "referrer",
    "accept_language",
    "ip",
    "country",
    "city",
    "browser",
    "os",
    "device",
    "referrer_host",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "visitor_id",
    "is_bot",
    "kafka_partition",
    "kafka_offset",
];

/// A click row borrowing its text: what [`ClickRow`] holds, for encoding without copies.
#[derive(Clone, Copy, Debug)]
pub struct ClickRowRef<'a> {
    pub event_id: u64,
    pub ts: u32,
    pub link_id: u64,
    pub code: &'a str,
    pub method: &'a str,
    pub user_agent: &'a str,
    pub referrer: &'a str,
    pub accept_language: &'a str,
    pub ip: &'a str,
    pub country: &'a str,
    pub city: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub device: &'a str,
    pub referrer_host: &'a str,
    pub channel: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_term: &'a str,
    pub utm_content: &'a str,
    pub visitor_id: u64,
    pub is_bot: u8,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl ClickRowRef<'_> {
    /// Appends the row's `RowBinary` bytes (columns [`CLICK_COLUMNS`]).
    pub fn write_row_binary(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.event_id.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.link_id.to_le_bytes());
        for text in [
            self.code,
            self.method,
            self.user_agent,
            self.referrer,
            self.accept_language,
            self.ip,
            self.country,
            self.city,
            self.browser,
            self.os,
            self.device,
            self.referrer_host,
            self.channel,
            self.utm_source,
            self.utm_medium,
            self.utm_campaign,
            self.utm_term,
            self.utm_content,
        ] {
            let mut len = text.len();
            while len >= 0x80 {
                out.push((len as u8) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.visitor_id.to_le_bytes());
        out.push(self.is_bot);
        out.extend_from_slice(&self.kafka_partition.to_le_bytes());
        out.extend_from_slice(&self.kafka_offset.to_le_bytes());
    }

    /// The owned row.
    pub fn to_row(&self) -> ClickRow {
        ClickRow {
            event_id: self.event_id,
            ts: self.ts,
            link_id: self.link_id,
            code: self.code.into(),
            method: self.method.into(),
            user_agent: self.user_agent.into(),
            referrer: self.referrer.into(),
            accept_language: self.accept_language.into(),
            ip: self.ip.into(),
            country: self.country.into(),
            city: self.city.into(),
            browser: self.browser.into(),
            os: self.os.into(),
            device: self.device.into(),
            referrer_host: self.referrer_host.into(),
            channel: self.channel.into(),
            utm_source: self.utm_source.into(),
            utm_medium: self.utm_medium.into(),
            utm_campaign: self.utm_campaign.into(),
            utm_term: self.utm_term.into(),
            utm_content: self.utm_content.into(),
            visitor_id: self.visitor_id,
            is_bot: self.is_bot,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
        }
    }
}

impl ClickRow {
    /// The row borrowed.
    pub fn as_ref(&self) -> ClickRowRef<'_> {
        ClickRowRef {
            event_id: self.event_id,
            ts: self.ts,
            link_id: self.link_id,
            code: &self.code,
            method: &self.method,
            user_agent: &self.user_agent,
            referrer: &self.referrer,
            accept_language: &self.accept_language,
            ip: &self.ip,
            country: &self.country,
            city: &self.city,
            browser: &self.browser,
            os: &self.os,
            device: &self.device,
            referrer_host: &self.referrer_host,
            channel: &self.channel,
            utm_source: &self.utm_source,
            utm_medium: &self.utm_medium,
            utm_campaign: &self.utm_campaign,
            utm_term: &self.utm_term,
            utm_content: &self.utm_content,
            visitor_id: self.visitor_id,
            is_bot: self.is_bot,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
        }
    }

    /// Reads one row written by [`ClickRowRef::write_row_binary`]; `None` when `bytes` are not
    /// exactly one such row.
    pub fn read_row_binary(bytes: &[u8]) -> Option<ClickRow> {
        let mut reader = Reader(bytes);
        // Fields are read in the order written here, which is the columns' order.
        let row = ClickRowRef {
            event_id: reader.u64()?,
            ts: reader.u32()?,
            link_id: reader.u64()?,
            code: reader.string()?,
            method: reader.string()?,
            user_agent: reader.string()?,
            referrer: reader.string()?,
            accept_language: reader.string()?,
            ip: reader.string()?,
            country: reader.string()?,
            city: reader.string()?,
            browser: reader.string()?,
            os: reader.string()?,
            device: reader.string()?,
            referrer_host: reader.string()?,
            channel: reader.string()?,
            utm_source: reader.string()?,
            utm_medium: reader.string()?,
            utm_campaign: reader.string()?,
            utm_term: reader.string()?,
            utm_content: reader.string()?,
            visitor_id: reader.u64()?,
            is_bot: reader.take(1)?[0],
            kafka_partition: i32::from_le_bytes(reader.take(4)?.try_into().ok()?),
            kafka_offset: i64::from_le_bytes(reader.take(8)?.try_into().ok()?),
        };
        reader.0.is_empty().then(|| row.to_row())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<&'a str> {
        let mut len = 0usize;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            len |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return std::str::from_utf8(self.take(len)?).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ClickRow {
        ClickRow {
            event_id: 0x0102_0304_0506_0708,
            ts: 1_700_000_000,
            link_id: 42,
            code: "abc".into(),
            method: "HEAD".into(),
            user_agent: "é".repeat(100), // 200 bytes: a two-byte length
            referrer: "https://www.google.com/".into(),
            accept_language: "en".into(),
            ip: "192.0.2.0".into(),
            country: "DE".into(),
            city: "Berlin".into(),
            browser: "Chrome".into(),
            os: "Windows 10".into(),
            device: "desktop".into(),
            referrer_host: "google.com".into(),
            channel: "search".into(),
            utm_source: "news".into(),
            utm_medium: "email".into(),
            utm_campaign: "spring".into(),
            utm_term: String::new(),
            utm_content: "x".repeat(20_000), // a three-byte length
            visitor_id: u64::MAX,
            is_bot: 1,
            kafka_partition: -1,
            kafka_offset: 1 << 40,
        }
    }

    #[test]
    fn the_columns_are_the_row_derives() {
        assert_eq!(CLICK_COLUMNS, <ClickRow as clickhouse::Row>::COLUMN_NAMES);
    }

    #[test]
    fn a_row_reads_back_as_written_and_damaged_bytes_do_not() {
        let row = row();
        let mut bytes = Vec::new();
        row.as_ref().write_row_binary(&mut bytes);
        assert_eq!(bytes[..8], 0x0102_0304_0506_0708u64.to_le_bytes());
        let ua = 8 + 4 + 8 + (1 + 3) + (1 + 4);
        assert_eq!(bytes[ua..ua + 2], [0xc8, 0x01], "200 as LEB128");
        assert_eq!(ClickRow::read_row_binary(&bytes), Some(row));
        assert_eq!(ClickRow::read_row_binary(&bytes[..bytes.len() - 1]), None, "cut short");
        bytes.push(0);
        assert_eq!(ClickRow::read_row_binary(&bytes), None, "a byte too many");
    }
}
