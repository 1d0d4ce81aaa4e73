//! The orders pipeline: `runnel.orders` → validate → ClickHouse `orders` (and its views) +
//! Redis order counters. The edge validated every event already; the processor checks again,
//! because anything can write to a topic, and sends what fails to the dead-letter topic.

use events::{OrderEvent, decode_order};
use std::path::PathBuf;

use sinks::SinkError;
use sinks::archive::Archive;
use sinks::clickhouse::{ClickhouseWriter, OrderRow};
use sinks::redis::CounterUpdates;

use crate::batch::Stored;
use crate::pipeline::{Rejected, Source};

impl Stored for OrderRow {
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
        // The client's idempotency key, hashed: a repeat of an event is stored once.
        xxhash_rust::xxh3::xxh3_64(self.event_id.as_bytes())
    }
}

/// Order events.
pub(crate) struct Orders;

fn unix_secs(rfc3339: &str) -> Option<u32> {
    let time = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    u32::try_from(time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// The row stored for `event`, or why it cannot be stored.
pub(crate) fn order_row(event: OrderEvent, partition: i32, offset: i64) -> Result<OrderRow, String> {
    let problems = event.problems();
    if let Some(first) = problems.first() {
        return Err(format!("{}: {}", first.path, first.message));
    }
    let ts = unix_secs(&event.time).ok_or_else(|| format!("time: '{}' is not an RFC 3339 time", event.time))?;
    let status =
        serde_json::to_value(event.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    Ok(OrderRow {
        ts,
        received: (event.received_ms / 1000) as u32,
        status,
        currency: event.currency,
        subtotal: event.totals.subtotal,
        tax: event.totals.tax,
        shipping: event.totals.shipping,
        discount: event.totals.discount,
        total: event.totals.total,
        channel: event.channel,
        click_id: event.click_id.unwrap_or(0),
        link_code: event.link_code.unwrap_or_default(),
        item_product_id: event.items.iter().map(|i| i.product_id.clone()).collect(),
        item_sku: event.items.iter().map(|i| i.sku.clone()).collect(),
        item_quantity: event.items.iter().map(|i| i.quantity).collect(),
        item_unit_price: event.items.iter().map(|i| i.unit_price).collect(),
        event_id: event.event_id,
        order_id: event.order_id,
        order_code: event.order_code,
        customer_id: event.customer_id,
        kafka_partition: partition,
        kafka_offset: offset,
    })
}

impl Source for Orders {
    const NAME: &'static str = "orders";
    const TABLE: &'static str = "orders";
    type Row = OrderRow;

    fn topic(topics: &events::kafka::Topics) -> String {
        topics.orders.clone()
    }

    fn row(&mut self, line: &[u8], partition: i32, offset: i64) -> Result<OrderRow, Rejected> {
        let event = decode_order(line).map_err(|e| ("undecodable", format!("{}: {}", e.path, e.message)))?;
        order_row(event, partition, offset).map_err(|reason| ("invalid", reason))
    }

    fn tally(row: &OrderRow, updates: &mut CounterUpdates) {
        let items: Vec<(&str, u32)> =
            row.item_product_id.iter().map(String::as_str).zip(row.item_quantity.iter().copied()).collect();
        updates.order(u64::from(row.ts), &row.status, &row.currency, row.total, &items);
    }

    fn insert<'a>(
        writer: &'a ClickhouseWriter,
        token: &'a str,
        rows: &'a [&'a OrderRow],
    ) -> impl Future<Output = Result<(), SinkError>> + Send + 'a {
        writer.insert(Self::TABLE, Some(token), rows.iter().copied())
    }

    fn archive(
        archive: &Archive,
        topic: &str,
        partition: i32,
        (first, last): (i64, i64),
        rows: &[(u32, &OrderRow)],
    ) -> Result<Vec<PathBuf>, SinkError> {
        archive.write(topic, partition, first, last, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"event_id":"e1","order_id":"o1","customer_id":"c1","status":"paid",
        "items":[{"product_id":"p1","sku":"S1","quantity":2,"unit_price":1500},{"product_id":"p2","quantity":1,"unit_price":500}],
        "currency":"EUR","totals":{"subtotal":3500,"tax":665,"shipping":0,"discount":500,"total":3665},
        "time":"2026-11-01T10:00:00Z","click_id":77,"received_ms":1793527200000}"#;

    #[test]
    fn an_order_event_becomes_one_row_with_its_lines() {
        let row = Orders.row(ORDER.as_bytes(), 2, 9).unwrap();
        assert_eq!((row.status.as_str(), row.total, row.click_id), ("paid", 3665, 77));
        assert_eq!(row.ts, 1_793_527_200);
        assert_eq!(row.item_product_id, ["p1", "p2"]);
        assert_eq!(row.item_quantity, [2, 1]);
        assert_eq!(row.item_sku, ["S1", ""]);
        assert_eq!((row.kafka_partition, row.kafka_offset), (2, 9));
        assert_eq!(row.event_key(), Orders.row(ORDER.as_bytes(), 0, 0).unwrap().event_key());
    }

    #[test]
    fn bad_events_are_refused_naming_the_field() {
        let (kind, reason) = Orders.row(br#"{"event_id":"e1"}"#, 0, 0).unwrap_err();
        assert_eq!(kind, "undecodable");
        assert!(reason.contains("order_id"), "{reason}");
        let wrong_currency = ORDER.replace("\"EUR\"", "\"euro\"");
        let (kind, reason) = Orders.row(wrong_currency.as_bytes(), 0, 0).unwrap_err();
        assert_eq!(kind, "invalid");
        assert!(reason.starts_with("currency:"), "{reason}");
    }
}
