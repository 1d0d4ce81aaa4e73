//! The click path. Healthy: clicks are batched per partition, several to a Kafka message
//! (compact batches by default, `events::click_batch`; or NDJSON lines), and handed to the
//! producer's memory queue when a batch reaches 256 KiB or is 20 ms old. The partition is
//! CRC32(link id) mod N — what librdkafka's default partitioner picks for key = link id — so
//! every click of a link lands in one partition, in order. When
//! librdkafka reports every broker down, or its queue is full, the path switches to spooling:
//! each click is appended to the spool before its redirect is answered, and clicks still queued
//! in memory are purged into the spool too. A replayer produces the spool in order once Kafka
//! answers, checkpointing what Kafka acknowledged, and switches back when it has caught up.
//! A spool left by a crashed edge is replayed at start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::producer::PolledProducer;
use events::{ClickEvent, ClickRef};
use metrics::{counter, gauge};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};

use super::log::{self, Reader, Writer};
use crate::config::ClickEncoding;
use crate::hot_metrics::HotCounter;
use crate::metrics::{
    CLICKS_DELIVERED_TOTAL, CLICKS_DROPPED_TOTAL, CLICKS_PRODUCED_TOTAL, CLICKS_REPLAYED_TOTAL, CLICKS_SPOOLED_TOTAL,
    PRODUCER_QUEUE_MESSAGES, SPOOL_BYTES,
};

/// A batch is sent at this size. Fewer, larger messages cost the broker less per click
/// (`bench/redirect` prints the broker's CPU per redirect).
const BATCH_BYTES: usize = 256 * 1024;
/// And at the latest after this long.
const BATCH_LINGER: Duration = Duration::from_millis(20);
/// Partitions assumed when Kafka cannot be asked at start (the design's default).
const DEFAULT_PARTITIONS: usize = 12;

/// The partition of a link's clicks: librdkafka's `consistent_random` choice for key = link id.
pub(crate) fn partition_of(link_id: u64, partitions: usize) -> usize {
    let mut digits = itoa::Buffer::new();
    (crc32fast::hash(digits.format(link_id).as_bytes()) as usize) % partitions.max(1)
}

/// Segments are closed at this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Records replayed between checkpoints.
const REPLAY_CHUNK: usize = 2_000;
/// Delivery opaques: where a produced record came from.
const DIRECT: usize = 0;
const REPLAY: usize = 1;

/// One partition's clicks not yet handed to the producer, in the configured encoding.
enum Batch {
    Lines(Vec<u8>),
    Compact(events::click_batch::Encoder),
}

impl Batch {
    fn new(encoding: ClickEncoding) -> Self {
        match encoding {
            ClickEncoding::Ndjson => Self::Lines(Vec::with_capacity(BATCH_BYTES + 1024)),
            ClickEncoding::Compact => Self::Compact(events::click_batch::Encoder::with_capacity(BATCH_BYTES + 1024)),
        }
    }

    fn push(&mut self, event: &ClickRef<'_>) {
        match self {
            Self::Lines(lines) => event.encode_line(lines),
            Self::Compact(encoder) => encoder.push(event),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Lines(lines) => lines.len(),
            Self::Compact(encoder) => encoder.len(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Lines(lines) => lines.is_empty(),
            Self::Compact(encoder) => encoder.is_empty(),
        }
    }

    /// The batch's message; an empty batch stays behind.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Self::Lines(lines) => std::mem::replace(lines, Vec::with_capacity(BATCH_BYTES + 1024)),
            Self::Compact(encoder) => encoder.take(),
        }
    }
}

/// State shared by the request path, librdkafka's callbacks and the replayer.
struct Shared {
    spooling: AtomicBool,
    writer: Mutex<Writer>,
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
    wake: tokio::sync::Notify,
    /// Dropped clicks are logged at most once a second: a full disk drops every click.
    drop_log: Throttle,
}

/// Lets a repeated log line through at most once per `every`, saying how many were held back.
struct Throttle {
    every: Duration,
    /// When a line last went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self { every, state: Mutex::new((None, 0)) }
    }

    /// At `now`: `Some(held back since the last line)` when a line may go out, else `None`.
    fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().expect("not poisoned");
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held)
            }
        }
    }
}

impl Shared {
    fn start_spooling(&self, reason: &str) {
        if !self.spooling.swap(true, Ordering::SeqCst) {
            tracing::warn!(reason, "Kafka unavailable; spooling click events to disk");
            self.wake.notify_one();
        }
    }

    /// Appends one encoded click; returns false (and counts the drop) when the spool cannot take it.
    fn append(&self, payload: &[u8]) -> bool {
        let size = payload.len() as u64 + 8;
        if self.bytes.load(Ordering::Relaxed) + size > self.max_bytes {
            counter!(CLICKS_DROPPED_TOTAL, "reason" => "spool_full").increment(1);
            if let Some(since) = self.drop_log.allow(Instant::now()) {
                tracing::error!(
                    max_bytes = self.max_bytes,
                    dropped_since_last_line = since,
                    "the click spool is full; clicks are dropped"
                );
            }
            return false;
        }
        let written = self.writer.lock().expect("not poisoned").append(payload);
        match written {
            Ok(()) => {
                gauge!(SPOOL_BYTES).set(self.bytes.fetch_add(size, Ordering::Relaxed) as f64 + size as f64);
                counter!(CLICKS_SPOOLED_TOTAL).increment(1);
                true
            }
            Err(error) => {
                counter!(CLICKS_DROPPED_TOTAL, "reason" => "spool_error").increment(1);
                if let Some(since) = self.drop_log.allow(Instant::now()) {
                    tracing::error!(
                        %error,
                        dir = %self.dir.display(),
                        dropped_since_last_line = since,
                        "cannot write the click spool; clicks are dropped"
                    );
                }
                false
            }
        }
    }

    /// Spools every click of a batch (NDJSON or compact) as its own NDJSON record.
    fn append_lines(&self, batch: &[u8]) {
        let lines = match events::click_batch::to_lines(batch) {
            Ok(lines) => lines,
            Err(error) => {
                // Only this edge writes its batches, and a test reads every cut and damaged
                // batch: this would be a bug, and it says so.
                tracing::error!(%error, bytes = batch.len(), "a click batch could not be read back for the spool; its clicks are lost");
                return;
            }
        };
        for line in lines.split_inclusive(|b| *b == b'\n').filter(|l| l.len() > 1) {
            // A click the spool cannot take is counted and logged (at most once a second) there.
            self.append(line);
        }
    }
}

/// librdkafka's callbacks for the click producer.
pub(crate) struct ClickContext {
    shared: Arc<Shared>,
}

impl ClientContext for ClickContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.shared.start_spooling("all brokers down");
        }
        tracing::debug!(%error, reason, "Kafka client error (clicks)");
    }
}

impl ProducerContext for ClickContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: usize) {
        match result {
            Ok(_) => {
                counter!(CLICKS_DELIVERED_TOTAL).increment(1);
                if origin == REPLAY {
                    counter!(CLICKS_REPLAYED_TOTAL).increment(1);
                }
            }
            // A replayed record stays in the spool until acknowledged: nothing to do.
            Err(_) if origin == REPLAY => {}
            // A direct batch that did not make it (purged while spooling starts, or failed):
            // its clicks go to the spool, one record each, to be replayed.
            Err((error, message)) => {
                tracing::debug!(%error, "a click batch was not delivered; spooling its clicks");
                self.shared.start_spooling("delivery failed");
                self.shared.append_lines(message.payload().unwrap_or_default());
            }
        }
    }
}

/// Where click events go.
pub(crate) struct ClickPath {
    producer: PolledProducer<ClickContext>,
    topic: String,
    shared: Arc<Shared>,
    /// One batch per partition.
    batches: Box<[Mutex<Batch>]>,
    /// Counted per thread (every click).
    produced: HotCounter,
}

impl ClickPath {
    /// A click path producing to `topic`, spooling under `dir`. A spool left behind by an
    /// earlier run starts the path in spooling mode, so its records go out first.
    pub(crate) fn new(
        config: ClientConfig,
        topic: String,
        encoding: ClickEncoding,
        dir: &Path,
        max_bytes: u64,
    ) -> Result<Arc<Self>, crate::EdgeError> {
        let spool_error = |e: std::io::Error| crate::EdgeError::Invalid {
            variable: "RUNNEL_SPOOL_DIR",
            reason: format!("{}: {e}", dir.display()),
        };
        let leftover = log::segments(dir).unwrap_or_default();
        let writer = Writer::open(dir, SEGMENT_BYTES).map_err(spool_error)?;
        let bytes = log::size(dir).map_err(spool_error)?;
        let shared = Arc::new(Shared {
            spooling: AtomicBool::new(!leftover.is_empty()),
            writer: Mutex::new(writer),
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: AtomicU64::new(bytes),
            wake: tokio::sync::Notify::new(),
            drop_log: Throttle::new(Duration::from_secs(1)),
        });
        gauge!(SPOOL_BYTES).set(bytes as f64);
        if !leftover.is_empty() {
            tracing::info!(
                segments = leftover.len(),
                bytes,
                "found a click spool from an earlier run; replaying it first"
            );
        }
        let producer = PolledProducer::create(&config, ClickContext { shared: Arc::clone(&shared) })?;
        let partitions = match producer.client().fetch_metadata(Some(&topic), Duration::from_secs(2)) {
            Ok(metadata) => metadata.topics().first().map_or(0, |t| t.partitions().len()),
            Err(_) => 0,
        };
        let partitions = if partitions == 0 {
            tracing::warn!(topic, "partition count unknown at start; assuming {DEFAULT_PARTITIONS}");
            DEFAULT_PARTITIONS
        } else {
            partitions
        };
        let batches = (0..partitions).map(|_| Mutex::new(Batch::new(encoding))).collect();
        Ok(Arc::new(Self {
            producer,
            topic,
            shared,
            batches,
            produced: HotCounter::new(counter!(CLICKS_PRODUCED_TOTAL)),
        }))
    }

    /// Hands a click to Kafka without waiting (into its partition's batch), or to the spool
    /// (written before this returns) while Kafka is unavailable.
    pub(crate) fn send(&self, event: &ClickRef<'_>) {
        if self.shared.spooling.load(Ordering::SeqCst) {
            let mut line = Vec::with_capacity(256);
            event.encode_line(&mut line);
            self.shared.append(&line);
            return;
        }
        let partition = partition_of(event.link_id, self.batches.len());
        let full = {
            let mut batch = self.batches[partition].lock().expect("not poisoned");
            batch.push(event);
            (batch.len() >= BATCH_BYTES).then(|| batch.take())
        };
        self.produced.increment(1);
        if let Some(batch) = full {
            self.produce(partition, &batch);
        }
    }

    /// Sends partition's batch to the producer, if it has clicks.
    fn send_batch(&self, partition: usize) {
        let batch = {
            let mut buffer = self.batches[partition].lock().expect("not poisoned");
            if buffer.is_empty() {
                return;
            }
            buffer.take()
        };
        self.produce(partition, &batch);
    }

    /// Hands a batch taken from partition's buffer to the producer; if the producer refuses it,
    /// spools its clicks.
    fn produce(&self, partition: usize, batch: &[u8]) {
        // Spooling started since these clicks were batched: they go to the spool, not to a
        // memory queue a crash would lose.
        if self.shared.spooling.load(Ordering::SeqCst) {
            self.shared.append_lines(batch);
            return;
        }
        let record = BaseRecord::with_opaque_to(&self.topic, DIRECT).partition(partition as i32).payload(batch);
        if let Err((error, _)) = self.producer.send::<(), _>(record) {
            let reason = if matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                "producer queue full"
            } else {
                "produce failed"
            };
            self.shared.start_spooling(reason);
            self.shared.append_lines(batch);
        } else if self.shared.spooling.load(Ordering::SeqCst) {
            // Spooling started while this batch was handed over: have it purged into the spool.
            self.shared.wake.notify_one();
        }
    }

    /// Sends every batch that has clicks.
    fn send_all_batches(&self) {
        for partition in 0..self.batches.len() {
            self.send_batch(partition);
        }
    }

    /// Sends batches at least every [`BATCH_LINGER`], for as long as the process lives.
    pub(crate) async fn send_batches_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BATCH_LINGER);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let queue = gauge!(PRODUCER_QUEUE_MESSAGES);
        loop {
            tick.tick().await;
            self.send_all_batches();
            queue.set(f64::from(self.producer.in_flight_count()));
        }
    }

    /// Whether clicks are being spooled now.
    pub(crate) fn spooling(&self) -> bool {
        self.shared.spooling.load(Ordering::SeqCst)
    }

    /// Click events handed to librdkafka and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// On shutdown: waits up to `timeout` for Kafka, then moves what is still queued to the spool.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        self.send_all_batches();
        if self.producer.flush(timeout).is_err() {
            tracing::warn!(
                in_flight = self.in_flight(),
                "Kafka did not acknowledge every click in time; spooling the rest"
            );
            self.producer.purge(PurgeConfig::default().queue().inflight());
            // Delivery reports of the purged clicks spool them.
            let _ = self.producer.flush(Duration::from_secs(1));
        }
    }

    /// Runs the replayer for as long as the process lives.
    pub(crate) async fn replay_forever(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.shared.wake.notified()).await;
            if !self.spooling() {
                continue;
            }
            let path = Arc::clone(&self);
            // File and librdkafka calls block; keep them off the request threads.
            let outcome = tokio::task::spawn_blocking(move || path.replay_once()).await;
            if let Ok(Err(error)) = outcome {
                tracing::warn!(%error, "click spool replay paused");
            }
        }
    }

    /// One replay attempt: purge the memory queue into the spool; if
    /// Kafka answers, produce the spool in order; switch back to direct when caught up.
    fn replay_once(&self) -> Result<(), String> {
        // While spooling, nothing may wait in the memory queue (a crash would lose it): direct
        // clicks still queued are purged, and their delivery reports spool them. Replayed copies
        // are only queued inside this function, so none is caught here.
        self.producer.purge(PurgeConfig::default().queue());
        let _ = self.producer.flush(Duration::from_millis(200));
        if self.producer.client().fetch_metadata(Some(&self.topic), Duration::from_secs(2)).is_err() {
            return Err("Kafka does not answer yet".into());
        }
        let dir = self.shared.dir.clone();
        for segment in log::segments(&dir).map_err(|e| e.to_string())? {
            let mut reader = Reader::open(&dir, segment).map_err(|e| e.to_string())?;
            loop {
                let mut sent = 0;
                while sent < REPLAY_CHUNK {
                    let Some(record) = reader.next_record() else { break };
                    self.produce_replayed(&record)?;
                    sent += 1;
                }
                if sent == 0 {
                    if self.finish_segment(&mut reader)? {
                        break;
                    }
                    continue;
                }
                if self.producer.flush(Duration::from_secs(10)).is_err() {
                    // Kafka went away again: drop the queued copies, the spool still has them.
                    self.producer.purge(PurgeConfig::default().queue().inflight());
                    let _ = self.producer.flush(Duration::from_millis(200));
                    return Err("Kafka stopped acknowledging during replay".into());
                }
                reader.checkpoint().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// At the end of a segment's records: an older segment is deleted; the segment being
    /// written is finished only if nothing was appended since, in which case the path goes
    /// back to direct (under the writer's lock, so no click slips in between). Returns whether
    /// the segment is done.
    fn finish_segment(&self, reader: &mut Reader) -> Result<bool, String> {
        let mut writer = self.shared.writer.lock().expect("not poisoned");
        if reader.segment() == writer.segment() {
            reader.refill().map_err(|e| e.to_string())?;
            if reader.position() < writer.written() {
                return Ok(false); // more arrived; keep reading
            }
            writer.rotate().map_err(|e| e.to_string())?;
            self.shared.spooling.store(false, Ordering::SeqCst);
            tracing::info!("click spool replayed; producing directly again");
        }
        drop(writer);
        let size = std::fs::metadata(self.shared.dir.join(format!("{:020}.seg", reader.segment())))
            .map(|m| m.len())
            .unwrap_or(0);
        log::remove(&self.shared.dir, reader.segment()).map_err(|e| e.to_string())?;
        let update =
            self.shared.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(size)));
        gauge!(SPOOL_BYTES).set(update.unwrap_or(0).saturating_sub(size) as f64);
        Ok(true)
    }

    fn produce_replayed(&self, record: &[u8]) -> Result<(), String> {
        // The key is the link id, as for direct clicks (same partition, same order per link).
        let key = serde_json::from_slice::<ClickEvent>(record).map(|e| e.link_id.to_string()).unwrap_or_default();
        loop {
            match self.producer.send(BaseRecord::with_opaque_to(&self.topic, REPLAY).key(&key).payload(record)) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err((error, _)) => return Err(error.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_clicks_are_logged_once_a_second_with_how_many_were_held_back() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.allow(start), Some(0), "the first drop is logged");
        for ms in [1, 10, 500, 999] {
            assert_eq!(throttle.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(throttle.allow(start + Duration::from_millis(1000)), Some(4));
        assert_eq!(throttle.allow(start + Duration::from_millis(1500)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(5)), Some(1));
    }

    /// A batch that did not reach Kafka (purged or failed) is spooled a click per record, as
    /// NDJSON lines, whichever encoding it was produced in.
    #[test]
    fn an_undelivered_batch_is_spooled_as_one_ndjson_record_per_click() {
        let dir = std::env::temp_dir().join(format!("runnel-spool-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shared = Shared {
            spooling: AtomicBool::new(true),
            writer: Mutex::new(Writer::open(&dir, SEGMENT_BYTES).unwrap()),
            dir: dir.clone(),
            max_bytes: 1 << 20,
            bytes: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            drop_log: Throttle::new(Duration::from_secs(1)),
        };
        let utm = events::Utm { campaign: Some("spring".into()), ..Default::default() };
        let agents = ["Mozilla/5.0 \"quoted\"\n", "curl/8.4", "Mozilla/5.0 \"quoted\"\n"];
        let clicks: Vec<ClickRef<'_>> = (0..3u64)
            .map(|i| ClickRef {
                v: 1,
                id: 10 + i,
                ts: 1_700_000_000_000 + i,
                link_id: 5,
                code: "abc",
                method: "GET",
                ua: agents[i as usize],
                referrer: "",
                lang: "de",
                ip: "203.0.113.0",
                country: "",
                q: "",
                utm: (i == 1).then_some(&utm),
            })
            .collect();
        let mut lines = Vec::new();
        let mut batches = [Batch::new(ClickEncoding::Ndjson), Batch::new(ClickEncoding::Compact)];
        for click in &clicks {
            click.encode_line(&mut lines);
            for batch in &mut batches {
                batch.push(click);
            }
        }
        for batch in &mut batches {
            shared.append_lines(&batch.take());
        }
        let mut reader = Reader::open(&dir, 0).unwrap();
        let records: Vec<Vec<u8>> = std::iter::from_fn(|| reader.next_record()).collect();
        let expected: Vec<&[u8]> = lines.split_inclusive(|b| *b == b'\n').collect();
        assert_eq!(records.len(), 6, "three clicks of each batch");
        for half in records.chunks(3) {
            let half: Vec<&[u8]> = half.iter().map(Vec::as_slice).collect();
            assert_eq!(half, expected);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_links_clicks_always_land_in_one_partition_spread_over_all() {
        assert_eq!(partition_of(42, 12), partition_of(42, 12));
        let used: std::collections::HashSet<usize> = (0..1000).map(|id| partition_of(id, 12)).collect();
        assert_eq!(used.len(), 12);
        // librdkafka's consistent_random: CRC-32 of the key, modulo the partition count.
        assert_eq!(partition_of(123_456_789, 7), (crc32fast::hash(b"123456789") % 7) as usize);
    }
}
