//! The dead-letter topic: where a line no pipeline can take goes, with headers naming the
//! reason, the pipeline, and the source topic, partition, offset and line.

use std::time::Duration;

use events::producer::{AckedProducer, Record};
use metrics::counter;
use rdkafka::message::{Header, OwnedHeaders};

use crate::metrics::DLQ_TOTAL;

/// Sends dead letters, waiting for Kafka's acknowledgement.
pub(crate) struct DeadLetters {
    producer: AckedProducer,
    topic: String,
    max_backoff: Duration,
}

/// Where a dead letter came from.
pub(crate) struct Source<'a> {
    pub(crate) pipeline: &'static str,
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) line: usize,
}

impl DeadLetters {
    pub(crate) fn new(producer: AckedProducer, topic: String, max_backoff: Duration) -> Self {
        Self { producer, topic, max_backoff }
    }

    /// Sends `payload` (the bad line) with `reason`; retries until Kafka acknowledged it, so the
    /// caller's batch (and its commit) never passes a message whose dead letter is not stored.
    /// `kind` is the reason's class for the metric: `undecodable` (not an event at all) or
    /// `invalid` (an event that breaks a rule).
    pub(crate) async fn send(
        &self,
        source: Source<'_>,
        key: Option<&[u8]>,
        payload: &[u8],
        kind: &'static str,
        reason: &str,
    ) {
        tracing::warn!(
            pipeline = source.pipeline,
            partition = source.partition,
            offset = source.offset,
            reason,
            kind,
            "line sent to the dead-letter topic"
        );
        let (partition, offset, line) =
            (source.partition.to_string(), source.offset.to_string(), source.line.to_string());
        let headers = OwnedHeaders::new()
            .insert(Header { key: "runnel.reason", value: Some(reason) })
            .insert(Header { key: "runnel.pipeline", value: Some(source.pipeline) })
            .insert(Header { key: "runnel.source.topic", value: Some(source.topic) })
            .insert(Header { key: "runnel.source.partition", value: Some(partition.as_str()) })
            .insert(Header { key: "runnel.source.offset", value: Some(offset.as_str()) })
            .insert(Header { key: "runnel.source.line", value: Some(line.as_str()) });
        let mut backoff = Duration::from_millis(100);
        loop {
            let record = Record { topic: &self.topic, key, payload, headers: Some(headers.clone()) };
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => break,
                Err(error) => tracing::warn!(%error, "dead-letter topic unavailable, retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
        counter!(DLQ_TOTAL, "pipeline" => source.pipeline, "reason" => kind).increment(1);
    }
}
