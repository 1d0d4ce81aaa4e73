//! The event pipelines (clicks, orders): topic → decode → enrich → batch → ClickHouse raw table
//! (and its views) + Redis counters, each above its own offset fence → commit.
//!
//! One loop per pipeline: receive, decode, batch; flush at max rows, bytes or age into
//! ClickHouse, then Redis; then commit. Rebalance callbacks only record what changed; the loop
//! acts on it before touching the next message, so fences are loaded before a newly assigned
//! partition's first message is handled.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument;

use metrics::{counter, gauge, histogram};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use sinks::Fences;
use sinks::archive::Archive;
use sinks::clickhouse::ClickhouseWriter;
use sinks::redis::{ApplyOutcome, CounterUpdates, Counters};

use crate::batch::{Batch, Stored};
use crate::dedup::RecentIds;
use crate::dlq::{DeadLetters, Source as DlqSource};
use crate::metrics::{
    BATCH_AGE_SECONDS, BATCH_BYTES, BATCH_ROWS, BATCHES_READ_AGAIN_TOTAL, CONSUMER_LAG, DUPLICATES_TOTAL,
    EVENTS_CONSUMED_TOTAL, FENCE_LOADS_TOTAL, FLUSH_DURATION_SECONDS, MESSAGES_SKIPPED_TOTAL, RETRIES_TOTAL,
    ROWS_FENCED_TOTAL, ROWS_STORED_TOTAL,
};
use crate::retry::{jittered, with_backoff, with_backoff_until};
use crate::{ProcessConfig, ProcessError};

/// What makes one event pipeline: its topic, its row, its table and its counters.
pub(crate) trait Source: Send {
    /// Pipeline name: consumer group suffix, metric label, and the fence's source name in
    /// `kafka_offsets`.
    const NAME: &'static str;
    /// The raw ClickHouse table.
    const TABLE: &'static str;
    /// One stored event.
    type Row: Stored
        + clickhouse::RowOwned
        + clickhouse::RowWrite
        + Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync;

    /// The topic read.
    fn topic(topics: &events::kafka::Topics) -> String;
    /// Decodes and enriches one line, or says why it cannot be stored (it goes to the
    /// dead-letter topic under that reason and kind: `undecodable` or `invalid`).
    fn row(&mut self, line: &[u8], partition: i32, offset: i64) -> Result<Self::Row, (&'static str, String)>;
    /// Adds the row's counter updates.
    fn tally(row: &Self::Row, updates: &mut CounterUpdates);
}

/// Longest a partition change waits to be acted on while no message arrives.
const REBALANCE_CHECK: Duration = Duration::from_millis(250);

enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Records partition changes for the loop (runs inside the consumer's poll) and publishes the
/// consumer's lag from librdkafka's statistics.
struct Rebalances {
    pipeline: &'static str,
    changes: Mutex<Vec<Change>>,
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // Only partitions this consumer fetches (the others report state "none").
                if *partition < 0 || !stats.desired || stats.fetch_state == "none" || stats.hi_offset < 0 {
                    continue;
                }
                // librdkafka says -1 until it knows a position; before the first message the
                // whole retained partition is behind.
                let lag = if stats.consumer_lag >= 0 {
                    stats.consumer_lag
                } else {
                    (stats.hi_offset - stats.lo_offset.max(0)).max(0)
                };
                gauge!(CONSUMER_LAG, "pipeline" => self.pipeline, "partition" => partition.to_string()).set(lag as f64);
            }
        }
    }
}

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

struct Pipeline<S: Source> {
    source: S,
    consumer: StreamConsumer<Rebalances>,
    dlq: DeadLetters,
    topic: String,
    clickhouse: ClickhouseWriter,
    redis: Counters,
    ch_fences: Fences,
    /// Per partition, the offset up to which every counter tag of this partition's rows was
    /// applied by this process (tags keep their own fences in Redis; this only saves work).
    redis_fences: Fences,
    /// The Parquet archive, when configured, and its fences (from its file names).
    archive: Option<Archive>,
    archive_fences: Fences,
    batch: Batch<S::Row>,
    recent: RecentIds,
    max_rows: usize,
    max_bytes: usize,
    max_age: Duration,
    max_backoff: Duration,
    /// How long one flush may keep retrying before the batch is given up and read again.
    give_up: Duration,
}

/// Runs the pipeline of `source` until `shutdown` completes; then stores and commits what it holds.
pub(crate) async fn run<S: Source>(
    source: S,
    config: &ProcessConfig,
    redis: Counters,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProcessError> {
    let topics = config.kafka.topics();
    let mut consumer_config = config.kafka.client_config();
    consumer_config
        .set("group.id", format!("{}{}", config.group_prefix, S::NAME))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        .set("fetch.wait.max.ms", config.kafka_fetch_wait_ms.to_string())
        // The group waits this long for a poll; a flush gives up well before it.
        .set("max.poll.interval.ms", (config.sink_give_up_ms + 60_000).max(300_000).to_string())
        .set("session.timeout.ms", config.kafka_session_timeout_ms.to_string());
    // Static membership: a restarted processor reclaims its partitions at once. Besides being
    // faster, it sidesteps tansu 0.6 keeping a killed dynamic member as group leader.
    config.set_membership(&mut consumer_config);
    let consumer: StreamConsumer<Rebalances> =
        consumer_config.create_with_context(Rebalances { pipeline: S::NAME, changes: Mutex::default() })?;
    let topic = S::topic(&topics);
    consumer.subscribe(&[topic.as_str()])?;
    let mut dlq_config = config.kafka.client_config();
    dlq_config.set("enable.idempotence", "true").set("acks", "all");

    let mut pipeline = Pipeline {
        source,
        consumer,
        dlq: DeadLetters::new(
            dlq_config.create()?,
            topics.dlq.clone(),
            Duration::from_millis(config.retry_max_backoff_ms),
        ),
        topic,
        clickhouse: ClickhouseWriter::new(config.clickhouse.clone()),
        redis,
        ch_fences: Fences::new(),
        redis_fences: Fences::new(),
        archive: match &config.archive_dir {
            Some(dir) => Some(Archive::open(dir)?),
            None => None,
        },
        archive_fences: Fences::new(),
        batch: Batch::default(),
        recent: RecentIds::new(config.dedup_window_events),
        max_rows: config.batch_max_rows,
        max_bytes: config.batch_max_bytes,
        max_age: Duration::from_millis(config.batch_max_age_ms),
        max_backoff: Duration::from_millis(config.retry_max_backoff_ms),
        give_up: Duration::from_millis(config.sink_give_up_ms),
    };
    let sinks: &[&'static str] =
        if pipeline.archive.is_some() { &["clickhouse", "redis", "archive"] } else { &["clickhouse", "redis"] };
    crate::metrics::register_known(S::NAME, sinks);
    tracing::info!(pipeline = S::NAME, topic = %pipeline.topic, instance = %config.instance_id(), "pipeline started");
    // Every log line of the pipeline's work carries `pipeline` (and its own partition fields).
    let result = pipeline.run(shutdown).instrument(tracing::info_span!("pipeline", pipeline = S::NAME)).await;
    if result.is_ok() {
        tracing::info!(pipeline = S::NAME, "pipeline drained");
    }
    result
}

impl<S: Source> Pipeline<S> {
    async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessError> {
        tokio::pin!(shutdown);
        loop {
            // Wake at the batch's deadline, and at least every 250 ms: partition changes are
            // acted on (fences loaded) even while no message arrives.
            let mut wait = REBALANCE_CHECK;
            if !self.batch.is_empty() {
                wait = wait.min(self.max_age.saturating_sub(self.batch.age()));
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
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
                match self.flush().await {
                    Ok(()) => {}
                    // A sink still failing after RUNNEL_SINK_GIVE_UP_MS: let go of the batch and
                    // read it again, so the group keeps this processor (it polls again) and no
                    // other processor stores these partitions while this one still tries.
                    Err(ProcessError::Sink(error)) if error.is_retryable() => self.read_again(&error)?,
                    Err(error) => return Err(error),
                }
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
                    tracing::info!(
                        pipeline = S::NAME,
                        ?partitions,
                        "partitions revoked; their unstored events are left to the next owner"
                    );
                    self.drop_unstored(&partitions);
                    for p in &partitions {
                        self.ch_fences.remove(p);
                        self.redis_fences.remove(p);
                        self.archive_fences.remove(p);
                    }
                }
                Change::Assigned(partitions) => {
                    let ch = with_backoff(S::NAME, "clickhouse", self.max_backoff, || self.clickhouse.fences(S::NAME))
                        .await?;
                    let archived = match &self.archive {
                        Some(archive) => {
                            let (topic, partitions) = (&self.topic, &partitions);
                            with_backoff(S::NAME, "archive", self.max_backoff, || {
                                std::future::ready(archive.recover(topic, partitions))
                            })
                            .await?
                        }
                        None => Fences::new(),
                    };
                    // Another owner may have stored more since we last held the partitions.
                    self.drop_unstored(&partitions);
                    for p in &partitions {
                        set_fence(&mut self.ch_fences, *p, ch.get(p).copied());
                        // Redis fences live per counter tag in Redis; the scripts consult them.
                        self.redis_fences.remove(p);
                        set_fence(&mut self.archive_fences, *p, archived.get(p).copied());
                    }
                    counter!(FENCE_LOADS_TOTAL, "pipeline" => S::NAME).increment(partitions.len() as u64);
                    tracing::info!(pipeline = S::NAME, ?partitions, ch_fences = ?self.ch_fences, "partitions assigned; fences loaded");
                }
            }
        }
        Ok(())
    }

    /// Decodes one message into the batch; lines that cannot be stored go to the dead-letter topic.
    async fn take(&mut self, partition: i32, offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>) {
        let stored_everywhere = |fences: &Fences| fences.get(&partition).is_some_and(|f| offset <= *f);
        if stored_everywhere(&self.ch_fences)
            && stored_everywhere(&self.redis_fences)
            && (self.archive.is_none() || stored_everywhere(&self.archive_fences))
        {
            counter!(MESSAGES_SKIPPED_TOTAL, "pipeline" => S::NAME).increment(1);
            return;
        }
        self.batch.add_message(partition, offset, payload.len());
        let mut decoded = 0u64;
        for (index, line) in payload.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.source.row(line, partition, offset) {
                Ok(row) => {
                    decoded += 1;
                    // The same event twice (an edge re-sent it from its spool): stored once.
                    if self.recent.first_time(row.event_key()) {
                        self.batch.add_row(row);
                    } else {
                        counter!(DUPLICATES_TOTAL, "pipeline" => S::NAME).increment(1);
                    }
                }
                Err((kind, reason)) => {
                    // Only the bad line goes to the dead-letter topic: the good lines of the
                    // message are stored, so replaying the dead letter cannot repeat them.
                    let source =
                        DlqSource { pipeline: S::NAME, topic: &self.topic, partition, offset, line: index + 1 };
                    let reason = format!("line {}: {reason}", index + 1);
                    self.dlq.send(source, key.as_deref(), line, kind, &reason).await;
                }
            }
        }
        counter!(EVENTS_CONSUMED_TOTAL, "pipeline" => S::NAME).increment(decoded);
    }

    /// Drops the batch's rows of `partitions` unstored; their event ids are forgotten too, so
    /// the rows count as new when read again.
    fn drop_unstored(&mut self, partitions: &[i32]) {
        for id in self.batch.drop_partitions(partitions) {
            self.recent.forget(id);
        }
    }

    /// Drops the batch unstored and seeks its partitions back to its first messages; the fences
    /// skip whatever a sink stored of it meanwhile.
    fn read_again(&mut self, error: &sinks::SinkError) -> Result<(), ProcessError> {
        tracing::warn!(pipeline = S::NAME, %error, give_up_ms = self.give_up.as_millis() as u64, "a sink is still failing; the batch will be read again");
        counter!(BATCHES_READ_AGAIN_TOTAL, "pipeline" => S::NAME).increment(1);
        let partitions = self.batch.partitions();
        let firsts: Vec<(i32, i64)> =
            partitions.iter().filter_map(|p| self.batch.range(*p).map(|(first, _)| (*p, first))).collect();
        self.drop_unstored(&partitions);
        for (partition, first) in firsts {
            self.consumer.seek(&self.topic, partition, Offset::Offset(first), Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Writes each partition's rows above the archive fence as Parquet files; returns the rows
    /// written.
    async fn store_in_archive(&mut self, deadline: Instant) -> Result<u64, ProcessError> {
        let Some(archive) = &self.archive else { return Ok(0) };
        let mut written = 0u64;
        for partition in self.batch.partitions() {
            let Some((floor, last)) = self.batch.pending(partition, self.archive_fences.get(&partition).copied())
            else {
                continue;
            };
            let rows: Vec<(u32, &S::Row)> = self.batch.rows_in(partition, floor).map(|r| (r.event_time(), r)).collect();
            let topic = &self.topic;
            // Encoding and file writes block: off the async workers.
            with_backoff_until(S::NAME, "archive", self.max_backoff, Some(deadline), || {
                std::future::ready(tokio::task::block_in_place(|| {
                    archive.write(topic, partition, floor + 1, last, &rows)
                }))
            })
            .await?;
            written += rows.len() as u64;
            self.archive_fences.insert(partition, last);
        }
        Ok(written)
    }

    /// Stores the batch in ClickHouse, then Redis, then the archive, each above its fence;
    /// then commits.
    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        histogram!(BATCH_ROWS, "pipeline" => S::NAME).record(self.batch.len() as f64);
        histogram!(BATCH_BYTES, "pipeline" => S::NAME).record(self.batch.bytes() as f64);
        histogram!(BATCH_AGE_SECONDS, "pipeline" => S::NAME).record(self.batch.age().as_secs_f64());

        // ClickHouse and Redis are independent sinks with fences of their own: store in both at
        // once. Either may be retried meanwhile; the commit below waits for both.
        let before = self.batch.len();
        let deadline = Instant::now() + self.give_up;
        let Pipeline { clickhouse, redis, batch, ch_fences, redis_fences, max_backoff, .. } = self;
        let max_backoff = *max_backoff;
        let ch = async {
            let started = Instant::now();
            let stored = store_in_clickhouse::<S>(clickhouse, batch, ch_fences, max_backoff, deadline).await?;
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "clickhouse")
                .record(started.elapsed().as_secs_f64());
            Ok::<_, ProcessError>(stored)
        };
        let counters = async {
            let started = Instant::now();
            let outcome = store_all_in_redis::<S>(redis, batch, redis_fences, max_backoff, deadline).await?;
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "redis")
                .record(started.elapsed().as_secs_f64());
            Ok::<_, ProcessError>(outcome)
        };
        let (stored, counted) = tokio::join!(ch, counters);
        let (stored, (counted, fences)) = (stored?, counted?);
        counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment(stored as u64);
        counter!(ROWS_FENCED_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment((before - stored) as u64);
        counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "redis").increment(counted);
        self.redis_fences.extend(fences);

        if self.archive.is_some() {
            let started = Instant::now();
            let archived = self.store_in_archive(deadline).await?;
            counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "archive").increment(archived);
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "archive")
                .record(started.elapsed().as_secs_f64());
        }

        // Commits only hint where to resume; the fences above are the truth.
        let mut list = TopicPartitionList::new();
        for (partition, next) in self.batch.commit_offsets() {
            list.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(pipeline = S::NAME, %error, "offset commit failed; the fences keep the data exact");
        }
        tracing::debug!(pipeline = S::NAME, rows = self.batch.len(), "batch stored");
        self.batch.clear();
        Ok(())
    }
}

/// Inserts the batch's rows above the ClickHouse fence and advances the fence; returns how
/// many rows it stored. After a failed attempt the fence is read again from ClickHouse
/// before the retry: an INSERT whose answer was lost (a time-out, a dropped connection) may
/// have been stored, and must not be stored twice.
async fn store_in_clickhouse<S: Source>(
    clickhouse: &ClickhouseWriter,
    batch: &Batch<S::Row>,
    ch_fences: &mut Fences,
    max_backoff: Duration,
    deadline: Instant,
) -> Result<usize, ProcessError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let rows: Vec<&S::Row> = batch.rows_above(ch_fences).collect();
        if rows.is_empty() {
            return Ok(0);
        }
        match clickhouse.insert(S::TABLE, rows.iter().copied()).await {
            Ok(()) => {
                let count = rows.len();
                let mut stored = Fences::new();
                for row in rows {
                    let fence = stored.entry(row.partition()).or_insert(-1);
                    *fence = (*fence).max(row.offset());
                }
                for (partition, offset) in stored {
                    let fence = ch_fences.entry(partition).or_insert(-1);
                    *fence = (*fence).max(offset);
                }
                return Ok(count);
            }
            Err(error) if error.is_retryable() && Instant::now() >= deadline => return Err(error.into()),
            Err(error) if error.is_retryable() => {
                counter!(RETRIES_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment(1);
                let pause = jittered(backoff);
                tracing::warn!(pipeline = S::NAME, %error, backoff_ms = pause.as_millis() as u64, "ClickHouse insert failed, retrying");
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(max_backoff);
                if let Ok(fences) = clickhouse.fences(S::NAME).await {
                    for partition in batch.partitions() {
                        if let Some(stored) = fences.get(&partition) {
                            let fence = ch_fences.entry(partition).or_insert(-1);
                            *fence = (*fence).max(*stored);
                        }
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Applies the counters of one partition's rows above `floor`, tag by tag; a tag whose
/// fence lies inside the range gets only the rows above its fence. Returns the rows counted.
async fn store_in_redis<S: Source>(
    redis: &Counters,
    batch: &Batch<S::Row>,
    partition: i32,
    floor: i64,
    last: i64,
    max_backoff: Duration,
    deadline: Instant,
) -> Result<u64, ProcessError> {
    let mut pending: Vec<(i64, Option<String>)> = vec![(floor, None)];
    let mut counted = 0u64;
    while let Some((floor, only_tag)) = pending.pop() {
        let mut updates = redis.updates();
        let mut rows = 0u64;
        for row in batch.rows_in(partition, floor) {
            S::tally(row, &mut updates);
            rows += 1;
        }
        if let Some(tag) = &only_tag {
            updates.retain_tag(tag);
        }
        if updates.is_empty() {
            continue;
        }
        let outcomes = with_backoff_until(S::NAME, "redis", max_backoff, Some(deadline), || {
            redis.apply(S::NAME, partition, floor + 1, last, &updates)
        })
        .await?;
        if only_tag.is_none() {
            counted = rows;
        }
        for (tag, outcome) in outcomes {
            if let ApplyOutcome::Overlap { fence } = outcome {
                pending.push((fence, Some(tag)));
            }
        }
    }
    Ok(counted)
}

/// Applies the counters of every partition of the batch above what this process knows stored;
/// returns the rows counted and each partition's new fence.
async fn store_all_in_redis<S: Source>(
    redis: &Counters,
    batch: &Batch<S::Row>,
    redis_fences: &Fences,
    max_backoff: Duration,
    deadline: Instant,
) -> Result<(u64, Vec<(i32, i64)>), ProcessError> {
    let mut counted = 0;
    let mut fences = Vec::new();
    for partition in batch.partitions() {
        let Some((floor, last)) = batch.pending(partition, redis_fences.get(&partition).copied()) else { continue };
        counted += store_in_redis::<S>(redis, batch, partition, floor, last, max_backoff, deadline).await?;
        fences.push((partition, last));
    }
    Ok((counted, fences))
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
