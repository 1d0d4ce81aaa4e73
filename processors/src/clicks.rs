//! The clicks pipeline: `runnel.clicks` → enrich → ClickHouse `clicks` (and its views) + Redis
//! click counters. Each row is encoded in `RowBinary` as it is made (`sinks::clickhouse`'s
//! `ClickRowRef`); the batch holds those bytes and the few numbers the counters and fences
//! need, and the archive reads rows back from the bytes.

use std::path::PathBuf;

use events::ClickLine;
use sinks::SinkError;
use sinks::archive::Archive;
use sinks::clickhouse::{CLICK_COLUMNS, ClickRow, ClickhouseWriter};
use sinks::redis::CounterUpdates;

use crate::batch::Stored;
use crate::enrich::Enricher;
use crate::pipeline::{Rejected, Source};

/// One stored click: its `RowBinary` bytes and what the counters and fences read.
pub(crate) struct ClickRecord {
    event_id: u64,
    ts: u32,
    link_id: u64,
    visitor_id: u64,
    is_bot: bool,
    partition: i32,
    offset: i64,
    row_binary: Box<[u8]>,
}

impl Stored for ClickRecord {
    fn event_time(&self) -> u32 {
        self.ts
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn event_key(&self) -> u64 {
        self.event_id
    }
}

/// Click events, enriched.
pub(crate) struct Clicks {
    pub(crate) enricher: Enricher,
    /// Where a row is encoded before it gets a box of its size.
    scratch: Vec<u8>,
}

impl Clicks {
    pub(crate) fn new(enricher: Enricher) -> Self {
        Self { enricher, scratch: Vec::with_capacity(1024) }
    }

    /// The stored row of one decoded event.
    fn record(&mut self, event: &ClickLine<'_>, partition: i32, offset: i64) -> ClickRecord {
        let scratch = &mut self.scratch;
        self.enricher.with_click_row(event, partition, offset, |row| {
            scratch.clear();
            row.write_row_binary(scratch);
            ClickRecord {
                event_id: row.event_id,
                ts: row.ts,
                link_id: row.link_id,
                visitor_id: row.visitor_id,
                is_bot: row.is_bot == 1,
                partition,
                offset,
                row_binary: scratch.as_slice().into(),
            }
        })
    }
}

impl Source for Clicks {
    const NAME: &'static str = "clicks";
    const TABLE: &'static str = "clicks";
    type Row = ClickRecord;

    fn topic(topics: &events::kafka::Topics) -> String {
        topics.clicks.clone()
    }

    fn row(&mut self, line: &[u8], partition: i32, offset: i64) -> Result<ClickRecord, Rejected> {
        let event = ClickLine::decode(line).map_err(|e| ("undecodable", e.to_string()))?;
        Ok(self.record(&event, partition, offset))
    }

    fn message_rows(
        &mut self,
        payload: &[u8],
        partition: i32,
        offset: i64,
    ) -> Option<Result<Vec<ClickRecord>, Rejected>> {
        if !events::click_batch::is_compact(payload) {
            return None;
        }
        Some(match events::click_batch::decode(payload) {
            Ok(events) => Ok(events.iter().map(|event| self.record(event, partition, offset)).collect()),
            Err(error) => Err(("undecodable", error.to_string())),
        })
    }

    fn tally(row: &ClickRecord, updates: &mut CounterUpdates) {
        updates.click(row.link_id, u64::from(row.ts), row.is_bot, row.visitor_id);
    }

    async fn insert<'a>(
        writer: &'a ClickhouseWriter,
        token: &'a str,
        rows: &'a [&'a ClickRecord],
    ) -> Result<(), SinkError> {
        let bytes: Vec<&[u8]> = rows.iter().map(|r| &*r.row_binary).collect();
        writer.insert_row_binary(Self::TABLE, CLICK_COLUMNS, Some(token), &bytes).await
    }

    fn archive(
        archive: &Archive,
        topic: &str,
        partition: i32,
        (first, last): (i64, i64),
        rows: &[(u32, &ClickRecord)],
    ) -> Result<Vec<PathBuf>, SinkError> {
        let owned = rows
            .iter()
            .map(|(ts, record)| {
                ClickRow::read_row_binary(&record.row_binary).map(|row| (*ts, row)).ok_or_else(|| SinkError::Corrupt {
                    key: format!("click {}", record.event_id),
                    reason: "its RowBinary bytes do not read back".into(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<(u32, &ClickRow)> = owned.iter().map(|(ts, row)| (*ts, row)).collect();
        archive.write(topic, partition, first, last, &rows)
    }
}
