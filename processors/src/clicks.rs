//! The clicks pipeline: `runnel.clicks` → ClickHouse `clicks` (and its views) + Redis counters.
//!
//! One loop per process: receive, decode, enrich, batch; flush at max rows or max age into
//! ClickHouse, then Redis, each above its own fence; then commit. Rebalance callbacks only
//! record what changed; the loop acts on it before touching the next message, so fences are
//! loaded before a newly assigned partition's first message is handled.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use events::{ClickEvent, decode_ndjson};
use metrics::{counter, histogram};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sinks::Fences;
use sinks::clickhouse::{ClickRow, ClickhouseWriter};
use sinks::redis::{ApplyOutcome, ClickCounters};

use crate::batch::Batch;
use crate::dedup::RecentIds;
use crate::dlq::{DeadLetters, Source};
use crate::enrich::click_row;
use crate::metrics::{
    BATCH_ROWS, DUPLICATES_TOTAL, EVENTS_CONSUMED_TOTAL, FLUSH_DURATION_SECONDS, MESSAGES_SKIPPED_TOTAL, RETRIES_TOTAL,
    ROWS_FENCED_TOTAL, ROWS_STORED_TOTAL,
};
use crate::retry::{jittered, with_backoff};
use crate::{ProcessConfig, ProcessError};

const PIPELINE: &str = "clicks";
/// The name the ClickHouse fence knows this source by (`clicks_offsets_mv`).
const CH_SOURCE: &str = "clicks";

enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Records partition changes for the loop; runs inside the consumer's poll.
#[derive(Default)]
struct Rebalances {
    changes: Mutex<Vec<Change>>,
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.changes.lock().expect("not poisoned").push(Change::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.changes.lock().expect("not poisoned").push(Change::Assigned(partitions(list)));
        }
    }
}

struct Pipeline {
    consumer: StreamConsumer<Rebalances>,
    dlq: DeadLetters,
    topic: String,
    clickhouse: ClickhouseWriter,
    redis: ClickCounters,
    ch_fences: Fences,
    redis_fences: Fences,
    batch: Batch,
    recent: RecentIds,
    max_rows: usize,
    max_bytes: usize,
    max_age: Duration,
    max_backoff: Duration,
}

/// Runs the clicks pipeline until `shutdown` completes; then stores and commits what it holds.
pub async fn run_clicks(config: &ProcessConfig, shutdown: impl Future<Output = ()>) -> Result<(), ProcessError> {
    config.kafka.check_reachable().await?;
    config.clickhouse.server_version().await?;
    let redis = ClickCounters::new(config.redis.clone(), config.redis.connect().await?);
    let topics = config.kafka.topics();

    let mut consumer_config = config.kafka.client_config();
    consumer_config
        .set("group.id", format!("{}{PIPELINE}", config.group_prefix))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", config.kafka_session_timeout_ms.to_string());
    // Static membership: a restarted processor reclaims its partitions at once. Besides being
    // faster, it sidesteps tansu 0.6 keeping a killed dynamic member as group leader.
    consumer_config.set("group.instance.id", config.instance_id());
    let consumer: StreamConsumer<Rebalances> = consumer_config.create_with_context(Rebalances::default())?;
    consumer.subscribe(&[topics.clicks.as_str()])?;
    let mut dlq_config = config.kafka.client_config();
    dlq_config.set("enable.idempotence", "true").set("acks", "all");

    let mut pipeline = Pipeline {
        consumer,
        dlq: DeadLetters::new(
            dlq_config.create()?,
            topics.dlq.clone(),
            Duration::from_millis(config.retry_max_backoff_ms),
        ),
        topic: topics.clicks,
        clickhouse: ClickhouseWriter::new(config.clickhouse.clone()),
        redis,
        ch_fences: Fences::new(),
        redis_fences: Fences::new(),
        batch: Batch::default(),
        recent: RecentIds::new(config.dedup_window_events),
        max_rows: config.batch_max_rows,
        max_bytes: config.batch_max_bytes,
        max_age: Duration::from_millis(config.batch_max_age_ms),
        max_backoff: Duration::from_millis(config.retry_max_backoff_ms),
    };
    tracing::info!(topic = %pipeline.topic, instance = %config.instance_id(), "clicks pipeline started");
    let result = pipeline.run(shutdown).await;
    if result.is_ok() {
        tracing::info!("clicks pipeline drained");
    }
    result
}

impl Pipeline {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessError> {
        tokio::pin!(shutdown);
        loop {
            let deadline = tokio::time::Instant::now() + self.max_age.saturating_sub(self.batch.age());
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(deadline), if !self.batch.is_empty() => {}
                received = self.consumer.recv() => {
                    // Detach the message from the consumer's borrow before acting on rebalances.
                    let message = received.map(|m| (m.partition(), m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                    self.apply_rebalances().await?;
                    match message {
                        Ok((partition, offset, key, payload)) => self.take(partition, offset, key, payload.unwrap_or_default()).await,
                        Err(error) => tracing::warn!(%error, "Kafka consumer error"),
                    }
                }
            }
            self.apply_rebalances().await?;
            if self.batch.len() >= self.max_rows
                || self.batch.bytes() >= self.max_bytes
                || (!self.batch.is_empty() && self.batch.age() >= self.max_age)
            {
                self.flush().await?;
            }
        }
        // Drain: store what is held, commit synchronously, leave the group.
        self.flush().await?;
        self.consumer.unsubscribe();
        Ok(())
    }

    async fn apply_rebalances(&mut self) -> Result<(), ProcessError> {
        let changes = std::mem::take(&mut *self.consumer.context().changes.lock().expect("not poisoned"));
        for change in changes {
            match change {
                Change::Revoked(partitions) => {
                    tracing::info!(?partitions, "partitions revoked; their unstored events are left to the next owner");
                    for id in self.batch.drop_partitions(&partitions) {
                        self.recent.forget(id);
                    }
                    for p in &partitions {
                        self.ch_fences.remove(p);
                        self.redis_fences.remove(p);
                    }
                }
                Change::Assigned(partitions) => {
                    let ch =
                        with_backoff(PIPELINE, "clickhouse", self.max_backoff, || self.clickhouse.fences(CH_SOURCE))
                            .await?;
                    let redis = with_backoff(PIPELINE, "redis", self.max_backoff, || {
                        self.redis.fences(&self.topic, &partitions)
                    })
                    .await?;
                    for p in &partitions {
                        // Another owner may have stored more since we last held the partition.
                        for id in self.batch.drop_partitions(&[*p]) {
                            self.recent.forget(id);
                        }
                        set_fence(&mut self.ch_fences, *p, ch.get(p).copied());
                        set_fence(&mut self.redis_fences, *p, redis.get(p).copied());
                    }
                    tracing::info!(?partitions, ch_fences = ?self.ch_fences, redis_fences = ?self.redis_fences, "partitions assigned; fences loaded");
                }
            }
        }
        Ok(())
    }

    /// Decodes one message into the batch; undecodable lines go to the dead-letter topic.
    async fn take(&mut self, partition: i32, offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>) {
        let stored_everywhere = |fences: &Fences| fences.get(&partition).is_some_and(|f| offset <= *f);
        if stored_everywhere(&self.ch_fences) && stored_everywhere(&self.redis_fences) {
            counter!(MESSAGES_SKIPPED_TOTAL, "pipeline" => PIPELINE).increment(1);
            return;
        }
        self.batch.add_message(partition, offset, payload.len());
        let mut decoded = 0u64;
        for event in decode_ndjson::<ClickEvent>(&payload) {
            match event {
                Ok(event) => {
                    decoded += 1;
                    // The same click twice (an edge re-sent it from its spool): stored once.
                    if self.recent.first_time(event.id) {
                        self.batch.add_row(click_row(event, partition, offset));
                    } else {
                        counter!(DUPLICATES_TOTAL, "pipeline" => PIPELINE).increment(1);
                    }
                }
                Err(error) => {
                    // Only the bad line goes to the dead-letter topic: the good lines of the
                    // message are stored, so replaying the dead letter cannot repeat them.
                    let line = payload.split(|b| *b == b'\n').nth(error.line - 1).unwrap_or_default();
                    let source = Source { pipeline: PIPELINE, topic: &self.topic, partition, offset, line: error.line };
                    self.dlq.send(source, key.as_deref(), line, &error.to_string()).await;
                }
            }
        }
        counter!(EVENTS_CONSUMED_TOTAL, "pipeline" => PIPELINE).increment(decoded);
    }

    /// Inserts the batch's rows above the ClickHouse fence and advances the fence; returns how
    /// many rows it stored. After a failed attempt the fence is read again from ClickHouse
    /// before the retry: an INSERT whose answer was lost (a time-out, a dropped connection) may
    /// have been stored, and must not be stored twice.
    async fn store_in_clickhouse(&mut self) -> Result<usize, ProcessError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let rows: Vec<&ClickRow> = self.batch.rows_above(&self.ch_fences).collect();
            if rows.is_empty() {
                return Ok(0);
            }
            match self.clickhouse.insert_clicks(rows.iter().copied()).await {
                Ok(()) => {
                    let count = rows.len();
                    let mut stored = Fences::new();
                    for row in rows {
                        let fence = stored.entry(row.kafka_partition).or_insert(-1);
                        *fence = (*fence).max(row.kafka_offset);
                    }
                    for (partition, offset) in stored {
                        let fence = self.ch_fences.entry(partition).or_insert(-1);
                        *fence = (*fence).max(offset);
                    }
                    return Ok(count);
                }
                Err(error) if error.is_retryable() => {
                    counter!(RETRIES_TOTAL, "pipeline" => PIPELINE, "sink" => "clickhouse").increment(1);
                    let pause = jittered(backoff);
                    tracing::warn!(%error, backoff_ms = pause.as_millis() as u64, "ClickHouse insert failed, retrying");
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                    if let Ok(fences) = self.clickhouse.fences(CH_SOURCE).await {
                        for partition in self.batch.partitions() {
                            if let Some(stored) = fences.get(&partition) {
                                let fence = self.ch_fences.entry(partition).or_insert(-1);
                                *fence = (*fence).max(*stored);
                            }
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Stores the batch in ClickHouse, then Redis, each above its fence; then commits.
    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        histogram!(BATCH_ROWS, "pipeline" => PIPELINE).record(self.batch.len() as f64);

        let started = Instant::now();
        let before = self.batch.len();
        let stored = self.store_in_clickhouse().await?;
        counter!(ROWS_STORED_TOTAL, "pipeline" => PIPELINE, "sink" => "clickhouse").increment(stored as u64);
        counter!(ROWS_FENCED_TOTAL, "pipeline" => PIPELINE, "sink" => "clickhouse").increment((before - stored) as u64);
        histogram!(FLUSH_DURATION_SECONDS, "pipeline" => PIPELINE, "sink" => "clickhouse")
            .record(started.elapsed().as_secs_f64());

        let started = Instant::now();
        for partition in self.batch.partitions() {
            let mut fence = self.redis_fences.get(&partition).copied();
            while let Some((first, last, increments)) = self.batch.increments_above(partition, fence) {
                let outcome = with_backoff(PIPELINE, "redis", self.max_backoff, || {
                    self.redis.apply(&self.topic, partition, first, last, &increments)
                })
                .await?;
                match outcome {
                    ApplyOutcome::Applied => {
                        let applied: u64 = increments.iter().map(|(_, n)| n).sum();
                        counter!(ROWS_STORED_TOTAL, "pipeline" => PIPELINE, "sink" => "redis").increment(applied);
                        fence = Some(last);
                    }
                    ApplyOutcome::AlreadyApplied => fence = Some(last),
                    // Someone stored part of this range meanwhile: apply only what lies above.
                    ApplyOutcome::Overlap { fence: stored } => fence = Some(stored),
                }
            }
            set_fence(&mut self.redis_fences, partition, fence);
        }
        histogram!(FLUSH_DURATION_SECONDS, "pipeline" => PIPELINE, "sink" => "redis")
            .record(started.elapsed().as_secs_f64());

        // Commits only hint where to resume; the fences above are the truth.
        let mut list = TopicPartitionList::new();
        for (partition, next) in self.batch.commit_offsets() {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(%error, "offset commit failed; the fences keep the data exact");
        }
        tracing::debug!(rows = self.batch.len(), "batch stored");
        self.batch.clear();
        Ok(())
    }
}

fn set_fence(fences: &mut Fences, partition: i32, fence: Option<i64>) {
    match fence {
        Some(f) => {
            fences.insert(partition, f);
        }
        None => {
            fences.remove(&partition);
        }
    }
}
