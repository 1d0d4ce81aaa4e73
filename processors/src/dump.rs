//! `runnel dump`: a topic's events as NDJSON lines, whatever layout the messages use (compact
//! click batches are decoded), so the clicks topic stays readable without a Kafka tool that
//! knows the layout.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use events::kafka::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::ProcessError;

/// A topic `runnel dump` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpTopic {
    Clicks,
    Orders,
    Links,
}

/// What a dump printed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DumpReport {
    pub messages: u64,
    /// Click messages that do not decode (a damaged compact batch); named on stderr, skipped.
    pub undecodable: u64,
}

/// A consumer outside any group assigned every partition of `topic` from its start, and where
/// each non-empty partition ends now (its high watermark).
pub(crate) async fn read_from_start(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
) -> Result<(StreamConsumer, HashMap<i32, i64>), ProcessError> {
    kafka.validate()?;
    kafka.check_reachable().await?;
    let mut config = kafka.client_config();
    config.set("group.id", format!("{group}-{}", std::process::id())).set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create()?;
    let timeout = Duration::from_millis(kafka.timeout_ms);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> =
        metadata.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high > low {
            ends.insert(partition, high);
        }
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok((consumer, ends))
}

/// Writes every event of `topic` to `out`, one NDJSON line each, from the start of each
/// partition up to where it ends now, or on and on with `follow`.
pub async fn dump(
    kafka: &KafkaConfig,
    topic: DumpTopic,
    follow: bool,
    out: &mut impl Write,
) -> Result<DumpReport, ProcessError> {
    let topics = kafka.topics();
    let name = match topic {
        DumpTopic::Clicks => topics.clicks,
        DumpTopic::Orders => topics.orders,
        DumpTopic::Links => topics.links,
    };
    let (consumer, mut remaining) = read_from_start(kafka, &name, "runnel-dump").await?;
    let mut report = DumpReport::default();
    while follow || !remaining.is_empty() {
        let message = consumer.recv().await?;
        let payload = message.payload().unwrap_or_default();
        report.messages += 1;
        let lines = match topic {
            DumpTopic::Clicks => events::click_batch::to_lines(payload),
            DumpTopic::Orders | DumpTopic::Links => Ok(payload.to_vec()),
        };
        match lines {
            Ok(mut lines) => {
                if !lines.is_empty() && !lines.ends_with(b"\n") {
                    lines.push(b'\n');
                }
                out.write_all(&lines)?;
            }
            Err(error) => {
                report.undecodable += 1;
                eprintln!("{name} partition {} offset {}: {error}", message.partition(), message.offset());
            }
        }
        if remaining.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            remaining.remove(&message.partition());
        }
    }
    out.flush()?;
    Ok(report)
}
