//! Outages against real servers of the test's own: Redis stopped and started, ClickHouse
//! stopped for 30 s and started; a report view that fails while rows are pushed; views that
//! make every INSERT slow; a broker that stops answering for a while.
//! Afterwards raw rows, the daily view and the Redis counter each hold every click exactly once.

mod common;

use std::time::Duration;

use common::{BROWSER, PrivateBroker, PrivateClickhouse, PrivateRedis, TestEnv, create_link, eventually, follow};

async fn assert_exactly(env: &TestEnv, link_id: u64, clicks: u64) {
    let key = format!("clicks:{{{link_id}}}");
    let complete = eventually(Duration::from_secs(90), || async {
        env.ch_u64("SELECT count() FROM clicks").await >= clicks
            && env.redis_hget(&key, "total").await.unwrap_or(0) >= clicks
    })
    .await;
    assert!(
        complete,
        "ClickHouse has {}, Redis {:?}, expected {clicks}",
        env.ch_u64("SELECT count() FROM clicks").await,
        env.redis_hget(&key, "total").await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, clicks, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, clicks, "distinct event ids");
    assert_eq!(env.ch_u64("SELECT countMerge(clicks) FROM clicks_daily_by_link").await, clicks, "daily view");
    assert_eq!(env.redis_hget(&key, "total").await, Some(clicks), "redis counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_and_started_every_click_is_counted_once() {
    let mut env = TestEnv::new("redisdown");
    let mut redis = PrivateRedis::start(&env);
    env.set("RUNNEL_REDIS_URL", redis.url.clone());
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "200");
    env.set("RUNNEL_RETRY_MAX_BACKOFF_MS", "1000");
    // A flush lets go of its batch after 2 s of failing and reads it again.
    env.set("RUNNEL_SINK_GIVE_UP_MS", "2000");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let mut processor = env.spawn_processor();
    let (code, link_id) = create_link(&env, "https://example.com/r").await;

    follow(&env, &code, 100, BROWSER).await;
    let key = format!("clicks:{{{link_id}}}");
    assert!(eventually(Duration::from_secs(60), || async { env.redis_hget(&key, "total").await == Some(100) }).await);

    redis.stop();
    // The edge keeps redirecting from its cache while the link index is away.
    follow(&env, &code, 200, BROWSER).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        processor.child.try_wait().unwrap().is_none(),
        "the processor waits for Redis instead of exiting:\n{}",
        processor.log_text()
    );
    // ClickHouse, a sink of its own, kept up; the batch Redis refused was let go and read again.
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 300);
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", env.metrics_port)).await.unwrap();
    let text = metrics.text().await.unwrap();
    let read_again = common::metric(&text, "runnel_processor_batches_read_again_total{pipeline=\"clicks\"}");
    assert!(read_again >= 1, "batches read again: {read_again}\n{text}");
    redis.restart();
    assert_exactly(&env, link_id, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clickhouse_stopped_for_30_s_consumption_pauses_and_every_click_is_stored_once() {
    let mut env = TestEnv::new("chdown");
    let mut clickhouse = PrivateClickhouse::start(&env);
    env.set("RUNNEL_CLICKHOUSE_URL", clickhouse.url.clone());
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "200");
    env.set("RUNNEL_RETRY_MAX_BACKOFF_MS", "2000");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let mut processor = env.spawn_processor();
    let (code, link_id) = create_link(&env, "https://example.com/c").await;

    follow(&env, &code, 100, BROWSER).await;
    assert!(
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 100 }).await
    );
    let key = format!("clicks:{{{link_id}}}");
    assert!(eventually(Duration::from_secs(30), || async { env.redis_hget(&key, "total").await == Some(100) }).await);

    clickhouse.stop();
    // Redis, a sink of its own, may store the batch that ClickHouse is refusing; after that the
    // processor takes nothing more until ClickHouse is back.
    follow(&env, &code, 100, BROWSER).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = env.redis_hget(&key, "total").await;
    assert!(matches!(held, Some(100..=200)), "{held:?}");
    const PAUSED: &str = "runnel_processor_partitions_paused{pipeline=\"clicks\"}";
    let paused = common::metric(&common::scrape(env.metrics_port).await, PAUSED);
    assert_eq!(paused, 12, "the clicks partitions are paused while the flush retries");
    follow(&env, &code, 100, BROWSER).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(env.redis_hget(&key, "total").await, held, "consumption pauses while ClickHouse is down");
    assert!(
        processor.child.try_wait().unwrap().is_none(),
        "the processor waits for ClickHouse:\n{}",
        processor.log_text()
    );
    clickhouse.restart();
    assert_exactly(&env, link_id, 300).await;
    assert_eq!(common::metric(&common::scrape(env.metrics_port).await, PAUSED), 0, "resumed once stored");
}

/// A broker that stops answering (frozen, as a coordinator that stopped responding) takes the
/// processor's consumers out of their group: librdkafka's session times out and the rejoin
/// hangs. Meanwhile the lag gauges keep their last values, so the processor shows the stall as
/// the time its consumer has been out of the group (what the alert RunnelProcessorOutOfGroup
/// reads). tansu 0.6 keeps the timed-out member as the group's leader after it answers again,
/// so the rejoin never completes until the broker restarts (docs/reliability.md); after that
/// the consumer joins, and nothing is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_out_of_its_group_shows_how_long_and_every_click_is_stored_once() {
    let mut env = TestEnv::new("outofgroup");
    let mut broker = PrivateBroker::start(&env);
    env.set("RUNNEL_KAFKA_BROKERS", broker.brokers.clone());
    env.set("RUNNEL_KAFKA_IDEMPOTENCE", "false");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "200");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let processor = env.spawn_processor();
    let (code, link_id) = create_link(&env, "https://example.com/out-of-group").await;

    follow(&env, &code, 100, BROWSER).await;
    assert!(
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 100 }).await,
        "{}",
        processor.log_text()
    );
    const OUT: &str = "runnel_processor_out_of_group_seconds{pipeline=\"clicks\"}";
    let out = || async { common::metric(&common::scrape(env.metrics_port).await, OUT) };
    assert_eq!(out().await, 0, "in its group");

    broker.freeze();
    // Redirects go on; their clicks wait in the edge's producer.
    follow(&env, &code, 100, BROWSER).await;
    let shown = eventually(Duration::from_secs(60), || async { out().await >= 10 }).await;
    let text = common::scrape(env.metrics_port).await;
    broker.thaw();
    assert!(shown, "10 s out of the group shown within a minute of the freeze:\n{text}\n{}", processor.log_text());
    broker.stop();
    broker.restart();
    // tansu 0.6 keeps the timed-out member as the group's leader until it restarts; once in
    // several CI runs one restart did not clear it (docs/reliability.md). The operator's remedy
    // then is a second restart, and so is the test's.
    if !eventually(Duration::from_secs(45), || async { out().await == 0 }).await {
        eprintln!("still out of the group 45 s after the broker restarted: restarting it again");
        broker.stop();
        broker.restart();
    }

    follow(&env, &code, 100, BROWSER).await;
    assert_exactly(&env, link_id, 300).await;
    assert!(eventually(Duration::from_secs(30), || async { out().await == 0 }).await, "back in its group");
}

/// A report view that fails while rows are pushed (here: one that always throws, then is
/// dropped). The raw rows and their fence are written before every other view (0008), so the
/// processor's retry finds them stored: the raw table never holds a click twice, and clicks
/// after the repair flow as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_view_neither_duplicates_raw_rows_nor_stops_the_pipeline() {
    let mut env = TestEnv::new("badview");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "200");
    env.set("RUNNEL_RETRY_MAX_BACKOFF_MS", "500");
    env.prepare();
    let db = env.database();
    let ch = env.clickhouse();
    // Sorted after `_clicks_offsets_mv` and before most report views.
    add_click_view(&env, "clicks_broken_mv", "broken_sink", "event_id + throwIf(event_id > 0)").await;
    let _edge = env.spawn_edge().await;
    let processor = env.spawn_processor();
    let (code, link_id) = create_link(&env, "https://shop.example/badview").await;
    follow(&env, &code, 40, BROWSER).await;

    let metrics = format!("http://127.0.0.1:{}/metrics", env.metrics_port);
    let retried = eventually(Duration::from_secs(60), || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        common::metric(&text, "runnel_processor_retries_total{pipeline=\"clicks\",sink=\"clickhouse\"}") > 0
    })
    .await;
    assert!(retried, "the failing view made the insert fail:\n{}", processor.log_text());
    // Retries keep coming while the view fails; none of them may store a click again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 40, "raw rows while the view fails");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 40);

    ch.query(&format!("DROP TABLE {db}.clicks_broken_mv")).execute().await.unwrap();
    follow(&env, &code, 10, BROWSER).await;
    let key = format!("clicks:{{{link_id}}}");
    let done = eventually(Duration::from_secs(60), || async {
        env.ch_u64("SELECT count() FROM clicks").await >= 50 && env.redis_hget(&key, "total").await.unwrap_or(0) >= 50
    })
    .await;
    assert!(done, "clicks after the repair: {}", env.ch_u64("SELECT count() FROM clicks").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 50, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 50, "distinct event ids");
    assert_eq!(env.redis_hget(&key, "total").await, Some(50), "redis counter");
}

/// While ClickHouse takes its time over a batch (two views that sleep 3 s per block, written
/// one after another), the processor reads the next batch: every click sent meanwhile is
/// consumed before the first INSERT returns. Afterwards each click is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_read_while_clickhouse_stores_one() {
    let mut env = TestEnv::new("readahead");
    env.set("RUNNEL_BATCH_MAX_AGE_MS", "200");
    env.set("RUNNEL_CLICKHOUSE_PARALLEL_VIEWS", "false");
    env.prepare();
    for table in ["slow_a", "slow_b"] {
        add_click_view(&env, &format!("{table}_mv"), table, "event_id + sleep(3)").await;
    }
    let _edge = env.spawn_edge().await;
    let processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://shop.example/readahead").await;
    const CONSUMED: &str = "runnel_processor_events_consumed_total{pipeline=\"clicks\"}";
    const STORED: &str = "runnel_processor_rows_stored_total{pipeline=\"clicks\",sink=\"clickhouse\"}";
    let counts = || async {
        let text = common::scrape(env.metrics_port).await;
        (common::metric(&text, CONSUMED), common::metric(&text, STORED))
    };

    follow(&env, &code, 20, BROWSER).await;
    assert!(eventually(Duration::from_secs(60), || async { counts().await.0 == 20 }).await, "{:?}", counts().await);
    // The first INSERT now takes at least 6 s; the next 20 clicks are read meanwhile.
    follow(&env, &code, 20, BROWSER).await;
    let read_ahead = eventually(Duration::from_secs(4), || async { counts().await.0 == 40 }).await;
    let (consumed, stored) = counts().await;
    assert!(read_ahead && stored == 0, "consumed {consumed}, stored {stored}:\n{}", processor.log_text());

    let done =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM slow_b").await >= 40 }).await;
    assert!(done, "stored: {}", env.ch_u64("SELECT count() FROM slow_b").await);
    assert_eq!(env.ch_u64("SELECT count() FROM clicks").await, 40, "raw rows");
    assert_eq!(env.ch_u64("SELECT uniqExact(event_id) FROM clicks").await, 40, "distinct event ids");
}

/// Adds a view `view` of `clicks` that writes `expression` (of its columns) as `event_id` into a
/// table `table` of its own.
async fn add_click_view(env: &TestEnv, view: &str, table: &str, expression: &str) {
    let (db, ch) = (env.database(), env.clickhouse());
    ch.query(&format!("CREATE TABLE {db}.{table} (event_id UInt64) ENGINE = MergeTree ORDER BY event_id"))
        .execute()
        .await
        .unwrap();
    ch.query(&format!(
        "CREATE MATERIALIZED VIEW {db}.{view} TO {db}.{table} AS SELECT {expression} AS event_id FROM {db}.clicks"
    ))
    .execute()
    .await
    .unwrap();
}

/// What a retry does on a current ClickHouse engine (chdb-core, in process), where views are
/// not written in name order: a view throws, the raw rows were stored anyway, the INSERT is
/// sent again. With the processor's deduplication settings (and migration 0009's logs) every
/// table holds the ten rows once; without them the raw table holds them twice — what the
/// token is for.
#[test]
fn on_a_current_engine_a_retried_insert_with_its_token_is_stored_once_in_every_table() {
    let env = TestEnv::new("tokens");
    let dir = common::chdb_dir(&env, "tokens");
    let retry = |settings: serde_json::Value| {
        let path = dir.join("settings.json");
        std::fs::write(&path, settings.to_string()).unwrap();
        let output = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chdb_retry.py"))
            .arg(dir.join("schema.json"))
            .arg(&path)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(output.status.success(), "chdb: {}", String::from_utf8_lossy(&output.stderr));
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        result["counts"].clone()
    };
    let settings: Vec<(&str, String)> =
        sinks::clickhouse::dedup_settings("runnel:test.clicks:0/10-19/10").into_iter().collect();
    let with_token = retry(serde_json::json!(settings));
    for (table, count) in with_token.as_object().unwrap() {
        let expected = if table == "fence" { 19 } else { 10 };
        assert_eq!(count.as_u64(), Some(expected), "{table} after the retry with a token: {with_token}");
    }
    let without = retry(serde_json::json!([]));
    assert_eq!(without["raw"].as_u64(), Some(20), "without a token the retry stores the raw rows again: {without}");
}
