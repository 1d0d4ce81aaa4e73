//! Runnel's wire contract: the events that travel on Kafka, their JSON encoding, event ids,
//! and the topics they travel on.
//!
//! Every payload is a JSON object with a schema version field `"v"`. A Kafka message may carry
//! several events as newline-delimited JSON, so any JSON consumer (ClickHouse's Kafka engine
//! included) can read the topics. An edge may instead write its clicks as compact batches
//! ([`click_batch`], `RUNNEL_CLICK_ENCODING=compact`), which Runnel's processors read too.

mod click;
pub mod click_batch;
mod click_line;
mod codec;
mod id;
pub mod kafka;
mod link;
mod order;
pub mod producer;

pub use click::{ClickEvent, ClickRef, MAX_QUERY_BYTES, capped_query};
pub use click_line::ClickLine;
pub use codec::{DecodeError, Lines, decode_ndjson, encode_ndjson, lines};
pub use id::{EPOCH_MS, EventIdGenerator, event_id_millis};
pub use link::{LinkEvent, LinkOp, Utm};
pub use order::{FieldError, LineItem, OrderEvent, OrderStatus, Totals, decode_order};

/// The schema version this build writes. Readers accept this version and older ones.
pub const SCHEMA_VERSION: u16 = 1;

pub(crate) fn schema_version() -> u16 {
    SCHEMA_VERSION
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
