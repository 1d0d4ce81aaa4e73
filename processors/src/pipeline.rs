//! The event pipelines (clicks, orders): topic → decode → enrich → batch → ClickHouse raw table
//! (and its views) + Redis counters, each above its own offset fence → commit.
//!
//! One loop per pipeline: receive, decode, batch; flush at max rows, bytes or age into
//! ClickHouse and Redis at once, then the archive; then commit. While a full or aged batch is
//! flushed, the loop reads the next one (at most one batch ahead): the time ClickHouse spends
//! on a batch is not lost to reading. Rebalance callbacks only record what changed; the loop
//! acts on it before touching the next message (reading ahead stops at a change and goes on
//! after the flush), so fences are loaded before a newly assigned partition's first message
//! is handled.
//!
//! Rebalances are incremental (cooperative-sticky): only the partitions that move are revoked.
//! A revoked partition is held until the loop has stored and committed what it took from it,
//! so its next owner starts where this one stopped. While a flush retries a failing sink, the
//! assigned partitions are paused: nothing more is fetched until the sinks are back.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

use metrics::{counter, gauge, histogram};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sinks::Fences;
use sinks::archive::Archive;
use sinks::clickhouse::ClickhouseWriter;
use sinks::redis::{ApplyOutcome, CounterUpdates, Counters};

use crate::batch::{Batch, Stored, dedup_token};
use crate::dedup::RecentIds;
use crate::dlq::{DeadLetters, Source as DlqSource};
use crate::metrics::{
    BATCH_AGE_SECONDS, BATCH_BYTES, BATCH_ROWS, BATCHES_READ_AGAIN_TOTAL, CONSUMER_LAG, DUPLICATES_TOTAL,
    EVENTS_CONSUMED_TOTAL, FENCE_LOADS_TOTAL, FLUSH_DURATION_SECONDS, MESSAGES_SKIPPED_TOTAL, OUT_OF_GROUP_SECONDS,
    PARTITION_CHANGES_TOTAL, PARTITIONS_PAUSED, RETRIES_TOTAL, ROWS_FENCED_TOTAL, ROWS_STORED_TOTAL,
};
use crate::retry::{Retrying, jittered, with_backoff, with_backoff_until};
use crate::{ProcessConfig, ProcessError};

/// Why an event or message cannot be stored: the dead-letter kind and the reason.
pub(crate) type Rejected = (&'static str, String);

/// What makes one event pipeline: its topic, its row, its table and its counters.
pub(crate) trait Source: Send {
    /// Pipeline name: consumer group suffix, metric label, and the fence's source name in
    /// `kafka_offsets`.
    const NAME: &'static str;
    /// The raw ClickHouse table.
    const TABLE: &'static str;
    /// One stored event.
    type Row: Stored + Send + Sync;

    /// The topic read.
    fn topic(topics: &events::kafka::Topics) -> String;
    /// Decodes and enriches one line, or says why it cannot be stored (it goes to the
    /// dead-letter topic under that reason and kind: `undecodable` or `invalid`).
    fn row(&mut self, line: &[u8], partition: i32, offset: i64) -> Result<Self::Row, Rejected>;
    /// Decodes and enriches every event of a message that is not NDJSON lines (a layout of the
    /// source's own, such as the compact click batch), or `None` when the message is lines. A
    /// message that does not decode whole is one error: it goes to the dead-letter topic whole
    /// (source line 0), and none of its events is stored.
    fn message_rows(
        &mut self,
        _payload: &[u8],
        _partition: i32,
        _offset: i64,
    ) -> Option<Result<Vec<Self::Row>, Rejected>> {
        None
    }
    /// Adds the row's counter updates.
    fn tally(row: &Self::Row, updates: &mut CounterUpdates);
    /// Inserts `rows` into [`Source::TABLE`] in one INSERT named by `token`.
    fn insert<'a>(
        writer: &'a ClickhouseWriter,
        token: &'a str,
        rows: &'a [&'a Self::Row],
    ) -> impl Future<Output = Result<(), sinks::SinkError>> + Send + 'a;
    /// Writes `rows` (each with its event time), read from offsets `first..=last` of `topic`'s
    /// `partition`, to the Parquet archive.
    fn archive(
        archive: &Archive,
        topic: &str,
        partition: i32,
        offsets: (i64, i64),
        rows: &[(u32, &Self::Row)],
    ) -> Result<Vec<std::path::PathBuf>, sinks::SinkError>;
}

/// A consumer out of its group this long is logged at every statistics interval: longer than
/// a rebalance normally takes.
const OUT_OF_GROUP_WARNING: Duration = Duration::from_secs(60);

/// Longest a partition change waits to be acted on while no message arrives.
const REBALANCE_CHECK: Duration = Duration::from_millis(250);

enum Change {
    Assigned(Vec<i32>),
    /// Partitions taken away. `held`: librdkafka waits until the loop has stored and committed
    /// what it took from them and releases them. Otherwise they are gone already (lost with the
    /// group session) and the loop drops what it holds of them.
    Revoked {
        partitions: Vec<i32>,
        held: bool,
    },
}

/// Records partition changes for the loop (runs inside the consumer's poll) and publishes the
/// consumer's lag from librdkafka's statistics.
struct Rebalances {
    pipeline: &'static str,
    changes: Mutex<Vec<Change>>,
    /// Set when the consumer is leaving: revocations are released at once.
    closing: AtomicBool,
    /// Since when librdkafka's statistics have shown the consumer out of its group (join
    /// state not `steady`).
    out_of_group: Mutex<Option<Instant>>,
}

fn partitions(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(group) = &statistics.cgrp {
            let mut out = self.out_of_group.lock().expect("not poisoned");
            let seconds = if group.join_state == "steady" {
                *out = None;
                0.0
            } else {
                let out_for = out.get_or_insert_with(Instant::now).elapsed();
                if out_for >= OUT_OF_GROUP_WARNING {
                    tracing::warn!(
                        pipeline = self.pipeline,
                        out_of_group_s = out_for.as_secs(),
                        state = %group.state,
                        join_state = %group.join_state,
                        "the consumer is out of its group; its partitions wait"
                    );
                }
                out_for.as_secs_f64()
            };
            gauge!(OUT_OF_GROUP_SECONDS, "pipeline" => self.pipeline).set(seconds);
        }
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
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, list: &mut TopicPartitionList) {
        let record = |change| self.changes.lock().expect("not poisoned").push(change);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(list),
                    _ => consumer.assign(list),
                };
                match assigned {
                    Ok(()) => {
                        // Joined: the statistics say so only at their next interval.
                        *self.out_of_group.lock().expect("not poisoned") = None;
                        gauge!(OUT_OF_GROUP_SECONDS, "pipeline" => self.pipeline).set(0.0);
                        record(Change::Assigned(partitions(list)));
                    }
                    Err(error) => tracing::error!(pipeline = self.pipeline, %error, "cannot take assigned partitions"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                if !self.closing.load(Ordering::SeqCst) && !consumer.assignment_lost() =>
            {
                // Not released here: librdkafka lets the application release revoked partitions
                // later, within the rebalance timeout. The loop stores and commits first.
                record(Change::Revoked { partitions: partitions(list), held: true });
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(error) = release(consumer, list) {
                    tracing::warn!(pipeline = self.pipeline, %error, "cannot release revoked partitions");
                }
                // Closing: the loop has drained already. Otherwise the assignment was lost.
                if !self.closing.load(Ordering::SeqCst) {
                    record(Change::Revoked { partitions: partitions(list), held: false });
                }
            }
            other => {
                tracing::error!(pipeline = self.pipeline, error = ?other, "rebalance failed; partitions released");
                let _ = release(consumer, list);
                record(Change::Revoked { partitions: partitions(list), held: false });
            }
        }
    }
}

/// Gives revoked partitions back to the group (only those, under cooperative rebalancing).
fn release<C: ConsumerContext>(consumer: &impl Consumer<C>, list: &TopicPartitionList) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(list),
        _ => consumer.unassign(),
    }
}

/// Pauses the pipeline's partitions at a flush's first retry and resumes them when dropped:
/// librdkafka fetches nothing meanwhile (memory stays flat, the lag shows the stall), and
/// afterwards goes on from the first message the loop has not taken.
struct PauseOnRetry<'a> {
    pipeline: &'static str,
    consumer: &'a StreamConsumer<Rebalances>,
    paused: Mutex<Option<TopicPartitionList>>,
}

impl<'a> PauseOnRetry<'a> {
    fn new(pipeline: &'static str, consumer: &'a StreamConsumer<Rebalances>) -> Self {
        Self { pipeline, consumer, paused: Mutex::new(None) }
    }

    fn pause(&self) {
        let mut paused = self.paused.lock().expect("not poisoned");
        if paused.is_some() {
            return;
        }
        let assignment = match self.consumer.assignment() {
            Ok(list) => list,
            Err(error) => {
                return tracing::warn!(pipeline = self.pipeline, %error, "cannot read the assignment to pause it");
            }
        };
        match self.consumer.pause(&assignment) {
            Ok(()) => {
                tracing::info!(pipeline = self.pipeline, partitions = ?partitions(&assignment), "a sink is failing; partitions paused");
                gauge!(PARTITIONS_PAUSED, "pipeline" => self.pipeline).set(assignment.count() as f64);
                *paused = Some(assignment);
            }
            Err(error) => tracing::warn!(pipeline = self.pipeline, %error, "cannot pause partitions"),
        }
    }
}

impl Drop for PauseOnRetry<'_> {
    fn drop(&mut self) {
        if let Some(list) = self.paused.lock().expect("not poisoned").take() {
            if let Err(error) = self.consumer.resume(&list) {
                tracing::warn!(pipeline = self.pipeline, %error, "cannot resume partitions");
            }
            gauge!(PARTITIONS_PAUSED, "pipeline" => self.pipeline).set(0.0);
            tracing::info!(pipeline = self.pipeline, partitions = ?partitions(&list), "partitions resumed");
        }
    }
}

/// A message detached from the consumer: partition, offset, key and payload.
type Received = (i32, i64, Option<Vec<u8>>, Vec<u8>);

/// What turns messages into a batch's rows: the source, the dead-letter topic for what cannot
/// be stored, and the window of recent event ids.
struct Reader<S: Source> {
    source: S,
    dlq: DeadLetters,
    recent: RecentIds,
}

/// The offsets up to which each sink stored each partition.
struct StoredUpTo<'a> {
    clickhouse: &'a Fences,
    redis: &'a Fences,
    /// `None` without an archive.
    archive: Option<&'a Fences>,
}

impl StoredUpTo<'_> {
    /// Whether every sink stored the message at `offset` of `partition`.
    fn everywhere(&self, partition: i32, offset: i64) -> bool {
        let below = |fences: &Fences| fences.get(&partition).is_some_and(|f| offset <= *f);
        below(self.clickhouse) && below(self.redis) && self.archive.is_none_or(below)
    }
}

struct Pipeline<S: Source> {
    reader: Reader<S>,
    consumer: StreamConsumer<Rebalances>,
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
    /// The last batch stored, emptied: its memory holds the next batch read ahead (a batch
    /// grown afresh each time cost the kernel about a tenth of the processor's CPU in zeroing
    /// new pages).
    spare: Batch<S::Row>,
    /// Partitions assigned and not yet released; messages of others are not taken.
    owned: BTreeSet<i32>,
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
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("statistics.interval.ms", "5000")
        .set("fetch.wait.max.ms", config.kafka_fetch_wait_ms.to_string())
        // The group waits this long for a poll; a flush gives up well before it.
        .set("max.poll.interval.ms", (config.sink_give_up_ms + 60_000).max(300_000).to_string())
        .set("session.timeout.ms", config.kafka_session_timeout_ms.to_string());
    // Static membership: a restarted processor reclaims its partitions at once. Besides being
    // faster, it sidesteps tansu 0.6 keeping a killed dynamic member as group leader.
    config.set_membership(&mut consumer_config);
    let consumer: StreamConsumer<Rebalances> = consumer_config.create_with_context(Rebalances {
        pipeline: S::NAME,
        changes: Mutex::default(),
        closing: AtomicBool::new(false),
        out_of_group: Mutex::default(),
    })?;
    let topic = S::topic(&topics);
    consumer.subscribe(&[topic.as_str()])?;
    let server = config.clickhouse.server_version().await?;
    let clickhouse = ClickhouseWriter::for_server(
        config.clickhouse.clone(),
        sinks::clickhouse::ServerVersion::parse(&server).unwrap_or(sinks::clickhouse::ServerVersion(0, 0)),
    )
    .with_parallel_views(config.clickhouse_parallel_views);
    let mut dlq_config = config.kafka.client_config();
    dlq_config.set("enable.idempotence", "true").set("acks", "all");

    let mut pipeline = Pipeline {
        reader: Reader {
            source,
            dlq: DeadLetters::new(
                events::producer::AckedProducer::create(&dlq_config)?,
                topics.dlq.clone(),
                Duration::from_millis(config.retry_max_backoff_ms),
            ),
            recent: RecentIds::new(config.dedup_window_events),
        },
        consumer,
        topic,
        clickhouse,
        redis,
        ch_fences: Fences::new(),
        redis_fences: Fences::new(),
        archive: match &config.archive_dir {
            Some(dir) => Some(Archive::open(dir)?),
            None => None,
        },
        archive_fences: Fences::new(),
        batch: Batch::default(),
        spare: Batch::default(),
        owned: BTreeSet::new(),
        max_rows: config.batch_max_rows,
        max_bytes: config.batch_max_bytes,
        max_age: Duration::from_millis(config.batch_max_age_ms),
        max_backoff: Duration::from_millis(config.retry_max_backoff_ms),
        give_up: Duration::from_millis(config.sink_give_up_ms),
    };
    let sinks: &[&'static str] =
        if pipeline.archive.is_some() { &["clickhouse", "redis", "archive"] } else { &["clickhouse", "redis"] };
    crate::metrics::register_known(S::NAME, sinks);
    tracing::info!(
        pipeline = S::NAME,
        topic = %pipeline.topic,
        instance = %config.instance_id(),
        clickhouse = %server,
        dedup_tokens = pipeline.clickhouse.sends_dedup_tokens(),
        "pipeline started"
    );
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
                    let message = received.map(|m| detach(&m));
                    self.apply_rebalances().await?;
                    match message {
                        Ok(message) => self.take(message).await,
                        Err(error) => tracing::warn!(%error, "Kafka consumer error"),
                    }
                }
            }
            self.apply_rebalances().await?;
            if self.batch.is_full(self.max_rows, self.max_bytes)
                || (!self.batch.is_empty() && self.batch.age() >= self.max_age)
            {
                self.flush_reading_ahead().await?;
            }
        }
        // Drain: store what is held, commit synchronously, leave the group.
        self.flush(CommitMode::Sync).await?;
        self.consumer.context().closing.store(true, Ordering::SeqCst);
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Flushes; a sink still failing after RUNNEL_SINK_GIVE_UP_MS makes the loop let go of the
    /// batch and read it again, so the group keeps this processor (it polls again) and no
    /// other processor stores these partitions while this one still tries.
    async fn flush_or_read_again(&mut self, commit: CommitMode) -> Result<(), ProcessError> {
        match self.flush(commit).await {
            Ok(()) => Ok(()),
            Err(ProcessError::Sink(error)) if error.is_retryable() => {
                self.read_again(&error, &mut Batch::default()).map(drop)
            }
            Err(error) => Err(error),
        }
    }

    async fn apply_rebalances(&mut self) -> Result<(), ProcessError> {
        let changes = std::mem::take(&mut *self.consumer.context().changes.lock().expect("not poisoned"));
        for change in changes {
            match change {
                Change::Revoked { partitions, held: true } => {
                    // Store and commit the batch before letting go: the next owner starts after it.
                    self.flush_or_read_again(CommitMode::Sync).await?;
                    let mut list = TopicPartitionList::new();
                    for p in &partitions {
                        list.add_partition(&self.topic, *p);
                    }
                    if let Err(error) = release(&self.consumer, &list) {
                        tracing::warn!(pipeline = S::NAME, %error, "cannot release revoked partitions");
                    }
                    tracing::info!(
                        pipeline = S::NAME,
                        ?partitions,
                        "partitions revoked; what they held was stored and committed first"
                    );
                    self.forget(&partitions, "revoked");
                }
                Change::Revoked { partitions, held: false } => {
                    tracing::warn!(
                        pipeline = S::NAME,
                        ?partitions,
                        "partitions lost; their unstored events are left to the next owner"
                    );
                    self.drop_unstored(&partitions);
                    self.forget(&partitions, "lost");
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
                    counter!(PARTITION_CHANGES_TOTAL, "pipeline" => S::NAME, "change" => "assigned")
                        .increment(partitions.len() as u64);
                    self.owned.extend(partitions.iter().copied());
                    tracing::info!(pipeline = S::NAME, ?partitions, ch_fences = ?self.ch_fences, "partitions assigned; fences loaded");
                }
            }
        }
        Ok(())
    }

    /// Forgets partitions that are no longer this consumer's.
    fn forget(&mut self, partitions: &[i32], change: &'static str) {
        for p in partitions {
            self.owned.remove(p);
            self.ch_fences.remove(p);
            self.redis_fences.remove(p);
            self.archive_fences.remove(p);
        }
        counter!(PARTITION_CHANGES_TOTAL, "pipeline" => S::NAME, "change" => change).increment(partitions.len() as u64);
    }

    /// Decodes one message into the batch; lines that cannot be stored go to the dead-letter topic.
    async fn take(&mut self, message: Received) {
        let stored = StoredUpTo {
            clickhouse: &self.ch_fences,
            redis: &self.redis_fences,
            archive: self.archive.as_ref().map(|_| &self.archive_fences),
        };
        self.reader.take(&self.topic, &self.owned, &stored, &mut self.batch, message).await;
    }

    /// Drops the batch's rows of `partitions` unstored; their event ids are forgotten too, so
    /// the rows count as new when read again.
    fn drop_unstored(&mut self, partitions: &[i32]) {
        self.reader.drop_unstored(&mut self.batch, partitions);
    }

    /// Drops the batch unstored, and `ahead` (a batch read after it) too, and seeks their
    /// partitions back to their first messages; the fences skip whatever a sink stored of them
    /// meanwhile. Returns the partitions sought back.
    fn read_again(&mut self, error: &sinks::SinkError, ahead: &mut Batch<S::Row>) -> Result<Vec<i32>, ProcessError> {
        tracing::warn!(pipeline = S::NAME, %error, give_up_ms = self.give_up.as_millis() as u64, "a sink is still failing; the batch will be read again");
        counter!(BATCHES_READ_AGAIN_TOTAL, "pipeline" => S::NAME).increment(1);
        let mut firsts = std::collections::BTreeMap::new();
        for (partition, first) in self.batch.first_offsets().chain(ahead.first_offsets()) {
            let seek = firsts.entry(partition).or_insert(first);
            *seek = first.min(*seek);
        }
        let partitions = self.batch.partitions();
        self.drop_unstored(&partitions);
        let partitions = ahead.partitions();
        self.reader.drop_unstored(ahead, &partitions);
        for (&partition, &first) in &firsts {
            self.consumer.seek(&self.topic, partition, Offset::Offset(first), Duration::from_secs(10))?;
        }
        Ok(firsts.into_keys().collect())
    }

    /// The parts of the pipeline a flush works with, and apart from them the reader and the
    /// partitions owned.
    fn split(&mut self) -> (Flush<'_, S>, &mut Reader<S>, &BTreeSet<i32>) {
        let Pipeline {
            reader,
            consumer,
            topic,
            clickhouse,
            redis,
            ch_fences,
            redis_fences,
            archive,
            archive_fences,
            batch,
            owned,
            max_backoff,
            give_up,
            ..
        } = self;
        let flush = Flush {
            consumer,
            topic,
            clickhouse,
            redis,
            archive: archive.as_ref(),
            ch_fences,
            redis_fences,
            archive_fences,
            batch,
            max_backoff: *max_backoff,
            give_up: *give_up,
        };
        (flush, reader, owned)
    }

    /// Stores the batch in ClickHouse and Redis at once, then in the archive, each above its
    /// fence; then commits. The assigned partitions are paused from the first retry on.
    async fn flush(&mut self, commit: CommitMode) -> Result<(), ProcessError> {
        self.split().0.run(commit).await
    }

    /// Flushes the batch as [`Pipeline::flush_or_read_again`] does, and meanwhile reads the
    /// next batch (up to its limits, and not past a partition change, which waits for the
    /// flush): the consumer does not stand still while ClickHouse stores. A batch given up is
    /// read again together with the one read meanwhile.
    async fn flush_reading_ahead(&mut self) -> Result<(), ProcessError> {
        let (max_rows, max_bytes) = (self.max_rows, self.max_bytes);
        // A message read ahead lies after the batch's in its partition, and every row is held
        // against the fences again when it is stored: the fences as they are now will do.
        let (ch, redis) = (self.ch_fences.clone(), self.redis_fences.clone());
        let archived = self.archive.as_ref().map(|_| self.archive_fences.clone());
        let stored = StoredUpTo { clickhouse: &ch, redis: &redis, archive: archived.as_ref() };
        let mut ahead = std::mem::take(&mut self.spare);
        // A message received once a partition change was pending: taken after the change.
        let mut held: Option<Received> = None;
        let result = {
            let (flush, reader, owned) = self.split();
            let (consumer, topic) = (flush.consumer, flush.topic);
            let flushing = flush.run(CommitMode::Async);
            tokio::pin!(flushing);
            loop {
                if held.is_some() || ahead.is_full(max_rows, max_bytes) {
                    break flushing.await;
                }
                tokio::select! {
                    biased;
                    result = &mut flushing => break result,
                    received = consumer.recv() => match received.map(|m| detach(&m)) {
                        Ok(message) if consumer.context().changes.lock().expect("not poisoned").is_empty() => {
                            reader.take(topic, owned, &stored, &mut ahead, message).await;
                        }
                        Ok(message) => held = Some(message),
                        Err(error) => tracing::warn!(%error, "Kafka consumer error"),
                    },
                }
            }
        };
        match result {
            // The stored batch, emptied, is the next one's spare.
            Ok(()) => self.spare = std::mem::replace(&mut self.batch, ahead),
            Err(ProcessError::Sink(error)) if error.is_retryable() => {
                let sought = self.read_again(&error, &mut ahead)?;
                self.spare = ahead;
                // Read again with the batches, unless its partition was in neither.
                held = held.filter(|(partition, ..)| !sought.contains(partition));
            }
            Err(error) => return Err(error),
        }
        self.apply_rebalances().await?;
        if let Some(message) = held {
            self.take(message).await;
        }
        Ok(())
    }
}

/// The message's partition, offset, key and payload, apart from the consumer's borrow.
fn detach(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    (
        message.partition(),
        message.offset(),
        message.key().map(<[u8]>::to_vec),
        message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    )
}

impl<S: Source> Reader<S> {
    /// Decodes one message into `batch`; lines that cannot be stored go to the dead-letter
    /// topic. Skips messages of partitions not `owned` and messages every sink stored.
    async fn take(
        &mut self,
        topic: &str,
        owned: &BTreeSet<i32>,
        stored: &StoredUpTo<'_>,
        batch: &mut Batch<S::Row>,
        (partition, offset, key, payload): Received,
    ) {
        // A message fetched before its partition was released: the next owner reads it.
        if !owned.contains(&partition) {
            return;
        }
        if stored.everywhere(partition, offset) {
            counter!(MESSAGES_SKIPPED_TOTAL, "pipeline" => S::NAME).increment(1);
            return;
        }
        batch.add_message(partition, offset, payload.len());
        let mut decoded = 0u64;
        if let Some(rows) = self.source.message_rows(&payload, partition, offset) {
            match rows {
                Ok(rows) => {
                    decoded = rows.len() as u64;
                    for row in rows {
                        self.add_row_once(batch, row);
                    }
                }
                Err((kind, reason)) => {
                    let source = DlqSource { pipeline: S::NAME, topic, partition, offset, line: 0 };
                    self.dlq.send(source, key.as_deref(), &payload, kind, &reason).await;
                }
            }
            counter!(EVENTS_CONSUMED_TOTAL, "pipeline" => S::NAME).increment(decoded);
            return;
        }
        for (index, line) in events::lines(&payload).enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.source.row(line, partition, offset) {
                Ok(row) => {
                    decoded += 1;
                    self.add_row_once(batch, row);
                }
                Err((kind, reason)) => {
                    // Only the bad line goes to the dead-letter topic: the good lines of the
                    // message are stored, so replaying the dead letter cannot repeat them.
                    let source = DlqSource { pipeline: S::NAME, topic, partition, offset, line: index + 1 };
                    let reason = format!("line {}: {reason}", index + 1);
                    self.dlq.send(source, key.as_deref(), line, kind, &reason).await;
                }
            }
        }
        counter!(EVENTS_CONSUMED_TOTAL, "pipeline" => S::NAME).increment(decoded);
    }

    /// Adds a decoded row to `batch` unless its event was read already: the same event twice
    /// (an edge re-sent it from its spool) is stored once.
    fn add_row_once(&mut self, batch: &mut Batch<S::Row>, row: S::Row) {
        if self.recent.first_time(row.event_key()) {
            batch.add_row(row);
        } else {
            counter!(DUPLICATES_TOTAL, "pipeline" => S::NAME).increment(1);
        }
    }

    /// Drops `batch`'s rows of `partitions` unstored; their event ids are forgotten too, so
    /// the rows count as new when read again.
    fn drop_unstored(&mut self, batch: &mut Batch<S::Row>, partitions: &[i32]) {
        for id in batch.drop_partitions(partitions) {
            self.recent.forget(id);
        }
    }
}

/// What a flush works with: the consumer (to pause and commit), the sinks, their fences and
/// the batch.
struct Flush<'a, S: Source> {
    consumer: &'a StreamConsumer<Rebalances>,
    topic: &'a str,
    clickhouse: &'a ClickhouseWriter,
    redis: &'a Counters,
    archive: Option<&'a Archive>,
    ch_fences: &'a mut Fences,
    redis_fences: &'a mut Fences,
    archive_fences: &'a mut Fences,
    batch: &'a mut Batch<S::Row>,
    max_backoff: Duration,
    give_up: Duration,
}

impl<S: Source> Flush<'_, S> {
    /// Stores the batch in ClickHouse and Redis at once, then in the archive, each above its
    /// fence; then commits and clears the batch. The assigned partitions are paused from the
    /// first retry on.
    async fn run(self, commit: CommitMode) -> Result<(), ProcessError> {
        let Flush {
            consumer,
            topic,
            clickhouse,
            redis,
            archive,
            ch_fences,
            redis_fences,
            archive_fences,
            batch,
            max_backoff,
            give_up,
        } = self;
        if batch.is_empty() {
            return Ok(());
        }
        histogram!(BATCH_ROWS, "pipeline" => S::NAME).record(batch.len() as f64);
        histogram!(BATCH_BYTES, "pipeline" => S::NAME).record(batch.bytes() as f64);
        histogram!(BATCH_AGE_SECONDS, "pipeline" => S::NAME).record(batch.age().as_secs_f64());

        // ClickHouse and Redis are independent sinks with fences of their own: store in both at
        // once. Either may be retried meanwhile; the commit below waits for both.
        let before = batch.len();
        let deadline = Instant::now() + give_up;
        let pause = PauseOnRetry::new(S::NAME, consumer);
        let on_retry = || pause.pause();
        let retry = Retrying { max_backoff, deadline: Some(deadline), on_retry: &on_retry };
        let batch_ref: &Batch<S::Row> = batch;
        let ch = async {
            let started = Instant::now();
            let stored = store_in_clickhouse::<S>(clickhouse, topic, batch_ref, ch_fences, retry).await?;
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "clickhouse")
                .record(started.elapsed().as_secs_f64());
            Ok::<_, ProcessError>(stored)
        };
        let counters = async {
            let started = Instant::now();
            let outcome = store_all_in_redis::<S>(redis, batch_ref, redis_fences, retry).await?;
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "redis")
                .record(started.elapsed().as_secs_f64());
            Ok::<_, ProcessError>(outcome)
        };
        let (stored, counted) = tokio::join!(ch, counters);
        let (stored, (counted, fences)) = (stored?, counted?);
        counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment(stored as u64);
        counter!(ROWS_FENCED_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment((before - stored) as u64);
        counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "redis").increment(counted);
        redis_fences.extend(fences);

        if let Some(archive) = archive {
            let started = Instant::now();
            let archived = store_in_archive::<S>(archive, topic, batch_ref, archive_fences, retry).await?;
            counter!(ROWS_STORED_TOTAL, "pipeline" => S::NAME, "sink" => "archive").increment(archived);
            histogram!(FLUSH_DURATION_SECONDS, "pipeline" => S::NAME, "sink" => "archive")
                .record(started.elapsed().as_secs_f64());
        }
        drop(pause);

        // Commits only hint where to resume; the fences above are the truth.
        let mut list = TopicPartitionList::new();
        for (partition, next) in batch.commit_offsets() {
            list.add_partition_offset(topic, partition, Offset::Offset(next))?;
        }
        if let Err(error) = consumer.commit(&list, commit) {
            tracing::warn!(pipeline = S::NAME, %error, "offset commit failed; the fences keep the data exact");
        }
        tracing::debug!(pipeline = S::NAME, rows = batch.len(), "batch stored");
        batch.clear();
        Ok(())
    }
}

impl<S: Source> Drop for Pipeline<S> {
    /// Whatever ended the loop, the consumer's close must not wait on a revocation the loop
    /// would have released: it leaves with its partitions released at once.
    fn drop(&mut self) {
        if !self.consumer.context().closing.swap(true, Ordering::SeqCst)
            && let Ok(assignment) = self.consumer.assignment()
        {
            let _ = release(&self.consumer, &assignment);
        }
    }
}

/// Writes each partition's rows above the archive fence as Parquet files; returns the rows
/// written.
async fn store_in_archive<S: Source>(
    archive: &Archive,
    topic: &str,
    batch: &Batch<S::Row>,
    archive_fences: &mut Fences,
    retry: Retrying<'_>,
) -> Result<u64, ProcessError> {
    let mut written = 0u64;
    for partition in batch.partitions() {
        let Some((floor, last)) = batch.pending(partition, archive_fences.get(&partition).copied()) else {
            continue;
        };
        let rows: Vec<(u32, &S::Row)> = batch.rows_in(partition, floor).map(|r| (r.event_time(), r)).collect();
        // Encoding and file writes block: off the async workers.
        with_backoff_until(S::NAME, "archive", retry, || {
            std::future::ready(tokio::task::block_in_place(|| {
                S::archive(archive, topic, partition, (floor + 1, last), &rows)
            }))
        })
        .await?;
        written += rows.len() as u64;
        archive_fences.insert(partition, last);
    }
    Ok(written)
}

/// Inserts the batch's rows above the ClickHouse fence and advances the fence; returns how
/// many rows it stored. After a failed attempt the fence is read again from ClickHouse
/// before the retry: an INSERT whose answer was lost (a time-out, a dropped connection) may
/// have been stored, and must not be stored twice.
async fn store_in_clickhouse<S: Source>(
    clickhouse: &ClickhouseWriter,
    topic: &str,
    batch: &Batch<S::Row>,
    ch_fences: &mut Fences,
    retry: Retrying<'_>,
) -> Result<usize, ProcessError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let rows: Vec<&S::Row> = batch.rows_above(ch_fences).collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let token = dedup_token(topic, &rows);
        match S::insert(clickhouse, &token, &rows).await {
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
            Err(error) if error.is_retryable() && retry.deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(error.into());
            }
            Err(error) if error.is_retryable() => {
                (retry.on_retry)();
                counter!(RETRIES_TOTAL, "pipeline" => S::NAME, "sink" => "clickhouse").increment(1);
                let pause = jittered(backoff);
                tracing::warn!(pipeline = S::NAME, %error, backoff_ms = pause.as_millis() as u64, "ClickHouse insert failed, retrying");
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(retry.max_backoff);
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
    retry: Retrying<'_>,
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
        let outcomes =
            with_backoff_until(S::NAME, "redis", retry, || redis.apply(S::NAME, partition, floor + 1, last, &updates))
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
    retry: Retrying<'_>,
) -> Result<(u64, Vec<(i32, i64)>), ProcessError> {
    let mut counted = 0;
    let mut fences = Vec::new();
    for partition in batch.partitions() {
        let Some((floor, last)) = batch.pending(partition, redis_fences.get(&partition).copied()) else { continue };
        counted += store_in_redis::<S>(redis, batch, partition, floor, last, retry).await?;
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
