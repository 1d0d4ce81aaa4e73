//! Kafka producers whose delivery reports are served by a thread that waits in librdkafka.
//!
//! rdkafka's `ThreadedProducer` and `FutureProducer` serve delivery reports from a thread that
//! polls with a 100 ms deadline, handing librdkafka the time left rounded down to whole
//! milliseconds: in the last millisecond before each deadline it polls with a zero timeout,
//! over and over. That spin costs about 1% of a core per producer, busy or idle (on an idle
//! processor, `/proc/{pid}/task/*/stat` showed its "producer polling thread" as the only busy
//! thread). [`PolledProducer`] polls with a one-second deadline instead, so the same rounding
//! costs at most a millisecond a second; events are still served the moment they arrive.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::oneshot;

/// The serving thread's name (Linux keeps 15 bytes of it).
const THREAD_NAME: &str = "kafka-events";

/// How long one poll of the serving thread waits for events.
const POLL_DEADLINE: Duration = Duration::from_secs(1);

/// A `BaseProducer` whose events (delivery reports, errors) a thread of its own serves as they
/// come. Derefs to the producer for `send`, `flush`, `purge` and the client. Dropping it tells
/// the thread to stop; the thread lets go of the producer at the end of its current poll.
pub struct PolledProducer<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    /// Creates the producer from `config` with `context`, and its serving thread.
    pub fn create(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<C>> = Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (Arc::clone(&producer), Arc::clone(&stop));
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    serving.poll(POLL_DEADLINE);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("cannot start the producer's event thread: {e}")))?;
        Ok(Self { producer, stop })
    }

    /// The producer, for work on another thread (a metadata request, say).
    pub fn shared(&self) -> Arc<BaseProducer<C>> {
        Arc::clone(&self.producer)
    }
}

impl<C: ProducerContext + 'static> Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for PolledProducer<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Hands each delivery report to the task waiting for it.
pub struct AckContext;

impl ClientContext for AckContext {}

/// Where a record ended up: partition and offset.
pub type Delivered = (i32, i64);

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<Delivered>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiting: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        let _ = waiting.send(outcome);
    }
}

/// A producer whose sends are awaited until Kafka acknowledged them (what rdkafka's
/// `FutureProducer` does, without its spinning poll thread).
pub struct AckedProducer {
    inner: PolledProducer<AckContext>,
}

/// One record to send.
pub struct Record<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Payload.
    pub payload: &'a [u8],
    /// Headers, if any.
    pub headers: Option<OwnedHeaders>,
}

impl AckedProducer {
    /// Creates the producer from `config`.
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        Ok(Self { inner: PolledProducer::create(config, AckContext)? })
    }

    /// Sends `record` and waits for Kafka's answer. While librdkafka's queue is full it tries
    /// again for up to `queue_timeout`.
    pub async fn send(&self, record: Record<'_>, queue_timeout: Duration) -> KafkaResult<Delivered> {
        let (sender, answer) = oneshot::channel();
        let mut waiting = Box::new(sender);
        let deadline = Instant::now() + queue_timeout;
        loop {
            let mut base = BaseRecord::with_opaque_to(record.topic, waiting).payload(record.payload);
            if let Some(key) = record.key {
                base = base.key(key);
            }
            if let Some(headers) = &record.headers {
                base = base.headers(headers.clone());
            }
            match self.inner.send(base) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), base))
                    if Instant::now() < deadline =>
                {
                    waiting = base.delivery_opaque;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
        answer.await.unwrap_or(Err(KafkaError::Canceled))
    }

    /// Waits (blocking) up to `timeout` for every record sent to be answered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.flush(timeout)
    }

    /// The producer, for work on another thread (a metadata request, say).
    pub fn shared(&self) -> Arc<BaseProducer<AckContext>> {
        self.inner.shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on this port: records wait in librdkafka's queue until they time out.
    fn unreachable() -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1").set("message.timeout.ms", "300").set("log_level", "0");
        config
    }

    /// CPU clock ticks and count of the serving threads of this process.
    fn serving_threads() -> (u64, usize) {
        let mut found = (0, 0);
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            if name.trim() != THREAD_NAME {
                continue;
            }
            let fields: Vec<u64> = stat
                .rsplit(')')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            found.0 += fields.iter().sum::<u64>();
            found.1 += 1;
        }
        found
    }

    #[tokio::test]
    async fn sends_are_answered_and_the_serving_thread_sleeps_while_nothing_happens() {
        let producer = AckedProducer::create(&unreachable()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (before, threads) = serving_threads();
        assert_eq!(threads, 1);
        std::thread::sleep(Duration::from_secs(5));
        // rdkafka's own poll thread spends about 4 of the 500 clock ticks of five seconds
        // spinning; this one at most 2 ms.
        assert!(serving_threads().0 - before <= 1, "the serving thread used CPU while idle");

        let record = Record { topic: "t", key: Some(b"k"), payload: b"p", headers: None };
        let started = Instant::now();
        let error = producer.send(record, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the delivery report came when it was due");

        drop(producer);
        std::thread::sleep(POLL_DEADLINE + Duration::from_millis(500));
        assert_eq!(serving_threads().1, 0, "the serving thread ended after its producer was dropped");
    }
}
