//! Inserts raw click rows, each carrying its Kafka partition and offset, and reads the offset
//! fence the same INSERT advances (through `clicks_offsets_mv`).

use clickhouse::{Client, Row};
use serde::Serialize;

use super::ClickhouseConfig;
use crate::{Fences, SinkError};

/// One row of the `clicks` table.
#[derive(Clone, Debug, Row, Serialize, PartialEq, Eq)]
pub struct ClickRow {
    /// Event id from the edge.
    pub event_id: u64,
    /// Seconds since the Unix epoch (ClickHouse `DateTime`).
    pub ts: u32,
    /// The link's numeric id.
    pub link_id: u64,
    /// Short code requested.
    pub code: String,
    /// `GET` or `HEAD`.
    pub method: String,
    /// `User-Agent`.
    pub user_agent: String,
    /// `Referer`.
    pub referrer: String,
    /// `Accept-Language`.
    pub accept_language: String,
    /// Client IP as the edge stored it.
    pub ip: String,
    /// Two-letter country, empty when unknown.
    pub country: String,
    /// Keyed hash identifying a visitor.
    pub visitor_id: u64,
    /// 1 for crawlers, previews and HEAD requests.
    pub is_bot: u8,
    /// Kafka partition the event came from.
    pub kafka_partition: i32,
    /// Kafka offset of the message that carried the event.
    pub kafka_offset: i64,
}

/// Writes click rows into one database.
#[derive(Clone)]
pub struct ClickhouseWriter {
    config: ClickhouseConfig,
    client: Client,
}

#[derive(Row, serde::Deserialize)]
struct FenceRow {
    kafka_partition: i32,
    max_offset: i64,
}

impl ClickhouseWriter {
    /// A writer for the configured database.
    pub fn new(config: ClickhouseConfig) -> Self {
        let client = config.client();
        Self { config, client }
    }

    /// Inserts `rows` in one INSERT (one part, and one fence update through the view).
    pub async fn insert_clicks<'a>(&self, rows: impl IntoIterator<Item = &'a ClickRow>) -> Result<(), SinkError> {
        let mut insert = self.client.insert::<ClickRow>("clicks").await.map_err(|e| self.config.error(e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| self.config.error(e))?;
        }
        insert.end().await.map_err(|e| self.config.error(e))
    }

    /// The highest offset stored per partition for `source` (the raw table's name).
    pub async fn fences(&self, source: &str) -> Result<Fences, SinkError> {
        let rows: Vec<FenceRow> = self
            .client
            .query("SELECT kafka_partition, maxMerge(max_offset) AS max_offset FROM kafka_offsets WHERE source = ? GROUP BY kafka_partition")
            .bind(source)
            .fetch_all()
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(rows.into_iter().map(|r| (r.kafka_partition, r.max_offset)).collect())
    }
}
