//! Kafka producers of the edge: clicks are handed over without waiting (a redirect never
//! waits on Kafka); link events are awaited until Kafka acknowledged them (`acks=all`).

use std::time::Duration;

use events::kafka::Topics;
use events::{ClickEvent, LinkEvent, OrderEvent, encode_ndjson};
use metrics::counter;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};

use crate::EdgeConfig;
use crate::metrics::{CLICKS_DELIVERED_TOTAL, CLICKS_DROPPED_TOTAL, CLICKS_PRODUCED_TOTAL};

/// Counts click deliveries as librdkafka reports them.
pub(crate) struct ClickDeliveries;

impl ClientContext for ClickDeliveries {}

impl ProducerContext for ClickDeliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => counter!(CLICKS_DELIVERED_TOTAL).increment(1),
            Err((error, _)) => {
                tracing::error!(%error, "click event not delivered");
                counter!(CLICKS_DROPPED_TOTAL, "reason" => "delivery_failed").increment(1);
            }
        }
    }
}

/// The edge's producers.
pub(crate) struct Producers {
    clicks: ThreadedProducer<ClickDeliveries>,
    /// Link and order events: each awaited until acknowledged.
    links: FutureProducer,
    topics: Topics,
    link_timeout: Duration,
}

impl Producers {
    pub(crate) fn new(config: &EdgeConfig) -> Result<Self, KafkaError> {
        let mut base = config.kafka.client_config();
        base.set("acks", "all");

        // Clicks: idempotent (no duplicates from producer retries), and never timed out while
        // Kafka is away, so librdkafka never bumps the producer epoch; the queue bound limits memory.
        let mut clicks = base.clone();
        clicks
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.messages", config.producer_queue_messages.to_string());
        // Links and orders: awaited per request, failing after the Kafka time-out.
        let mut links = base;
        links.set("linger.ms", "0").set("message.timeout.ms", config.kafka.timeout_ms.to_string());
        if config.kafka_idempotence {
            links.set("enable.idempotence", "true");
        } else {
            links.set("enable.idempotence", "false").set("max.in.flight.requests.per.connection", "1");
        }

        Ok(Self {
            clicks: clicks.create_with_context(ClickDeliveries)?,
            links: links.create()?,
            topics: config.kafka.topics(),
            link_timeout: Duration::from_millis(config.kafka.timeout_ms),
        })
    }

    /// Hands a click event to the producer and returns at once.
    pub(crate) fn send_click(&self, event: &ClickEvent) {
        let mut payload = Vec::with_capacity(256);
        encode_ndjson(&mut payload, [event]);
        let key = event.link_id.to_string();
        match self.clicks.send(BaseRecord::to(&self.topics.clicks).key(&key).payload(&payload)) {
            Ok(()) => counter!(CLICKS_PRODUCED_TOTAL).increment(1),
            Err((error, _)) => {
                let reason = if matches!(error, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                    "queue_full"
                } else {
                    "produce_failed"
                };
                tracing::error!(%error, event_id = event.id, "click event dropped");
                counter!(CLICKS_DROPPED_TOTAL, "reason" => reason).increment(1);
            }
        }
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
        self.clicks.in_flight_count()
    }

    /// Waits (blocking) up to `timeout` for everything produced to be acknowledged.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.links.flush(timeout)?;
        self.clicks.flush(timeout)
    }
}
