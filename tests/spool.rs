//! The click spool against a real broker: Kafka stopped while redirects continue, the edge
//! killed with SIGKILL during the outage and restarted, Kafka restarted — every click id
//! answered to a client reaches Kafka.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{BROWSER, PrivateBroker, TestEnv, create_link, eventually, follow, http, metric, read_topic};
use rdkafka::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_click_reaches_kafka_across_an_outage_and_an_edge_kill() {
    outage_and_kill("ndjson").await;
}

/// The same with compact click batches on the topic. (Which batches an outage catches in
/// librdkafka's queue is up to timing; spooling such a batch is checked in `ingest`'s
/// `an_undelivered_batch_is_spooled_as_one_ndjson_record_per_click`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_click_reaches_kafka_across_an_outage_and_an_edge_kill_in_compact_batches() {
    outage_and_kill("compact").await;
}

/// Clicks of a message in either layout, as NDJSON lines.
fn click_lines(message: &rdkafka::message::OwnedMessage) -> Vec<u8> {
    events::click_batch::to_lines(message.payload().unwrap_or_default()).expect("a click message decodes")
}

async fn outage_and_kill(encoding: &str) {
    let mut env = TestEnv::new("spool");
    env.set("RUNNEL_CLICK_ENCODING", encoding);
    let mut broker = PrivateBroker::start(&env);
    env.set("RUNNEL_KAFKA_BROKERS", broker.brokers.clone());
    env.set("RUNNEL_KAFKA_TIMEOUT_MS", "3000");
    env.set("RUNNEL_KAFKA_IDEMPOTENCE", "false");
    env.prepare();
    let mut edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/spooled").await;

    let mut answered = follow(&env, &code, 50, BROWSER).await;
    // Stop the broker only once it holds these: a message it stores but cannot acknowledge
    // (stopped mid-request) is re-sent from the spool, a repeat this test does not expect.
    let topic = format!("{}clicks", env.topic_prefix());
    let count_lines = |messages: Vec<rdkafka::message::OwnedMessage>| -> usize {
        messages.iter().map(|m| click_lines(m).iter().filter(|b| **b == b'\n').count()).sum()
    };
    let acknowledged = eventually(Duration::from_secs(30), || {
        let (brokers, topic) = (broker.brokers.clone(), topic.clone());
        async move { count_lines(read_topic(&brokers, &topic, 12, Duration::from_secs(2))) == 50 }
    })
    .await;
    assert!(acknowledged, "the first 50 clicks reach the broker");
    broker.stop();
    answered.extend(follow(&env, &code, 150, BROWSER).await);
    // Kill the edge without warning while Kafka is still away, and start it again.
    edge.kill9();
    let mut edge = env.spawn_edge().await;
    answered.extend(follow(&env, &code, 100, BROWSER).await);
    let metrics = http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap();
    let spooled = metrics
        .lines()
        .find_map(|l| l.strip_prefix("runnel_edge_clicks_spooled_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(spooled > 0.0, "the restarted edge spools:\n{metrics}");

    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    loop {
        seen.clear();
        for message in read_topic(&broker.brokers, &topic, 12, Duration::from_secs(2)) {
            for line in click_lines(&message).split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let event: serde_json::Value = serde_json::from_slice(line).unwrap();
                *seen.entry(event["id"].as_u64().unwrap()).or_default() += 1;
            }
        }
        if answered.iter().all(|id| seen.contains_key(id)) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let missing: Vec<&u64> = answered.iter().filter(|id| !seen.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered clicks never reached Kafka:\n{}",
        missing.len(),
        answered.len(),
        edge.log_text()
    );
    let repeated = seen.values().filter(|n| **n > 1).count();
    assert_eq!(repeated, 0, "no click was written twice (nothing was in flight at the kill)");
    assert_eq!(seen.len(), answered.len(), "nothing but the answered clicks");
    // The spool is drained and the edge is back to producing directly.
    let ready: serde_json::Value =
        http().get(format!("{}/readyz", env.edge_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["spooling"], false, "{ready}");
    let _ = edge.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_full_spool_drops_clicks_and_each_drop_is_counted() {
    let mut env = TestEnv::new("spoolfull");
    let mut broker = PrivateBroker::start(&env);
    env.set("RUNNEL_KAFKA_BROKERS", broker.brokers.clone());
    env.set("RUNNEL_KAFKA_IDEMPOTENCE", "false");
    // Room for a handful of click records only.
    env.set("RUNNEL_SPOOL_MAX_BYTES", "4000");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/full").await;
    broker.stop();
    // Redirects go on; clicks fill the spool, then are dropped.
    follow(&env, &code, 60, BROWSER).await;
    // A click batched just before the outage was noticed reaches the spool when the replayer
    // purges the memory queue (within half a second): read once the counts settle.
    let read = || async { http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap() };
    let counts = |text: &str| {
        (
            metric(text, "runnel_edge_clicks_spooled_total"),
            metric(text, "runnel_edge_clicks_dropped_total{reason=\"spool_full\"}"),
        )
    };
    eventually(Duration::from_secs(5), || async {
        let (spooled, dropped) = counts(&read().await);
        spooled + dropped == 60
    })
    .await;
    let text = read().await;
    let (spooled, dropped) = counts(&text);
    assert!(spooled > 0 && dropped > 0, "spooled {spooled}, dropped {dropped}:\n{text}");
    assert_eq!(spooled + dropped, 60, "every click is either spooled or counted as dropped");
    assert!(metric(&text, "runnel_edge_spool_bytes") <= 4000);
}
