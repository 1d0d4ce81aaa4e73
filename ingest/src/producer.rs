//! Kafka producers of the edge: clicks are handed over without waiting (a redirect never
//! waits on Kafka; see [`crate::spool`]); link and order events are awaited until Kafka
//! acknowledged them (`acks=all`).

use std::sync::Arc;
use std::time::Duration;

use events::kafka::Topics;
use events::producer::{AckedProducer, Record};
use events::{ClickRef, LinkEvent, OrderEvent};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

use crate::EdgeConfig;
use crate::spool::clicks::ClickPath;

/// The edge's producers.
pub(crate) struct Producers {
    pub(crate) clicks: Arc<ClickPath>,
    /// Link and order events: each awaited until acknowledged.
    acked: AckedProducer,
    topics: Topics,
    link_timeout: Duration,
}

impl Producers {
    pub(crate) fn new(config: &EdgeConfig) -> Result<Self, crate::EdgeError> {
        let mut base = config.kafka.client_config();
        base.set("acks", "all");
        if config.kafka_idempotence {
            base.set("enable.idempotence", "true");
        } else {
            // Order per partition without idempotence: one request in flight.
            base.set("enable.idempotence", "false").set("max.in.flight.requests.per.connection", "1");
        }

        // Clicks: never timed out while Kafka is away (the spool takes over); the queue bound
        // limits memory.
        let mut clicks = base.clone();
        clicks
            .set("linger.ms", "5")
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.messages", config.producer_queue_messages.to_string());
        // Links and orders: awaited per request, failing after the Kafka time-out.
        let mut acked = base;
        acked.set("linger.ms", "0").set("message.timeout.ms", config.kafka.timeout_ms.to_string());

        Ok(Self {
            clicks: ClickPath::new(
                clicks,
                config.kafka.topics().clicks,
                config.click_encoding,
                &config.spool_dir,
                config.spool_max_bytes,
            )?,
            acked: AckedProducer::create(&acked)?,
            topics: config.kafka.topics(),
            link_timeout: Duration::from_millis(config.kafka.timeout_ms),
        })
    }

    /// Hands a click event to Kafka without waiting, or to the spool while Kafka is away.
    pub(crate) fn send_click(&self, event: &ClickRef<'_>) {
        self.clicks.send(event);
    }

    /// Produces one JSON event and waits until Kafka acknowledged it.
    async fn send_acked(&self, topic: &str, key: &str, event: &impl serde::Serialize) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(event).expect("event serializes");
        let record = Record { topic, key: Some(key.as_bytes()), payload: &payload, headers: None };
        self.acked.send(record, self.link_timeout).await.map(|_| ())
    }

    /// Produces a link event (key: code) and waits until Kafka acknowledged it.
    pub(crate) async fn send_link(&self, event: &LinkEvent) -> Result<(), KafkaError> {
        self.send_acked(&self.topics.links, &event.code, event).await
    }

    /// Produces order events (key: order id) and waits until Kafka acknowledged every one.
    pub(crate) async fn send_orders(&self, orders: &[OrderEvent]) -> Result<(), KafkaError> {
        let sends = orders.iter().map(|order| self.send_acked(&self.topics.orders, &order.order_id, order));
        futures::future::join_all(sends).await.into_iter().collect()
    }

    /// Whether the brokers answer a metadata request, asked through the link and order producer's
    /// existing connections.
    pub(crate) async fn kafka_reachable(&self) -> bool {
        let producer = self.acked.shared();
        let timeout = self.link_timeout.min(Duration::from_secs(2));
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Click events not yet acknowledged.
    pub(crate) fn in_flight(&self) -> i32 {
        self.clicks.in_flight()
    }

    /// Waits (blocking) up to `timeout` for Kafka to acknowledge what was produced; clicks it
    /// did not acknowledge go to the spool.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(error) = self.acked.flush(timeout) {
            tracing::warn!(%error, "link and order events unacknowledged at shutdown");
        }
        self.clicks.shutdown(timeout);
    }
}
