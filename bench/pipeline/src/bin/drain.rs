//! The source limit: a bare rdkafka consumer reading every partition of
//! `{RUNNEL_TOPIC_PREFIX}clicks` from the start (no group), counting event lines, until it has
//! seen `EVENTS`. Nothing is stored; NDJSON is not decoded (compact batches are, to count them).
//!
//! Usage: drain EVENTS

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000_000);
    let brokers = std::env::var("RUNNEL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("{}clicks", std::env::var("RUNNEL_TOPIC_PREFIX").unwrap_or_else(|_| "runnel.".into()));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "runnel-bench-drain")
        .set("enable.auto.commit", "false")
        // The same fetch wait as the processors (tansu holds every fetch this long).
        .set("fetch.wait.max.ms", std::env::var("RUNNEL_KAFKA_FETCH_WAIT_MS").unwrap_or_else(|_| "100".into()))
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition_offset(&topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut seen = 0usize;
    while seen < events {
        if let Some(message) = consumer.poll(Duration::from_secs(1)) {
            let message = message?;
            let payload = message.payload().unwrap_or_default();
            // A compact batch is counted by reading it (the events' varints and texts), as a
            // consumer of it must; NDJSON by its newlines.
            seen += if events::click_batch::is_compact(payload) {
                events::click_batch::decode(payload).map_or(0, |events| events.len())
            } else {
                payload.iter().filter(|b| **b == b'\n').count()
            };
        }
    }
    eprintln!("drain: {seen} events");
    Ok(())
}
