//! Order intake against the real stack: validation, all-or-nothing batches, acknowledgement by
//! Kafka, and a Kafka outage.

mod common;

use std::time::Duration;

use common::{KEY, PrivateBroker, READ_KEY, TestEnv, http, kafka_brokers, read_topic};
use rdkafka::Message;

fn order(event_id: &str, order_id: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event_id, "order_id": order_id, "customer_id": "c-1", "status": "paid", "currency": "EUR",
        "items": [{"product_id": "p-1", "sku": "SKU1", "quantity": 2, "unit_price": 1250}],
        "totals": {"subtotal": 2500, "tax": 475, "shipping": 300, "discount": 0, "total": 3275},
        "channel": "web", "link_code": "spring", "time": "2026-11-20T10:00:00Z"
    })
}

fn ndjson(events: &[serde_json::Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

async fn post(env: &TestEnv, key: &str, content_type: &str, body: String) -> reqwest::Response {
    http()
        .post(format!("{}/api/orders/events", env.edge_url()))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_batch_is_acknowledged_by_kafka_and_a_bad_one_is_refused_whole() {
    let mut env = TestEnv::new("orders");
    env.set("RUNNEL_ORDERS_MAX_EVENTS", "5");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let topic = format!("{}orders", env.topic_prefix());

    let batch = [order("e-1", "o-1"), order("e-2", "o-2"), order("e-3", "o-1")];
    let response = post(&env, KEY, "application/x-ndjson", ndjson(&batch)).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["accepted"], 3);
    let single = post(&env, KEY, "application/json; charset=utf-8", order("e-4", "o-4").to_string()).await;
    assert_eq!(single.status(), 202);

    // A batch with two bad events among good ones: 400 naming each, nothing produced.
    let mut bad_quantity = order("e-6", "o-6");
    bad_quantity["items"][0]["quantity"] = serde_json::json!(0);
    let mut bad_type = order("e-7", "o-7");
    bad_type["totals"]["tax"] = serde_json::json!("lots");
    let response = post(
        &env,
        KEY,
        "application/x-ndjson",
        ndjson(&[order("e-5", "o-5"), bad_quantity, order("e-8", "o-8"), bad_type]),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_events");
    assert!(body["error"]["message"].as_str().unwrap().contains("2 of 4 events are invalid"), "{body}");
    let details: Vec<(u64, String)> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["path"].as_str().unwrap().to_string()))
        .collect();
    assert!(details.contains(&(2, "items[0].quantity".into())), "{details:?}");
    assert!(details.contains(&(2, "totals.subtotal".into())), "{details:?}");
    assert!(details.contains(&(4, "totals.tax".into())), "{details:?}");

    let messages = read_topic(&kafka_brokers(), &topic, 12, Duration::from_secs(3));
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(m.payload().unwrap()).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["e-1", "e-2", "e-3", "e-4"], "only the accepted events reached Kafka");
    for message in &messages {
        let event: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(message.key(), Some(event["order_id"].as_str().unwrap().as_bytes()), "orders are keyed by order id");
        assert!(event["received_ms"].as_u64().unwrap() > 0);
    }
    // Both events of order o-1 share a partition, so their order is kept.
    let o1: Vec<i32> = messages.iter().filter(|m| m.key() == Some(&b"o-1"[..])).map(|m| m.partition()).collect();
    assert_eq!(o1.len(), 2);
    assert_eq!(o1[0], o1[1]);

    let cases = [
        (post(&env, KEY, "text/plain", ndjson(&[order("e-9", "o-9")])).await, 415, "unsupported_media_type"),
        (
            post(&env, KEY, "application/x-ndjson", ndjson(&vec![order("e-10", "o-10"); 6])).await,
            413,
            "batch_too_large",
        ),
        (post(&env, KEY, "application/x-ndjson", "\n\n".into()).await, 400, "empty_batch"),
        (post(&env, KEY, "application/json", "{\"event_id\": ".into()).await, 400, "invalid_events"),
        (post(&env, READ_KEY, "application/json", order("e-11", "o-11").to_string()).await, 403, "forbidden"),
    ];
    for (response, status, code) in cases {
        assert_eq!(response.status().as_u16(), status);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_down_order_intake_answers_503_with_retry_after() {
    let mut env = TestEnv::new("orders503");
    let mut broker = PrivateBroker::start(&env);
    env.set("RUNNEL_KAFKA_BROKERS", broker.brokers.clone());
    env.set("RUNNEL_KAFKA_TIMEOUT_MS", "3000");
    // tansu 0.6 refuses an idempotent producer's writes after the epoch bump that follows a
    // delivery time-out; see RUNNEL_KAFKA_IDEMPOTENCE.
    env.set("RUNNEL_KAFKA_IDEMPOTENCE", "false");
    env.prepare();
    let _edge = env.spawn_edge().await;
    assert_eq!(post(&env, KEY, "application/json", order("e-1", "o-1").to_string()).await.status(), 202);

    broker.stop();
    let started = std::time::Instant::now();
    let response = post(&env, KEY, "application/x-ndjson", ndjson(&[order("e-2", "o-2"), order("e-3", "o-3")])).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body["error"]["message"].as_str().unwrap().contains("same batch"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "the answer comes within the configured Kafka timeout");

    // Kafka back: the same batch goes through.
    broker.restart();
    let mut status = 0;
    for _ in 0..60 {
        status = post(&env, KEY, "application/x-ndjson", ndjson(&[order("e-2", "o-2"), order("e-3", "o-3")]))
            .await
            .status()
            .as_u16();
        if status == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status, 202, "intake recovers when Kafka returns");
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_events_are_stored_once_counted_and_bad_ones_dead_lettered() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut env = TestEnv::new("orderflow");
    let archive = env.logs.join("archive");
    env.set("RUNNEL_ARCHIVE_DIR", archive.display().to_string());
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let time = now_rfc3339();
    let day = &time[..10];
    let at = |mut event: serde_json::Value| {
        event["time"] = serde_json::json!(time);
        event
    };
    let mut created = at(order("e-1", "o-1"));
    created["status"] = serde_json::json!("created");
    let batch = [created, at(order("e-2", "o-1")), at(order("e-3", "o-2"))];
    assert_eq!(post(&env, KEY, "application/x-ndjson", ndjson(&batch)).await.status(), 202);
    // A client retrying an event it already sent (its answer was lost): stored once.
    assert_eq!(post(&env, KEY, "application/json", at(order("e-3", "o-2")).to_string()).await.status(), 202);

    // Bad messages written straight to the topic (not through the edge): one not JSON, one that
    // breaks a rule, between good lines of the same message.
    let topic = format!("{}orders", env.topic_prefix());
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().unwrap();
    let mut invalid = at(order("e-5", "o-5"));
    invalid["currency"] = serde_json::json!("euro");
    let payload = format!("{}\nnot json\n{}\n{}\n", at(order("e-4", "o-4")), invalid, at(order("e-6", "o-6")));
    producer.send(FutureRecord::to(&topic).key("o-4").payload(&payload), Duration::from_secs(10)).await.unwrap();

    let stored =
        common::eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM orders").await >= 5 })
            .await;
    assert!(stored, "{} order events stored", env.ch_u64("SELECT count() FROM orders").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM orders").await, 5, "e-1, e-2, e-3 once, e-4, e-6");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM orders").await, 5);
    assert_eq!(env.ch_u64("SELECT toUInt64(sum(total)) FROM orders WHERE status = 'paid'").await, 4 * 3275);
    assert_eq!(env.ch_u64("SELECT toUInt64(sum(arraySum(item_quantity))) FROM orders").await, 5 * 2);

    let orders_key = format!("orders:{{{day}}}");
    assert!(
        common::eventually(Duration::from_secs(30), || async {
            env.redis_hget(&orders_key, "count:paid").await == Some(4)
        })
        .await,
        "paid orders counted: {:?}",
        env.redis_hget(&orders_key, "count:paid").await
    );
    assert_eq!(env.redis_hget(&orders_key, "count:created").await, Some(1));
    assert_eq!(env.redis_hget(&orders_key, "revenue:paid:EUR").await, Some(4 * 3275));
    assert_eq!(env.redis_hget(&format!("items:{{{day}}}"), "p-1").await, Some(4 * 2), "units of paid orders");

    let dead = read_topic(&kafka_brokers(), &format!("{}dlq", env.topic_prefix()), 12, Duration::from_secs(3));
    let mut letters: Vec<(String, String, String)> = dead
        .iter()
        .map(|m| {
            let header = |name: &str| {
                use rdkafka::message::Headers;
                let headers = m.headers().unwrap();
                (0..headers.count())
                    .map(|i| headers.get(i))
                    .find(|h| h.key == name)
                    .map(|h| String::from_utf8_lossy(h.value.unwrap()).to_string())
                    .unwrap()
            };
            (header("runnel.source.line"), header("runnel.pipeline"), header("runnel.reason"))
        })
        .collect();
    letters.sort();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!((letters[0].0.as_str(), letters[0].1.as_str()), ("2", "orders"));
    assert_eq!((letters[1].0.as_str(), letters[1].1.as_str()), ("3", "orders"));
    assert!(letters[1].2.starts_with("line 3: currency:"), "{letters:?}");

    // The archive, read by pyarrow: the five stored events, lines included.
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, json, pyarrow.dataset as ds\n\
             t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()\n\
             print(json.dumps(sorted([e, sum(q)] for e, q in zip(t['event_id'].to_pylist(), t['item_quantity'].to_pylist()))))",
        )
        .arg(archive.join(format!("topic={topic}")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archived: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(archived, serde_json::json!([["e-1", 2], ["e-2", 2], ["e-3", 2], ["e-4", 2], ["e-6", 2]]));
}
