//! The clicks pipeline: `runnel.clicks` → enrich → ClickHouse `clicks` (and its views) + Redis
//! click counters.

use events::ClickLine;
use sinks::clickhouse::ClickRow;
use sinks::redis::CounterUpdates;

use crate::batch::Stored;
use crate::enrich::Enricher;
use crate::pipeline::Source;

impl Stored for ClickRow {
    fn event_time(&self) -> u32 {
        self.ts
    }
    fn partition(&self) -> i32 {
        self.kafka_partition
    }
    fn offset(&self) -> i64 {
        self.kafka_offset
    }
    fn event_key(&self) -> u64 {
        self.event_id
    }
}

/// Click events, enriched.
pub(crate) struct Clicks {
    pub(crate) enricher: Enricher,
}

impl Source for Clicks {
    const NAME: &'static str = "clicks";
    const TABLE: &'static str = "clicks";
    type Row = ClickRow;

    fn topic(topics: &events::kafka::Topics) -> String {
        topics.clicks.clone()
    }

    fn row(&mut self, line: &[u8], partition: i32, offset: i64) -> Result<ClickRow, (&'static str, String)> {
        let event = ClickLine::decode(line).map_err(|e| ("undecodable", e.to_string()))?;
        Ok(self.enricher.click_row(&event, partition, offset))
    }

    fn tally(row: &ClickRow, updates: &mut CounterUpdates) {
        updates.click(row.link_id, u64::from(row.ts), row.is_bot == 1, row.visitor_id);
    }
}
