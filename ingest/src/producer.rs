//! Kafka producers of the edge: clicks are handed over without waiting (a redirect never
//! waits on Kafka; see [`crate::spool`]); link and order events are awaited until Kafka
//! acknowledged them (`acks=all`).

use std::sync::Arc;
use std::time::Duration;

use events::kafka::Topics;
use events::{ClickRef, LinkEvent, OrderEvent};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::EdgeConfig;
use crate::spool::clicks::ClickPath;

/// The edge's producers.
pub(crate) struct Producers {
    pub(crate) clicks: Arc<ClickPath>,
    /// Link and order events: each awaited until acknowledged.
    links: FutureProducer,
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
        let mut links = base;
        links.set("linger.ms", "0").set("message.timeout.ms", config.kafka.timeout_ms.to_string());

        Ok(Self {
            clicks: ClickPath::new(clicks, config.kafka.topics().clicks, &config.spool_dir, config.spool_max_bytes)?,
            links: links.create()?,
            topics: config.kafka.topics(),
            link_timeout: Duration::from_millis(config.kafka.timeout_ms),
        })
    }

    /// Hands a click event to Kafka without waiting, or to the spool while Kafka is away.
    pub(crate) fn send_click(&self, event: &ClickRef<'_>) {
        self.clicks.send(event);
    }

    /// Produces a link event and waits until Kafka acknowledged it.
    pub(crate) async fn send_link(&self, event: &LinkEvent) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(event).expect("link event serializes");
        let record = FutureRecord::to(&self.topics.links).key(&event.code).payload(&payload);
        self.links.send(record, self.link_timeout).await.map(|_| ()).map_err(|(error, _)| error)
    }

    /// Produces order events (key: order id) and waits until Kafka acknowledged every one.
    pub(crate) async fn send_orders(&self, orders: &[OrderEvent]) -> Result<(), KafkaError> {
        let sends = orders.iter().map(|order| {
            let payload = serde_json::to_vec(order).expect("order event serializes");
            async move {
                let record = FutureRecord::to(&self.topics.orders).key(&order.order_id).payload(&payload);
                self.links.send(record, self.link_timeout).await.map(|_| ()).map_err(|(error, _)| error)
            }
        });
        futures::future::join_all(sends).await.into_iter().collect()
    }

    /// Whether the brokers answer a metadata request, asked through the link producer's
    /// existing connections.
    pub(crate) async fn kafka_reachable(&self) -> bool {
        let producer = self.links.clone();
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
        if let Err(error) = self.links.flush(timeout) {
            tracing::warn!(%error, "link and order events unacknowledged at shutdown");
        }
        self.clicks.shutdown(timeout);
    }
}
