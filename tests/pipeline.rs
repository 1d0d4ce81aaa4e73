//! End to end against the real stack: edge → Kafka → processor → ClickHouse and Redis.

mod common;

use std::time::Duration;

use common::{BROWSER, TestEnv, api, create_link, eventually, follow, http};

async fn stats_clicks(env: &TestEnv, code: &str) -> Option<(u64, u64)> {
    let response = api(reqwest::Method::GET, format!("{}/api/links/{code}/stats", env.edge_url())).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    Some((body["clicks"].as_u64()?, body["human_clicks"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_redirects_show_up_in_stats_and_in_the_redis_counter() {
    let env = TestEnv::new("follow");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let (code, link_id) = create_link(&env, "https://example.com/landing?x=1").await;

    let landing = http().get(format!("{}/{code}", env.edge_url())).header("user-agent", BROWSER).send().await.unwrap();
    assert_eq!(landing.headers()["location"], "https://example.com/landing?x=1");
    let mut ids = vec![landing.headers()["x-request-id"].to_str().unwrap().parse::<u64>().unwrap()];
    ids.extend(follow(&env, &code, 149, BROWSER).await);
    follow(&env, &code, 50, "Googlebot/2.1 (+http://www.google.com/bot.html)").await;
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 150, "request ids are unique");

    let counted =
        eventually(Duration::from_secs(60), || async { stats_clicks(&env, &code).await == Some((200, 150)) }).await;
    assert!(counted, "stats say {:?}, expected 200 clicks of which 150 human", stats_clicks(&env, &code).await);
    let redis_key = format!("clicks:{{{link_id}}}");
    assert!(
        eventually(Duration::from_secs(30), || async { env.redis_hget(&redis_key, "total").await == Some(200) }).await,
        "redis counter is {:?}",
        env.redis_hget(&redis_key, "total").await
    );

    // The ids the edge answered with are the stored event ids.
    let stored = env
        .ch_u64(&format!(
            "SELECT count() FROM clicks WHERE event_id IN ({})",
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        ))
        .await;
    assert_eq!(stored, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_processor_mid_stream_loses_and_repeats_no_click() {
    let mut env = TestEnv::new("kill");
    // Small, frequent batches so kills land between and during flushes.
    env.set("RUNNEL_BATCH_MAX_ROWS", "40");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "100");
    let archive = env.logs.join("archive");
    env.set("RUNNEL_ARCHIVE_DIR", archive.display().to_string());
    env.prepare();
    let _edge = env.spawn_edge().await;
    let (code, link_id) = create_link(&env, "https://example.com/landing?x=1").await;

    let traffic = {
        let url = format!("{}/{code}", env.edge_url());
        tokio::spawn(async move {
            let client = http();
            for _ in 0..1500 {
                let response = client.get(&url).header("user-agent", BROWSER).send().await.unwrap();
                assert_eq!(response.status(), 302);
            }
        })
    };
    let mut processor = env.spawn_processor();
    for round in 0..4 {
        // Let it join the group and store some batches, then kill it without warning.
        let before = env.ch_u64("SELECT count() FROM clicks").await;
        eventually(Duration::from_secs(30), || async { env.ch_u64("SELECT count() FROM clicks").await > before }).await;
        processor.kill9();
        eprintln!("round {round}: killed the processor after {} rows", env.ch_u64("SELECT count() FROM clicks").await);
        processor = env.spawn_processor();
    }
    traffic.await.unwrap();

    let all_stored =
        eventually(Duration::from_secs(90), || async { env.ch_u64("SELECT count() FROM clicks").await >= 1500 }).await;
    assert!(all_stored, "only {} of 1500 clicks stored", env.ch_u64("SELECT count() FROM clicks").await);
    let redis_key = format!("clicks:{{{link_id}}}");
    assert!(
        eventually(Duration::from_secs(30), || async { env.redis_hget(&redis_key, "total").await == Some(1500) }).await,
        "redis says {:?}",
        env.redis_hget(&redis_key, "total").await
    );
    // Settle, then check that nothing arrived twice anywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 1500, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 1500, "distinct event ids");
    assert_eq!(env.ch_u64("SELECT countMerge(clicks) FROM clicks_daily_by_link").await, 1500, "daily view");
    assert_eq!(env.redis_hget(&redis_key, "total").await, Some(1500), "redis counter");
    assert_eq!(stats_clicks(&env, &code).await, Some((1500, 1500)));

    // The Parquet archive, read by pyarrow, holds the same events once each.
    let archived = read_archive(&archive, &format!("{}clicks", env.topic_prefix()));
    let id_sum = env.ch_u64("SELECT sum(event_id) FROM clicks").await;
    assert_eq!(
        (archived["rows"].as_u64(), archived["distinct"].as_u64(), archived["id_sum"].as_u64()),
        (Some(1500), Some(1500), Some(id_sum)),
        "{archived}"
    );
    assert_eq!(archived["misplaced"], 0, "every row lies under its event's date and hour");
}

/// What `tests/read_archive.py` (pyarrow) finds in the archive of `topic`.
fn read_archive(dir: &std::path::Path, topic: &str) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/read_archive.py"))
        .arg(dir)
        .arg(topic)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "read_archive.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_stopped_with_sigterm_drains_and_exits_cleanly() {
    let mut env = TestEnv::new("drain");
    // A batch age far longer than the test: only the drain can store these clicks.
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "600000");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let mut processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://example.com/landing?x=1").await;
    follow(&env, &code, 30, BROWSER).await;
    // Wait until the processor holds the clicks (its consumed counter), then stop it.
    let metrics = format!("http://127.0.0.1:{}/metrics", env.metrics_port);
    let consumed = eventually(Duration::from_secs(60), || async {
        let text = reqwest::get(&metrics).await.ok();
        match text {
            Some(r) => r
                .text()
                .await
                .unwrap_or_default()
                .contains("runnel_processor_events_consumed_total{pipeline=\"clicks\"} 30"),
            None => false,
        }
    })
    .await;
    assert!(consumed, "processor did not consume the 30 clicks:\n{}", processor.log_text());
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 0, "nothing is stored before the drain");
    // Lag per partition (log end − committed offset, from librdkafka's statistics every 5 s):
    // only the partition whose messages the processor holds unstored is behind.
    let lag_line = "runnel_processor_consumer_lag{pipeline=\"clicks\",partition=\"";
    let lags = eventually(Duration::from_secs(20), || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(lag_line)).collect();
        lines.len() == 12 && lines.iter().filter(|l| !l.ends_with(" 0")).count() == 1
    })
    .await;
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(lags, "a lag gauge per partition, one of them behind:\n{text}");
    let status = processor.terminate();
    assert!(status.success(), "processor exit: {status}\n{}", processor.log_text());
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_stopped_with_sigterm_delivers_the_clicks_it_answered() {
    let env = TestEnv::new("edgestop");
    env.prepare();
    let mut edge = env.spawn_edge().await;
    let (code, _) = create_link(&env, "https://example.com/landing?x=1").await;
    let ids = follow(&env, &code, 300, BROWSER).await;
    // Stop at once: whatever the producer still holds must be flushed before exit.
    let status = edge.terminate();
    assert!(status.success(), "edge exit: {status}\n{}", edge.log_text());
    let _processor = env.spawn_processor();
    let stored =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await >= 300 }).await;
    assert!(stored, "only {} of 300 clicks stored", env.ch_u64("SELECT count() FROM clicks").await);
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    assert_eq!(env.ch_u64(&format!("SELECT uniqExact(event_id) FROM clicks WHERE event_id IN ({list})")).await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_each_dependency() {
    let env = TestEnv::new("ready");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let response = http().get(format!("{}/readyz", env.edge_url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!((body["kafka"].as_bool(), body["redis"].as_bool()), (Some(true), Some(true)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_reach_the_clickhouse_dimension_and_the_index_can_be_rebuilt_from_the_topic() {
    let env = TestEnv::new("links");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let mut codes = Vec::new();
    for i in 0..3 {
        codes.push(create_link(&env, &format!("https://example.com/{i}")).await.0);
    }
    let patched = api(reqwest::Method::PATCH, format!("{}/api/links/{}", env.edge_url(), codes[0]))
        .json(&serde_json::json!({"url": "https://example.com/patched"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    let in_clickhouse = eventually(Duration::from_secs(60), || async {
        env.ch_u64("SELECT count() FROM links FINAL").await == 3
            && env.ch_u64("SELECT count() FROM links FINAL WHERE url = 'https://example.com/patched'").await == 1
    })
    .await;
    assert!(in_clickhouse, "the links dimension holds {} links", env.ch_u64("SELECT count() FROM links FINAL").await);

    // Lose the index, then rebuild it from the topic.
    let mut redis = env.redis().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}link*", env.redis_prefix())).query_async(&mut redis).await.unwrap();
    assert!(keys.len() >= 4, "{keys:?}");
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
    let gone = api(reqwest::Method::GET, format!("{}/api/links/{}", env.edge_url(), codes[1])).send().await.unwrap();
    assert_eq!(gone.status(), 404);

    let (ok, out, err) = env.run(&["links", "rebuild"]);
    assert!(ok, "rebuild failed:\n{out}\n{err}");
    assert!(out.contains("4 events read"), "{out}");
    for (code, url) in [
        (&codes[0], "https://example.com/patched"),
        (&codes[1], "https://example.com/1"),
        (&codes[2], "https://example.com/2"),
    ] {
        let link: serde_json::Value = api(reqwest::Method::GET, format!("{}/api/links/{code}", env.edge_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(link["url"], url, "{link}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_that_arrives_twice_close_together_is_stored_once() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let env = TestEnv::new("dedup");
    env.prepare();
    let _processor = env.spawn_processor();
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap();
    let topic = format!("{}clicks", env.topic_prefix());
    let click = |id: u64| {
        format!(r#"{{"v":1,"id":{id},"ts":1700000000000,"link_id":77,"code":"d","method":"GET","ua":"{BROWSER}"}}"#)
    };
    // As an edge re-sending from its spool after a crash: event 2 again, in a later message.
    for (partition, ids) in [(0, [1u64, 2]), (1, [2, 3])] {
        let payload = format!("{}\n{}\n", click(ids[0]), click(ids[1]));
        producer
            .send(FutureRecord::to(&topic).key("77").payload(&payload).partition(partition), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let stored =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await >= 3 }).await;
    assert!(stored, "{} clicks stored", env.ch_u64("SELECT count() FROM clicks").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 3);
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 3);
    assert_eq!(env.redis_hget("clicks:{77}", "total").await, Some(3));
}

#[test]
fn a_missing_service_is_named_without_a_stack_trace() {
    let env = TestEnv::new("missing");
    let cases = [
        (vec!["migrate"], "RUNNEL_CLICKHOUSE_URL", "http://127.0.0.1:1", "ClickHouse at http://127.0.0.1:1"),
        (vec!["topics"], "RUNNEL_KAFKA_BROKERS", "127.0.0.1:1", "cannot reach Kafka at 127.0.0.1:1"),
        (vec!["edge"], "RUNNEL_REDIS_URL", "redis://127.0.0.1:1", "Redis at redis://127.0.0.1:1"),
        (vec!["process"], "RUNNEL_PIPELINES", "clicks,bogus", "unknown pipeline 'bogus'"),
    ];
    for (args, variable, value, expected) in cases {
        let output = env.command(&args).env(variable, value).env("RUNNEL_KAFKA_TIMEOUT_MS", "2000").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} with {variable}={value} should fail");
        assert!(stderr.contains(expected), "{args:?}: stderr should contain {expected:?}:\n{stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_goes_to_the_dead_letter_topic_and_the_stream_goes_on() {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let env = TestEnv::new("dlq");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://example.com/landing?x=1").await;
    follow(&env, &code, 10, BROWSER).await;

    // A message whose second line is not an event, between good clicks.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap();
    let clicks_topic = format!("{}clicks", env.topic_prefix());
    let payload = b"{\"v\":1,\"id\":7,\"ts\":1700000000000,\"link_id\":1,\"code\":\"x\",\"method\":\"GET\"}\n{\"not\": \"a click\"}\n";
    producer
        .send(FutureRecord::to(&clicks_topic).key("poison").payload(&payload[..]).partition(0), Duration::from_secs(10))
        .await
        .unwrap();
    follow(&env, &code, 10, BROWSER).await;

    // The good event of the poison message and all 20 redirects are stored.
    let stored =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 21 }).await;
    assert!(stored, "{} clicks stored, expected 21", env.ch_u64("SELECT count() FROM clicks").await);

    let message = first_dead_letter(&env);
    assert_eq!(message.key(), Some(&b"poison"[..]));
    assert_eq!(message.payload(), Some(&b"{\"not\": \"a click\"}"[..]), "only the bad line is a dead letter");
    let headers = message.headers().unwrap();
    let header = |name: &str| {
        headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("runnel.pipeline").as_deref(), Some("clicks"));
    assert_eq!(header("runnel.source.topic"), Some(clicks_topic));
    assert_eq!(header("runnel.source.partition").as_deref(), Some("0"));
    assert!(header("runnel.source.offset").is_some_and(|o| o.parse::<i64>().is_ok()));
    assert_eq!(header("runnel.source.line").as_deref(), Some("2"));
    assert!(header("runnel.reason").is_some_and(|r| r.contains("line 2")), "{:?}", header("runnel.reason"));
}

/// The first message of the dead-letter topic (waits up to 30 s).
fn first_dead_letter(env: &TestEnv) -> rdkafka::message::OwnedMessage {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let dlq_topic = format!("{}dlq", env.topic_prefix());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::kafka_brokers())
        .set("group.id", format!("{}-dlqcheck", env.id))
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment.add_partition_offset(&dlq_topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "no dead letter arrived");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            return message.detach();
        }
    }
}

/// By default the edge writes compact click batches (checked on the topic) and the processor
/// stores their clicks; a damaged batch goes to the dead-letter topic whole (source line 0) and
/// none of its clicks is stored, while the stream goes on. `runnel dump clicks` prints every
/// click as an NDJSON line and names the batch it cannot decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_click_batches_are_stored_and_a_damaged_one_is_a_dead_letter_whole() {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Headers, Message};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let env = TestEnv::new("compact");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://example.com/landing").await;
    let mut answered = follow(&env, &code, 10, BROWSER).await;

    // Two clicks in one batch, cut short in the second.
    let click = |id: u64| events::ClickEvent {
        v: 1,
        id,
        ts: 1_700_000_000_000,
        link_id: 1,
        code: "x".into(),
        method: "GET".into(),
        ua: "agent".into(),
        referrer: String::new(),
        lang: String::new(),
        ip: String::new(),
        country: String::new(),
        q: String::new(),
        utm: None,
    };
    let mut encoder = events::click_batch::Encoder::default();
    for event in [click(7), click(8)] {
        encoder.push(&event.as_click_ref());
    }
    let batch = encoder.take();
    let damaged = &batch[..batch.len() - 3];
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap();
    let clicks_topic = format!("{}clicks", env.topic_prefix());
    producer
        .send(FutureRecord::to(&clicks_topic).key("poison").payload(damaged).partition(0), Duration::from_secs(10))
        .await
        .unwrap();
    answered.extend(follow(&env, &code, 10, BROWSER).await);

    let stored =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 20 }).await;
    assert!(stored, "{} clicks stored, expected 20", env.ch_u64("SELECT count() FROM clicks").await);
    let ids: Vec<u64> =
        env.clickhouse().query("SELECT event_id FROM clicks ORDER BY event_id").fetch_all().await.unwrap();
    answered.sort_unstable();
    assert_eq!(ids, answered, "every answered click, none of the damaged batch");
    let agents: Vec<String> =
        env.clickhouse().query("SELECT DISTINCT user_agent FROM clicks").fetch_all().await.unwrap();
    assert_eq!(agents, [BROWSER], "the texts written once per batch are every click's");

    let messages = common::read_topic(&common::kafka_brokers(), &clicks_topic, 12, Duration::from_secs(2));
    let compact = messages.iter().filter(|m| m.payload().is_some_and(events::click_batch::is_compact)).count();
    assert!(compact >= 2, "the edge wrote compact batches ({compact} of {} messages)", messages.len());

    let message = first_dead_letter(&env);
    assert_eq!(message.payload(), Some(damaged), "the whole batch is the dead letter");
    let headers = message.headers().unwrap();
    let header = |name: &str| {
        headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("runnel.source.line").as_deref(), Some("0"));
    assert!(
        header("runnel.reason").is_some_and(|r| r.contains("compact click batch, event 2")),
        "{:?}",
        header("runnel.reason")
    );

    let (ok, stdout, stderr) = env.run(&["dump", "clicks"]);
    assert!(ok, "runnel dump clicks failed: {stderr}");
    let mut dumped: Vec<u64> = stdout
        .lines()
        .map(|line| {
            let event: events::ClickEvent = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!((event.code.as_str(), event.ua.as_str()), (code.as_str(), BROWSER), "{line}");
            event.id
        })
        .collect();
    dumped.sort_unstable();
    assert_eq!(dumped, answered, "one line per stored click");
    assert!(stderr.contains("partition 0") && stderr.contains("compact click batch, event 2"), "{stderr}");
    assert!(stderr.contains("1 of "), "{stderr}");
}

/// A MaxMind-format database placing 127.0.0.0/24 (the tests' clients, truncated) in Auckland.
fn geoip_database(env: &TestEnv) -> std::path::PathBuf {
    use maxminddb_writer::Database;
    use maxminddb_writer::paths::IpAddrWithMask;
    let mut db = Database::default();
    db.metadata.database_type = "GeoIP2-City".into();
    db.metadata.binary_format_major_version = 2;
    let auckland = db
        .insert_value(serde_json::json!({
            "country": {"iso_code": "NZ", "names": {"en": "New Zealand"}},
            "city": {"names": {"en": "Auckland"}}
        }))
        .unwrap();
    db.insert_node("127.0.0.0/24".parse::<IpAddrWithMask>().unwrap(), auckland);
    let path = env.logs.join("geo.mmdb");
    db.write_to(std::fs::File::create(&path).unwrap()).unwrap();
    path
}

#[derive(Debug, PartialEq, serde::Deserialize, clickhouse::Row)]
struct Enriched {
    method: String,
    country: String,
    city: String,
    browser: String,
    os: String,
    device: String,
    referrer_host: String,
    channel: String,
    utm_source: String,
    utm_medium: String,
    utm_campaign: String,
    ip: String,
    is_bot: u8,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_are_stored_enriched_and_counted_per_kind_of_visitor() {
    let mut env = TestEnv::new("enrich");
    env.set("RUNNEL_GEOIP_DB", geoip_database(&env).display().to_string());
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let link = common::create_link_with(
        &env,
        serde_json::json!({"url": "https://shop.example/p", "utm": {"campaign": "spring", "source": "link"}}),
    )
    .await;
    let (code, link_id) = (link["code"].as_str().unwrap(), link["link_id"].as_u64().unwrap());
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    let client = http();
    for _ in 0..2 {
        let response = client
            .get(format!("{}/{code}?utm_source=twitter&utm_medium=social", env.edge_url()))
            .header("user-agent", IPHONE)
            .header("referer", "https://t.co/abc")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 302);
    }
    let response = client
        .head(format!("{}/{code}", env.edge_url()))
        .header("user-agent", BROWSER)
        .header("referer", "https://www.google.com/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);

    assert!(
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 3 }).await
    );
    let rows =
        env.clickhouse().query("SELECT ?fields FROM clicks ORDER BY method").fetch_all::<Enriched>().await.unwrap();
    let human = Enriched {
        method: "GET".into(),
        country: "NZ".into(),
        city: "Auckland".into(),
        browser: "Safari".into(),
        os: "iPhone".into(),
        device: "mobile".into(),
        referrer_host: "t.co".into(),
        channel: "social".into(),
        utm_source: "twitter".into(),
        utm_medium: "social".into(),
        utm_campaign: "spring".into(),
        ip: String::new(),
        is_bot: 0,
    };
    assert_eq!(rows[0], human, "the request's utm_source wins over the link's; the link's campaign fills in");
    assert_eq!(rows[1], human);
    let head = &rows[2];
    assert_eq!((head.method.as_str(), head.is_bot, head.device.as_str()), ("HEAD", 1, "bot"));
    assert_eq!((head.referrer_host.as_str(), head.channel.as_str()), ("google.com", "search"));
    assert_eq!((head.utm_source.as_str(), head.utm_campaign.as_str()), ("link", "spring"), "the link's UTM");

    let key = format!("clicks:{{{link_id}}}");
    assert!(eventually(Duration::from_secs(30), || async { env.redis_hget(&key, "total").await == Some(3) }).await);
    assert_eq!((env.redis_hget(&key, "human").await, env.redis_hget(&key, "bot").await), (Some(2), Some(1)));
    let day =
        sinks::redis::day_of(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let mut redis = env.redis().await;
    let visitors: u64 = redis::cmd("PFCOUNT")
        .arg(format!("{}visitors:{{{link_id}}}:{day}", env.redis_prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(visitors, 1, "one human visitor, twice");
    let top: Option<u64> = redis::cmd("ZSCORE")
        .arg(format!("{}top:{{{day}}}", env.redis_prefix()))
        .arg(link_id)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(top, Some(2), "top links count human clicks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_share_the_work_and_one_leaving_mid_stream_loses_and_repeats_nothing() {
    let mut env = TestEnv::new("twoproc");
    env.set("RUNNEL_BATCH_MAX_ROWS", "50");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "100");
    env.prepare();
    let _edge = env.spawn_edge().await;
    // Links on several partitions (the edge partitions clicks by link).
    let mut links = Vec::new();
    for i in 0..8 {
        links.push(create_link(&env, &format!("https://example.com/{i}")).await);
    }
    // Dynamic membership: a processor stopped on purpose leaves the group at once. (Static
    // members stay until the session timeout, which tansu 0.6 never enforces.)
    env.set("RUNNEL_PROCESSOR_INSTANCE_ID", "none");
    let mut first = env.spawn_processor_named("a");
    let second = env.spawn_processor_named("b");
    // Both take part before one leaves.
    let assignments = |p: &common::Proc| {
        p.log_text().lines().filter(|l| l.contains("partitions assigned") && l.contains("\"clicks\"")).count()
    };
    let both =
        eventually(Duration::from_secs(60), || std::future::ready(assignments(&first) > 0 && assignments(&second) > 0))
            .await;
    assert!(both, "both processors get partitions:\n{}\n{}", first.log_text(), second.log_text());
    let traffic = {
        let urls: Vec<String> = links.iter().map(|(code, _)| format!("{}/{code}", env.edge_url())).collect();
        tokio::spawn(async move {
            let client = http();
            for i in 0..1600 {
                let response = client.get(&urls[i % urls.len()]).header("user-agent", BROWSER).send().await.unwrap();
                assert_eq!(response.status(), 302);
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    };
    let stored = |n: u64| {
        let env = &env;
        async move { env.ch_u64("SELECT count() FROM clicks").await >= n }
    };
    assert!(eventually(Duration::from_secs(60), || stored(600)).await, "the processors did not start storing");
    let status = first.terminate();
    assert!(status.success(), "processor a exited with {status}:\n{}", first.log_text());
    traffic.await.unwrap();

    assert!(
        eventually(Duration::from_secs(90), || stored(1600)).await,
        "only {} of 1600 clicks stored",
        env.ch_u64("SELECT count() FROM clicks").await
    );
    let mut redis_total = 0;
    for (_, link_id) in &links {
        let key = format!("clicks:{{{link_id}}}");
        eventually(Duration::from_secs(30), || async { env.redis_hget(&key, "total").await == Some(200) }).await;
        redis_total += env.redis_hget(&key, "total").await.unwrap_or(0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 1600, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 1600, "distinct event ids");
    assert_eq!(env.ch_u64("SELECT countMerge(clicks) FROM clicks_daily_by_link").await, 1600, "daily view");
    assert_eq!(redis_total, 1600, "redis counters");
    assert!(assignments(&second) >= 2, "processor b took over:\n{}", second.log_text());
}

/// A second processor joins while the first holds a batch it has not stored (its batches wait
/// 60 s): only the partitions that move are revoked (cooperative-sticky), and the first stores
/// and commits what it holds before it lets them go, so the clicks reach ClickHouse at the
/// rebalance instead of a batch age later, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_processor_takes_only_moved_partitions_and_the_batch_they_held_is_stored_first() {
    let mut env = TestEnv::new("joining");
    env.set("RUNNEL_BATCH_MAX_ROWS", "100000");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "60000");
    env.set("RUNNEL_PROCESSOR_INSTANCE_ID", "none");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let mut links = Vec::new();
    for i in 0..8 {
        links.push(create_link(&env, &format!("https://example.com/{i}")).await);
    }
    let (a_port, b_port) = (common::free_port(), common::free_port());
    let mut first = env.spawn_processor_with_metrics("a", a_port);
    let count = |port: u16, name: &'static str| async move { common::metric(&common::scrape(port).await, name) };
    const ASSIGNED: &str = "runnel_processor_partition_changes_total{pipeline=\"clicks\",change=\"assigned\"}";
    const REVOKED: &str = "runnel_processor_partition_changes_total{pipeline=\"clicks\",change=\"revoked\"}";
    const LOST: &str = "runnel_processor_partition_changes_total{pipeline=\"clicks\",change=\"lost\"}";
    const CONSUMED: &str = "runnel_processor_events_consumed_total{pipeline=\"clicks\"}";
    assert!(
        eventually(Duration::from_secs(60), || async { count(a_port, ASSIGNED).await == 12 }).await,
        "processor a gets the 12 partitions:\n{}",
        first.log_text()
    );
    for (code, _) in &links {
        follow(&env, code, 50, BROWSER).await;
    }
    assert!(
        eventually(Duration::from_secs(30), || async { count(a_port, CONSUMED).await == 400 }).await,
        "processor a takes the 400 clicks:\n{}",
        first.log_text()
    );
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 0, "the batch is held (60 s max age)");

    let joined = std::time::Instant::now();
    let mut second = env.spawn_processor_with_metrics("b", b_port);
    assert!(
        eventually(Duration::from_secs(40), || async { env.ch_u64("SELECT count() FROM clicks").await == 400 }).await,
        "the held batch is stored at the rebalance ({} of 400 after {:?}):\n{}\n{}",
        env.ch_u64("SELECT count() FROM clicks").await,
        joined.elapsed(),
        first.log_text(),
        second.log_text()
    );
    assert!(joined.elapsed() < Duration::from_secs(50), "stored before the batch's age ran out");
    assert!(
        eventually(Duration::from_secs(30), || async { count(b_port, ASSIGNED).await > 0 }).await,
        "processor b gets partitions:\n{}",
        second.log_text()
    );
    let (b_assigned, a_revoked, a_assigned) =
        (count(b_port, ASSIGNED).await, count(a_port, REVOKED).await, count(a_port, ASSIGNED).await);
    assert!(b_assigned < 12, "the partitions are shared: b has {b_assigned}");
    assert_eq!(a_revoked, b_assigned, "only the partitions that moved were revoked from a");
    assert_eq!(a_assigned, 12, "a was not given back partitions it kept (an eager rebalance would)");
    assert_eq!(count(a_port, LOST).await, 0);

    // Both store what follows; every click once.
    for (code, _) in &links {
        follow(&env, code, 10, BROWSER).await;
    }
    // Taken by one or the other (their batches wait 60 s; stopping drains them).
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(a_port, CONSUMED).await + count(b_port, CONSUMED).await >= 480
        })
        .await,
        "the 80 later clicks are taken"
    );
    assert!(first.terminate().success(), "{}", first.log_text());
    assert!(second.terminate().success(), "{}", second.log_text());
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 480, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 480, "distinct event ids");
    let mut redis_total = 0;
    for (_, link_id) in &links {
        redis_total += env.redis_hget(&format!("clicks:{{{link_id}}}"), "total").await.unwrap_or(0);
    }
    assert_eq!(redis_total, 480, "redis counters");
}
