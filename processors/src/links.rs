//! The links pipeline: the compacted links topic → the Redis link index and the ClickHouse
//! `links` dimension. Both writes are idempotent by version (Redis keeps a newer version, the
//! dimension keeps the highest on merge), so replays after a crash change nothing and the edge's
//! own writes to the index commute with this pipeline's.
//!
//! [`rebuild_links`] replays the whole topic into the index: the index is a view of the topic.

use std::future::Future;
use std::time::{Duration, Instant};

use events::LinkEvent;
use events::kafka::KafkaConfig;
use metrics::counter;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sinks::clickhouse::{ClickhouseWriter, LinkRow};
use sinks::redis::{LinkIndex, RedisConfig};

use crate::dlq::{DeadLetters, Source};
use crate::metrics::{EVENTS_CONSUMED_TOTAL, ROWS_STORED_TOTAL};
use crate::retry::with_backoff;
use crate::{ProcessConfig, ProcessError};

const PIPELINE: &str = "links";
const MAX_BATCH: usize = 1_000;
const MAX_AGE: Duration = Duration::from_millis(200);

/// Runs the links pipeline until `shutdown` completes; then stores and commits what it holds.
pub async fn run_links(config: &ProcessConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProcessError> {
    config.kafka.check_reachable().await?;
    config.clickhouse.server_version().await?;
    let index = LinkIndex::new(config.redis.clone(), config.redis.connect().await?);
    let clickhouse = ClickhouseWriter::new(config.clickhouse.clone());
    let topics = config.kafka.topics();
    let mut consumer_config = config.kafka.client_config();
    consumer_config
        .set("group.id", format!("{}{PIPELINE}", config.group_prefix))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.kafka_session_timeout_ms.to_string());
    config.set_membership(&mut consumer_config);
    let consumer: StreamConsumer = consumer_config.create()?;
    consumer.subscribe(&[topics.links.as_str()])?;
    let mut dlq_config = config.kafka.client_config();
    dlq_config.set("acks", "all");
    let dlq = DeadLetters::new(
        events::producer::AckedProducer::create(&dlq_config)?,
        topics.dlq.clone(),
        Duration::from_millis(config.retry_max_backoff_ms),
    );
    let max_backoff = Duration::from_millis(config.retry_max_backoff_ms);
    crate::metrics::register_known(PIPELINE, &["clickhouse", "redis"]);
    tracing::info!(topic = %topics.links, "links pipeline started");

    tokio::pin!(shutdown);
    let mut batch: Vec<LinkEvent> = Vec::new();
    let mut offsets = TopicPartitionList::new();
    let mut started: Option<Instant> = None;
    loop {
        let deadline =
            tokio::time::Instant::now() + MAX_AGE.saturating_sub(started.map_or(Duration::ZERO, |s| s.elapsed()));
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(deadline), if started.is_some() => {}
            received = consumer.recv() => match received {
                Ok(message) => {
                    started.get_or_insert_with(Instant::now);
                    offsets.add_partition_offset(&topics.links, message.partition(), Offset::Offset(message.offset() + 1))?;
                    // Compaction tombstones (no payload) carry nothing to apply.
                    if let Some(payload) = message.payload() {
                        match serde_json::from_slice::<LinkEvent>(payload) {
                            Ok(link) => batch.push(link),
                            Err(error) => {
                                let source = Source { pipeline: PIPELINE, topic: &topics.links, partition: message.partition(), offset: message.offset(), line: 1 };
                                dlq.send(source, message.key(), payload, "undecodable", &error.to_string()).await;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "Kafka consumer error"),
            }
        }
        if batch.len() >= MAX_BATCH || started.is_some_and(|s| s.elapsed() >= MAX_AGE) {
            store(&index, &clickhouse, &batch, max_backoff).await?;
            if offsets.count() > 0
                && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
            {
                tracing::warn!(%error, "offset commit failed; versions keep replays harmless");
            }
            batch.clear();
            offsets = TopicPartitionList::new();
            started = None;
        }
    }
    store(&index, &clickhouse, &batch, max_backoff).await?;
    if offsets.count() > 0 {
        let _ = consumer.commit(&offsets, CommitMode::Sync);
    }
    consumer.unsubscribe();
    tracing::info!("links pipeline drained");
    Ok(())
}

async fn store(
    index: &LinkIndex,
    clickhouse: &ClickhouseWriter,
    batch: &[LinkEvent],
    max_backoff: Duration,
) -> Result<(), ProcessError> {
    if batch.is_empty() {
        return Ok(());
    }
    counter!(EVENTS_CONSUMED_TOTAL, "pipeline" => PIPELINE).increment(batch.len() as u64);
    let rows: Vec<LinkRow> = batch.iter().map(LinkRow::from).collect();
    with_backoff(PIPELINE, "clickhouse", max_backoff, || clickhouse.insert("links", None, &rows)).await?;
    counter!(ROWS_STORED_TOTAL, "pipeline" => PIPELINE, "sink" => "clickhouse").increment(rows.len() as u64);
    for link in batch {
        if with_backoff(PIPELINE, "redis", max_backoff, || index.put(link)).await? {
            // A version the index did not have yet (written by another writer): tell the edges.
            let _ = index.announce(&link.code).await;
            counter!(ROWS_STORED_TOTAL, "pipeline" => PIPELINE, "sink" => "redis").increment(1);
        }
    }
    Ok(())
}

/// What a rebuild did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    /// Link events read from the topic.
    pub read: u64,
    /// Versions written to the index (newer than what it held).
    pub written: u64,
    /// Events that did not decode (skipped).
    pub undecodable: u64,
}

/// Replays the whole links topic into the Redis index, calling `progress` every 1,000 events.
pub async fn rebuild_links(
    kafka: &KafkaConfig,
    redis: &RedisConfig,
    mut progress: impl FnMut(&RebuildReport),
) -> Result<RebuildReport, ProcessError> {
    // Read each partition up to where it ends now.
    let (consumer, mut remaining) =
        crate::dump::read_from_start(kafka, &kafka.topics().links, "runnel-links-rebuild").await?;
    let index = LinkIndex::new(redis.clone(), redis.connect().await?);
    let mut report = RebuildReport::default();
    while !remaining.is_empty() {
        let message = consumer.recv().await?;
        if let Some(payload) = message.payload() {
            report.read += 1;
            match serde_json::from_slice::<LinkEvent>(payload) {
                Ok(link) => report.written += u64::from(index.put(&link).await?),
                Err(_) => report.undecodable += 1,
            }
            if report.read % 1_000 == 0 {
                progress(&report);
            }
        }
        if remaining.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            remaining.remove(&message.partition());
        }
    }
    Ok(report)
}
