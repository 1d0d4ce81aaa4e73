//! Inserts raw click rows, each carrying its Kafka partition and offset, and reads the offset
//! fence the same INSERT advances (through `_clicks_offsets_mv`, which sorts before every other view: 0008).

use clickhouse::{Client, Row};
use serde::Serialize;

use super::ClickhouseConfig;
use crate::{Fences, SinkError};

/// One row of the `clicks` table, owned. The processor writes rows as [`super::ClickRowRef`]
/// straight to `RowBinary`; this form is for the archive and for tests.
#[derive(Clone, Debug, Default, Row, Serialize, serde::Deserialize, PartialEq, Eq)]
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
    /// City (English name) from the GeoIP database, empty when unknown.
    pub city: String,
    /// Browser family (`Chrome`, `Safari`, …; `UNKNOWN` when not recognised).
    pub browser: String,
    /// Operating system (`Windows 10`, `iPhone`, `Android`, …).
    pub os: String,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    pub device: String,
    /// The referrer's host without `www.`, empty for none.
    pub referrer_host: String,
    /// `direct`, `search`, `social`, `email` or `other`.
    pub channel: String,
    /// Campaign fields: the request's `utm_*` parameters, else the link's.
    pub utm_source: String,
    /// `utm_medium`.
    pub utm_medium: String,
    /// `utm_campaign`.
    pub utm_campaign: String,
    /// `utm_term`.
    pub utm_term: String,
    /// `utm_content`.
    pub utm_content: String,
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

/// One row of the `orders` table: one order event.
#[derive(Clone, Debug, Row, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct OrderRow {
    /// The client's idempotency key.
    pub event_id: String,
    /// When it happened (the event's `time`), seconds since the Unix epoch.
    pub ts: u32,
    /// When the edge accepted it, seconds since the Unix epoch.
    pub received: u32,
    /// The order's id.
    pub order_id: String,
    /// The order's human-facing code.
    pub order_code: String,
    /// The customer's id.
    pub customer_id: String,
    /// `created`, `paid`, `shipped`, `delivered`, `cancelled` or `refunded`.
    pub status: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of the lines, minor units.
    pub subtotal: i64,
    /// Tax, minor units.
    pub tax: i64,
    /// Shipping, minor units.
    pub shipping: i64,
    /// Discount, minor units.
    pub discount: i64,
    /// What the customer pays, minor units.
    pub total: i64,
    /// Sales channel.
    pub channel: String,
    /// The attributed click's event id, 0 for none.
    pub click_id: u64,
    /// The attributed link's code, empty for none.
    pub link_code: String,
    /// Product id of each line.
    pub item_product_id: Vec<String>,
    /// SKU of each line.
    pub item_sku: Vec<String>,
    /// Units of each line.
    pub item_quantity: Vec<u32>,
    /// Unit price of each line, minor units.
    pub item_unit_price: Vec<i64>,
    /// Kafka partition the event came from.
    pub kafka_partition: i32,
    /// Kafka offset of the message that carried it.
    pub kafka_offset: i64,
}

/// Writes rows into one database.
#[derive(Clone)]
pub struct ClickhouseWriter {
    config: ClickhouseConfig,
    client: Client,
    /// Whether INSERTs carry deduplication tokens (servers from [`DEDUP_TOKENS_SINCE`]).
    dedup_tokens: bool,
}

/// The oldest server the processor sends insert deduplication tokens to: 24.7 made views
/// deduplicate by the token (before, equal blocks a view made from different inserts could be
/// taken for one another), and 24.8 is the long-term release after it. Migration 0009 turns the
/// tables' deduplication logs on from the same version.
pub const DEDUP_TOKENS_SINCE: super::ServerVersion = super::ServerVersion(24, 8);

/// The settings an INSERT carries so that a retry of it is dropped by every table (raw, and
/// each view's) that stored it, and written to those that did not.
pub fn dedup_settings(token: &str) -> [(&'static str, String); 2] {
    [
        ("insert_deduplication_token", token.to_string()),
        ("deduplicate_blocks_in_dependent_materialized_views", "1".to_string()),
    ]
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
        Self { config, client, dedup_tokens: false }
    }

    /// A writer that sends deduplication tokens when `server` takes them.
    pub fn for_server(config: ClickhouseConfig, server: super::ServerVersion) -> Self {
        Self { dedup_tokens: server >= DEDUP_TOKENS_SINCE, ..Self::new(config) }
    }

    /// A writer whose INSERTs have the server write the table's materialized views at once, on
    /// several threads (`parallel_view_processing`), when `on`. The raw rows are still written
    /// first and the views started in name order, so the fences' views (which sort first) move
    /// with the raw rows either way (docs/reliability.md).
    pub fn with_parallel_views(mut self, on: bool) -> Self {
        if on {
            self.client = self.client.with_setting("parallel_view_processing", "1");
        }
        self
    }

    /// Whether this writer's INSERTs carry deduplication tokens.
    pub fn sends_dedup_tokens(&self) -> bool {
        self.dedup_tokens
    }

    /// Inserts `rows` into `table` in one INSERT: one part, and one fence update through the
    /// table's offsets view. `token` names the rows (the same rows, the same token): on servers
    /// that take it, a retry is dropped by every table that stored the first attempt.
    pub async fn insert<'a, R>(
        &self,
        table: &str,
        token: Option<&str>,
        rows: impl IntoIterator<Item = &'a R>,
    ) -> Result<(), SinkError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite + Serialize + 'a,
    {
        let mut insert = self.client_for(token).insert::<R>(table).await.map_err(|e| self.config.error(e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| self.config.error(e))?;
        }
        insert.end().await.map_err(|e| self.config.error(e))
    }

    /// Inserts rows already in `RowBinary` (`rows`, each the bytes of one row of `columns`)
    /// into `table` in one INSERT, as [`ClickhouseWriter::insert`] does with structs.
    pub async fn insert_row_binary(
        &self,
        table: &str,
        columns: &[&str],
        token: Option<&str>,
        rows: &[&[u8]],
    ) -> Result<(), SinkError> {
        // Sent in chunks of a size the allocator keeps reusing: one body of the whole batch
        // (megabytes) would be fresh memory from the kernel, zeroed page by page, every time.
        const CHUNK_BYTES: usize = 256 * 1024;
        let sql = format!("INSERT INTO {table} ({}) FORMAT RowBinary", columns.join(", "));
        let mut insert = self.client_for(token).insert_formatted_with(sql);
        let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
        for row in rows {
            chunk.extend_from_slice(row);
            if chunk.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
                insert.send(full.into()).await.map_err(|e| self.config.error(e))?;
            }
        }
        if !chunk.is_empty() {
            insert.send(chunk.into()).await.map_err(|e| self.config.error(e))?;
        }
        insert.end().await.map_err(|e| self.config.error(e))
    }

    /// The client for an INSERT named by `token`: with the deduplication settings on servers
    /// that take them.
    fn client_for(&self, token: Option<&str>) -> Client {
        match token.filter(|_| self.dedup_tokens) {
            Some(token) => dedup_settings(token)
                .into_iter()
                .fold(self.client.clone(), |client, (name, value)| client.with_setting(name, value)),
            None => self.client.clone(),
        }
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
