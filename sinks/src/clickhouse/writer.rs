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

/// One row of the `links` dimension (a version of a link).
#[derive(Clone, Debug, Row, Serialize, PartialEq, Eq)]
pub struct LinkRow {
    /// The link's id.
    pub link_id: u64,
    /// Short code.
    pub code: String,
    /// Destination.
    pub url: String,
    /// 301, 302, 307 or 308.
    pub redirect_status: u16,
    /// Expiry, ms since the Unix epoch; 0 for none.
    pub expires_ms: u64,
    /// Fallback URL, empty for none.
    pub fallback_url: String,
    /// 1 when the query string is passed through.
    pub passthrough: u8,
    /// 1 when disabled.
    pub disabled: u8,
    /// Labels.
    pub tags: Vec<String>,
    /// UTM parameters, empty when unset.
    pub utm_source: String,
    /// `utm_medium`.
    pub utm_medium: String,
    /// `utm_campaign`.
    pub utm_campaign: String,
    /// `utm_term`.
    pub utm_term: String,
    /// `utm_content`.
    pub utm_content: String,
    /// Creation, seconds since the Unix epoch.
    pub created: u32,
    /// This version's time, seconds since the Unix epoch.
    pub updated: u32,
    /// The version (the link event's id); the newest wins.
    pub version: u64,
}

impl From<&events::LinkEvent> for LinkRow {
    fn from(link: &events::LinkEvent) -> Self {
        let utm = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            link_id: link.link_id,
            code: link.code.clone(),
            url: link.url.clone(),
            redirect_status: link.redirect_status,
            expires_ms: link.expires_ms.unwrap_or(0),
            fallback_url: link.fallback_url.clone().unwrap_or_default(),
            passthrough: u8::from(link.passthrough),
            disabled: u8::from(link.disabled),
            tags: link.tags.clone(),
            utm_source: utm(&link.utm.source),
            utm_medium: utm(&link.utm.medium),
            utm_campaign: utm(&link.utm.campaign),
            utm_term: utm(&link.utm.term),
            utm_content: utm(&link.utm.content),
            created: (link.created_ms / 1000) as u32,
            updated: (link.updated_ms.max(link.created_ms) / 1000) as u32,
            version: link.id,
        }
    }
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

    /// Inserts link versions into the `links` dimension in one INSERT.
    pub async fn insert_links<'a>(&self, rows: impl IntoIterator<Item = &'a LinkRow>) -> Result<(), SinkError> {
        let mut insert = self.client.insert::<LinkRow>("links").await.map_err(|e| self.config.error(e))?;
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
