//! The sinks against the real local stack (`scripts/stack up`): migrations and offset fences in
//! ClickHouse, fenced counters and the link index in Redis. Each test uses its own database or
//! key prefix.

use rand::Rng;
use runnel_sinks as sinks;
use std::time::Duration;

use sinks::clickhouse::{
    ClickRow, ClickhouseConfig, ClickhouseWriter, DEDUP_TOKENS_SINCE, Migration, Migrator, ServerVersion,
    dedup_settings,
};
use sinks::redis::{ApplyOutcome, Counters, LinkIndex, RedisConfig, day_of};

fn unique(name: &str) -> String {
    format!("{name}_{:08x}", rand::rng().random::<u32>())
}

fn clickhouse(database: &str) -> ClickhouseConfig {
    ClickhouseConfig {
        url: std::env::var("RUNNEL_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        database: database.into(),
        user: "default".into(),
        password: String::new(),
        cluster: None,
        pool: Default::default(),
    }
}

fn redis(prefix: &str) -> RedisConfig {
    RedisConfig {
        url: std::env::var("RUNNEL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        prefix: prefix.into(),
        timeout_ms: 2000,
    }
}

/// Drops the database when the test ends, pass or fail.
struct Database(ClickhouseConfig);

impl Drop for Database {
    fn drop(&mut self) {
        let config = self.0.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let client = clickhouse::Client::default().with_url(&config.url).with_validation(false);
                let _ = client.query(&format!("DROP DATABASE IF EXISTS {}", config.database)).execute().await;
            });
        })
        .join()
        .ok();
    }
}

async fn count(config: &ClickhouseConfig, sql: &str) -> u64 {
    config.client().query(sql).fetch_one::<u64>().await.unwrap()
}

#[tokio::test]
async fn migrations_apply_once_and_an_edited_applied_file_is_refused() {
    let config = clickhouse(&unique("runnel_migrate"));
    let _db = Database(config.clone());
    let v1 = Migration::parse("0001_a.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;").unwrap();
    let v2 =
        Migration::parse("0002_b.sql", "CREATE TABLE b (y UInt8) ENGINE = Memory;\nINSERT INTO b VALUES (7);").unwrap();

    let applied = Migrator::with_migrations(config.clone(), vec![v1.clone(), v2.clone()]).apply().await.unwrap();
    assert_eq!(applied.applied.len(), 2);
    assert_eq!(count(&config, "SELECT toUInt64(sum(y)) FROM b").await, 7);

    // Again: nothing to do, and the insert of 0002 did not run twice.
    let again = Migrator::with_migrations(config.clone(), vec![v1.clone(), v2.clone()]).apply().await.unwrap();
    assert!(again.applied.is_empty() && again.caught_up.is_empty());
    assert_eq!(count(&config, "SELECT count() FROM b").await, 1);

    let edited = Migration::parse("0002_b.sql", "CREATE TABLE b (y UInt16) ENGINE = Memory;").unwrap();
    let error = Migrator::with_migrations(config.clone(), vec![v1, edited]).apply().await.unwrap_err().to_string();
    assert!(error.contains("0002_b.sql") && error.contains("edited after it was applied"), "{error}");
}

#[tokio::test]
async fn two_migrators_at_once_apply_each_migration_once() {
    let config = clickhouse(&unique("runnel_migrate"));
    let _db = Database(config.clone());
    // Slow enough that the two overlap: each statement is a round trip, the insert is what
    // would show a second run.
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&format!("CREATE TABLE IF NOT EXISTS t{i} (x UInt8) ENGINE = Memory;\n"));
    }
    text.push_str("CREATE TABLE IF NOT EXISTS runs (x UInt8) ENGINE = Memory;\nINSERT INTO runs VALUES (1);\n");
    let migration = Migration::parse("0001_slow.sql", &text).unwrap();
    let a = Migrator::with_migrations(config.clone(), vec![migration.clone()]);
    let b = Migrator::with_migrations(config.clone(), vec![migration.clone()]);
    let (ra, rb) = tokio::join!(a.apply(), b.apply());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.applied.len() + rb.applied.len(), 1, "exactly one of them applies it");
    assert_eq!(count(&config, "SELECT count() FROM runs").await, 1);
    assert_eq!(count(&config, "SELECT count() FROM schema_migrations").await, 1);
    assert_eq!(
        count(
            &config,
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations_lock'"
        )
        .await,
        0,
        "the lock is released"
    );
}

#[tokio::test]
async fn a_lock_left_behind_is_reported_and_can_be_released() {
    let config = clickhouse(&unique("runnel_migrate"));
    let _db = Database(config.clone());
    let migration = Migration::parse("0001_a.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;").unwrap();
    let migrator = Migrator::with_migrations(config.clone(), vec![migration]).lock_wait(Duration::from_secs(1));
    migrator.plan().await.unwrap(); // creates the database
    config
        .client()
        .query("CREATE TABLE schema_migrations_lock (owner String, since DateTime DEFAULT now()) ENGINE = TinyLog")
        .execute()
        .await
        .unwrap();
    config
        .client()
        .query("INSERT INTO schema_migrations_lock (owner) VALUES ('crashed-host pid 7')")
        .execute()
        .await
        .unwrap();
    let error = migrator.apply().await.unwrap_err().to_string();
    assert!(error.contains("crashed-host pid 7") && error.contains("--unlock"), "{error}");
    assert_eq!(migrator.plan().await.unwrap().pending.len(), 1, "nothing applied while locked");
    let holder = migrator.unlock().await.unwrap().expect("a lock was there");
    assert!(holder.contains("crashed-host"), "{holder}");
    assert_eq!(migrator.apply().await.unwrap().applied.len(), 1);
    assert_eq!(migrator.unlock().await.unwrap(), None);
}

#[tokio::test]
async fn guarded_statements_wait_for_a_server_that_runs_them() {
    let config = clickhouse(&unique("runnel_migrate"));
    let _db = Database(config.clone());
    let real = Migrator::with_migrations(config.clone(), vec![]).server_version().await.unwrap();
    let text = format!(
        "CREATE TABLE a (x UInt8) ENGINE = Memory;\n-- min-version: {real}\nCREATE TABLE newer (y UInt8) ENGINE = Memory;\n-- min-version: 999.0\nCREATE TABLE future (z UInt8) ENGINE = Memory;\n"
    );
    let migration = Migration::parse("0001_guarded.sql", &text).unwrap();
    let tables =
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name IN ('a', 'newer', 'future')";

    // An older server: only the unguarded statement runs; the others are recorded as skipped.
    let old =
        Migrator::with_migrations(config.clone(), vec![migration.clone()]).as_if_server(ServerVersion(real.0 - 1, 0));
    let report = old.apply().await.unwrap();
    assert_eq!(report.applied.len(), 1);
    assert_eq!(report.skipped.iter().map(|d| d.index).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(count(&config, tables).await, 1);

    // The server "upgraded" (the real one is newer than the pretend one): the statement it now
    // runs is applied once; the one for a future server stays skipped.
    let upgraded = Migrator::with_migrations(config.clone(), vec![migration.clone()]);
    let plan = upgraded.plan().await.unwrap();
    assert_eq!(plan.catch_up.iter().map(|d| d.index).collect::<Vec<_>>(), vec![1]);
    let report = upgraded.apply().await.unwrap();
    assert_eq!(report.caught_up.len(), 1);
    assert!(report.applied.is_empty());
    assert_eq!(count(&config, tables).await, 2);
    let again = upgraded.apply().await.unwrap();
    assert!(again.caught_up.is_empty() && again.applied.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_failing_statement_names_its_file_and_records_nothing() {
    let config = clickhouse(&unique("runnel_migrate"));
    let _db = Database(config.clone());
    let bad = Migration::parse("0001_bad.sql", "CREATE TABLE c (x NoSuchType) ENGINE = Memory;").unwrap();
    let error = Migrator::with_migrations(config.clone(), vec![bad.clone()]).apply().await.unwrap_err().to_string();
    assert!(error.contains("0001_bad.sql"), "{error}");
    let plan = Migrator::with_migrations(config.clone(), vec![bad]).plan().await.unwrap();
    assert_eq!(plan.pending.len(), 1, "a failed migration stays pending");
}

/// Reports' queries share open connections: through a proxy that counts the connections made
/// to ClickHouse, five pooled queries in turn use one; five of `client()` use five.
#[tokio::test]
async fn pooled_clients_reuse_one_connection_for_query_after_query() {
    let upstream = std::env::var("RUNNEL_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let proxy = tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    let config = ClickhouseConfig { url: format!("http://127.0.0.1:{port}"), ..clickhouse("default") };
    // Read to the end, as reports read their answers.
    let select = async |client: clickhouse::Client| {
        client.query("SELECT 1").fetch_bytes("TabSeparated").unwrap().collect().await.unwrap()
    };
    for _ in 0..5 {
        assert_eq!(&select(config.pooled_client()).await[..], b"1\n");
    }
    let pooled = accepted.swap(0, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(&select(config.client()).await[..], b"1\n");
    }
    let own = accepted.load(std::sync::atomic::Ordering::SeqCst);
    proxy.abort();
    assert_eq!((pooled, own), (1, 5), "connections opened by pooled clients, then by clients of their own");
}

/// `n` order events of `status` from order id `first` at hour `hour` of 2026-11 (UTC),
/// alternately one line of p1 in EUR and two lines (p1 and p2) in USD.
fn orders_sql(first: u64, n: u64, hour: u64, status: &str) -> String {
    format!(
        "INSERT INTO orders (event_id, ts, order_id, status, currency, item_product_id, item_sku, item_quantity, \
         item_unit_price) SELECT toString({first} + number), toDateTime(1793491200 + {hour} * 3600 + number), \
         toString({first} + number), '{status}', if(number % 2 = 0, 'EUR', 'USD'), \
         if(number % 2 = 0, ['p1'], ['p1', 'p2']), if(number % 2 = 0, ['SKU-1'], ['SKU-1', 'SKU-2']), \
         if(number % 2 = 0, [3], [1, 2]), if(number % 2 = 0, [250], [700, 125]) FROM numbers({n})"
    )
}

/// 0015 keys the product rollups: a database upgraded to it fills the keyed tables and the
/// names from the rollups it had, and the views keep them equal to those rollups afterwards.
#[tokio::test]
async fn product_keys_fill_from_the_rollups_before_them_and_follow_new_orders() {
    let config = clickhouse(&unique("runnel_product_keys"));
    let _db = Database(config.clone());
    let all = Migration::embedded().unwrap();
    let before: Vec<Migration> = all.iter().filter(|m| m.version < 15).cloned().collect();
    assert!(before.len() < all.len(), "0015 is among the embedded migrations");
    Migrator::with_migrations(config.clone(), before).apply().await.unwrap();
    let ch = config.client();
    ch.query(&orders_sql(0, 40, 3, "paid")).execute().await.unwrap();
    ch.query(&orders_sql(100, 10, 30, "created")).execute().await.unwrap();
    Migrator::new(config.clone()).unwrap().apply().await.unwrap();
    assert_eq!(count(&config, "SELECT count() FROM product_key_sales_daily").await, 3, "backfilled");
    // Days later, in another week: rows the views write.
    ch.query(&orders_sql(200, 7, 24 * 9 + 5, "paid")).execute().await.unwrap();
    ch.query(&orders_sql(300, 5, 24 * 9 + 6, "refunded")).execute().await.unwrap();

    for (table, time) in [("hourly", "hour"), ("daily", "day"), ("weekly", "week"), ("monthly", "month")] {
        let by_names = format!(
            "SELECT {time}, product_id, sku, currency, sum(units), sum(revenue) FROM product_sales_{table} \
             GROUP BY {time}, product_id, sku, currency ORDER BY {time}, product_id, sku, currency"
        );
        let by_keys = format!(
            "SELECT {time}, product_id, sku, currency, units, revenue FROM (\
             SELECT {time}, product_key, sum(units) AS units, sum(revenue) AS revenue FROM product_key_sales_{table} \
             GROUP BY {time}, product_key) ANY LEFT JOIN (\
             SELECT product_key, any(product_id) AS product_id, any(sku) AS sku, any(currency) AS currency \
             FROM product_keys GROUP BY product_key) USING product_key \
             ORDER BY {time}, product_id, sku, currency"
        );
        let text = async |sql: &str| {
            String::from_utf8(ch.query(sql).fetch_bytes("TSV").unwrap().collect().await.unwrap().to_vec()).unwrap()
        };
        let want = text(&by_names).await;
        assert_eq!(text(&by_keys).await, want, "product_key_sales_{table}");
        let periods = if table == "hourly" || table == "daily" || table == "weekly" { 2 } else { 1 };
        assert_eq!(want.lines().count(), 3 * periods, "product_sales_{table}: {want}");
    }
    let p1_eur = "SELECT toUInt64(sum(revenue)) FROM product_key_sales_monthly \
                  WHERE product_key = cityHash64('p1', 'SKU-1', 'EUR')";
    assert_eq!(count(&config, p1_eur).await, 20 * 750 + 4 * 750);
    assert_eq!(count(&config, "SELECT uniqExact(product_key) FROM product_keys").await, 3);
}

fn row(partition: i32, offset: i64) -> ClickRow {
    ClickRow {
        event_id: ((partition as u64) << 32) | offset as u64,
        ts: 1_700_000_000,
        link_id: 42,
        code: "abc".into(),
        method: "GET".into(),
        user_agent: "ua".into(),
        referrer: String::new(),
        accept_language: String::new(),
        ip: "192.0.2.0".into(),
        country: "DE".into(),
        visitor_id: offset as u64 % 3,
        is_bot: 0,
        kafka_partition: partition,
        kafka_offset: offset,
        ..ClickRow::default()
    }
}

#[tokio::test]
async fn the_clickhouse_fence_follows_every_insert_and_the_daily_view_fills() {
    let config = clickhouse(&unique("runnel_fence"));
    let _db = Database(config.clone());
    Migrator::new(config.clone()).unwrap().apply().await.unwrap();
    let writer = ClickhouseWriter::new(config.clone());
    assert!(writer.fences("clicks").await.unwrap().is_empty());

    let first: Vec<ClickRow> = (0..10).map(|o| row(0, o)).chain((0..5).map(|o| row(3, o))).collect();
    writer.insert("clicks", Some("first"), &first).await.unwrap();
    let second: Vec<ClickRow> = (10..12).map(|o| row(0, o)).collect();
    writer.insert("clicks", Some("second"), &second).await.unwrap();

    let fences = writer.fences("clicks").await.unwrap();
    assert_eq!(fences.get(&0), Some(&11));
    assert_eq!(fences.get(&3), Some(&4));
    assert_eq!(fences.len(), 2);
    assert_eq!(count(&config, "SELECT countMerge(clicks) FROM clicks_daily_by_link WHERE link_id = 42").await, 17);
    assert_eq!(
        count(&config, "SELECT toUInt64(uniqMerge(visitors)) FROM clicks_daily_by_link WHERE link_id = 42").await,
        3
    );
}

/// The writer sends deduplication tokens only to servers that take them. 18.16 refuses the
/// settings, which shows that a writer made for 24.8 really sends them.
#[tokio::test]
async fn deduplication_tokens_go_only_to_servers_that_take_them() {
    let config = clickhouse(&unique("runnel_tokens"));
    let _db = Database(config.clone());
    Migrator::new(config.clone()).unwrap().apply().await.unwrap();
    let version = ServerVersion::parse(&config.server_version().await.unwrap()).unwrap();
    let rows = [row(0, 1)];
    let writer = ClickhouseWriter::for_server(config.clone(), version);
    assert_eq!(writer.sends_dedup_tokens(), version >= DEDUP_TOKENS_SINCE);
    writer.insert("clicks", Some("runnel:t:0/1-1/1"), &rows).await.unwrap();
    if version < DEDUP_TOKENS_SINCE {
        let current = ClickhouseWriter::for_server(config.clone(), DEDUP_TOKENS_SINCE);
        let error = current.insert("clicks", Some("runnel:t:0/1-1/1"), &rows).await.unwrap_err().to_string();
        // The server names whichever of the settings it checks first.
        let named = dedup_settings("x").iter().any(|(name, _)| error.contains(name));
        assert!(error.contains("Unknown setting") && named, "{error}");
    }
    assert_eq!(count(&config, "SELECT count() FROM clicks").await, 1);
}

/// A writer with parallel views has the server write a table's views at once: two views that
/// each take a second per block are written in about one second, one after another in two.
#[tokio::test]
async fn parallel_views_write_a_tables_views_at_once() {
    let config = clickhouse(&unique("runnel_parallel_views"));
    let _db = Database(config.clone());
    let server = clickhouse::Client::default().with_url(&config.url).with_validation(false);
    server.query(&format!("CREATE DATABASE {}", config.database)).execute().await.unwrap();
    let client = config.client();
    client.query("CREATE TABLE source (x UInt64) ENGINE = MergeTree ORDER BY x").execute().await.unwrap();
    for view in ["a", "b"] {
        client
            .query(&format!("CREATE TABLE {view}_rows (x UInt64) ENGINE = MergeTree ORDER BY x"))
            .execute()
            .await
            .unwrap();
        // `sleep` waits once per block: one second per INSERT here.
        client
            .query(&format!(
                "CREATE MATERIALIZED VIEW {view}_mv TO {view}_rows AS SELECT x + sleep(1) AS x FROM source"
            ))
            .execute()
            .await
            .unwrap();
    }
    let row = 7u64.to_le_bytes();
    let mut took = Vec::new();
    for parallel in [true, false] {
        let writer = ClickhouseWriter::new(config.clone()).with_parallel_views(parallel);
        let started = std::time::Instant::now();
        writer.insert_row_binary("source", &["x"], None, &[&row]).await.unwrap();
        took.push(started.elapsed());
    }
    assert!(took[0] < Duration::from_millis(1800), "parallel views took {:?}", took[0]);
    assert!(took[1] >= Duration::from_secs(2), "views one after another took {:?}", took[1]);
    for view in ["a", "b"] {
        assert_eq!(count(&config, &format!("SELECT count() FROM {view}_rows WHERE x = 7")).await, 2);
    }
}

/// Rows encoded by hand (`ClickRowRef::write_row_binary`, what the processor sends) are stored
/// exactly as the same rows inserted through the `clickhouse` crate's own encoding: every
/// column, long and multibyte text, and a batch over several body chunks. Tokens go with them.
#[tokio::test]
async fn hand_encoded_rows_are_stored_as_the_crates_own_encoding_stores_them() {
    let config = clickhouse(&unique("runnel_rowbinary"));
    let _db = Database(config.clone());
    Migrator::new(config.clone()).unwrap().apply().await.unwrap();
    let version = ServerVersion::parse(&config.server_version().await.unwrap()).unwrap();
    let writer = ClickhouseWriter::for_server(config.clone(), version);
    let rows: Vec<ClickRow> = (0..1_500)
        .map(|o| ClickRow {
            user_agent: format!("Mozilla/5.0 ({o}) {}", "é日".repeat(o as usize % 90)),
            referrer: "https://news.example/\t\"quoted\"".into(),
            utm_content: "x".repeat(o as usize % 300),
            city: "Zürich".into(),
            visitor_id: u64::MAX - o as u64,
            is_bot: (o % 2) as u8,
            ..row(0, o)
        })
        .collect();
    writer.insert("clicks", Some("runnel:crate"), &rows).await.unwrap();
    let moved: Vec<ClickRow> = rows.iter().map(|r| ClickRow { kafka_partition: 1, ..r.clone() }).collect();
    let encoded: Vec<Vec<u8>> = moved
        .iter()
        .map(|r| {
            let mut bytes = Vec::new();
            r.as_ref().write_row_binary(&mut bytes);
            bytes
        })
        .collect();
    assert!(encoded.iter().map(Vec::len).sum::<usize>() > 2 * 256 * 1024, "three chunks or more");
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    writer.insert_row_binary("clicks", sinks::clickhouse::CLICK_COLUMNS, Some("runnel:hand"), &slices).await.unwrap();

    let client = config.client();
    let columns =
        sinks::clickhouse::CLICK_COLUMNS.iter().filter(|c| **c != "kafka_partition").copied().collect::<Vec<_>>();
    let read = |partition: i32| {
        let sql = format!(
            "SELECT {} FROM clicks WHERE kafka_partition = {partition} ORDER BY kafka_offset",
            columns.join(", ")
        );
        let client = client.clone();
        async move { client.query(&sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap() }
    };
    let (by_crate, by_hand) = (read(0).await, read(1).await);
    assert_eq!(by_crate.iter().filter(|b| **b == b'\n').count(), 1_500);
    assert!(by_crate == by_hand, "the two encodings stored different rows");
    assert_eq!(writer.fences("clicks").await.unwrap().get(&1), Some(&1_499));

    if version < DEDUP_TOKENS_SINCE {
        // 18.16 refuses the token settings: a writer made for 24.8 shows that it sends them.
        let current = ClickhouseWriter::for_server(config.clone(), DEDUP_TOKENS_SINCE);
        let error = current
            .insert_row_binary("clicks", sinks::clickhouse::CLICK_COLUMNS, Some("t"), &slices[..1])
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("Unknown setting"), "{error}");
    }
}

async fn cleanup(config: &RedisConfig) {
    let mut conn = config.connect().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", config.prefix)).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

fn outcomes(list: &[(String, ApplyOutcome)]) -> Vec<(&str, ApplyOutcome)> {
    list.iter().map(|(tag, outcome)| (tag.as_str(), *outcome)).collect()
}

#[tokio::test]
async fn redis_counters_apply_each_tag_once_and_only_above_its_fence() {
    let config = redis(&format!("{}:", unique("t")));
    let counters = Counters::new(config.clone(), config.connect().await.unwrap(), 90);
    counters.load().await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let day = day_of(now);

    let mut first = counters.updates();
    for visitor in [10, 10, 11, 12, 12, 12, 13] {
        first.click(1, now, false, visitor);
    }
    for _ in 0..3 {
        first.click(2, now, true, 99);
    }
    let applied = counters.apply("clicks", 0, 0, 9, &first).await.unwrap();
    assert_eq!(
        outcomes(&applied),
        [("1", ApplyOutcome::Applied), ("2", ApplyOutcome::Applied), (day.as_str(), ApplyOutcome::Applied)]
    );
    // A replay of the same range (a processor killed before its commit) changes nothing.
    let again = counters.apply("clicks", 0, 0, 9, &first).await.unwrap();
    assert!(again.iter().all(|(_, o)| *o == ApplyOutcome::AlreadyApplied), "{again:?}");
    // A range that straddles a tag's fence is refused for that tag, naming the fence; a tag
    // never applied from this partition takes it.
    let mut straddling = counters.updates();
    straddling.click(1, now, false, 20);
    straddling.click(3, now, false, 30);
    let got = counters.apply("clicks", 0, 5, 14, &straddling).await.unwrap();
    assert_eq!(
        outcomes(&got),
        [
            ("1", ApplyOutcome::Overlap { fence: 9 }),
            (day.as_str(), ApplyOutcome::Overlap { fence: 9 }),
            ("3", ApplyOutcome::Applied)
        ]
    );
    let mut above = counters.updates();
    above.click(1, now, false, 20);
    above.click(3, now, false, 30);
    let applied = counters.apply("clicks", 0, 10, 14, &above).await.unwrap();
    assert_eq!(
        outcomes(&applied),
        [("1", ApplyOutcome::Applied), (day.as_str(), ApplyOutcome::Applied), ("3", ApplyOutcome::AlreadyApplied)]
    );
    // Partitions fence apart.
    let mut other = counters.updates();
    other.click(1, now, false, 10);
    other.retain_tag("1");
    assert_eq!(outcomes(&counters.apply("clicks", 1, 0, 0, &other).await.unwrap()), [("1", ApplyOutcome::Applied)]);

    assert_eq!(counters.clicks(1).await.unwrap(), 9);
    assert_eq!(counters.hget("clicks:{1}", "human").await.unwrap(), 9);
    assert_eq!(counters.clicks(2).await.unwrap(), 3);
    assert_eq!(counters.hget("clicks:{2}", "bot").await.unwrap(), 3);
    assert_eq!(counters.hget(&format!("clicks:{{2}}:{day}"), "bot").await.unwrap(), 3);
    let mut conn = config.connect().await.unwrap();
    let visitors: u64 = redis::cmd("PFCOUNT")
        .arg(format!("{}visitors:{{1}}:{day}", config.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(visitors, 5, "10, 11, 12, 13, 20; bots are not visitors");
    let top: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(format!("{}top:{{{day}}}", config.prefix))
        .arg(0)
        .arg(-1)
        .arg("REV")
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(top, [("1".to_string(), 8), ("3".to_string(), 1)], "each range applied once, humans only");
    let ttl: i64 =
        redis::cmd("TTL").arg(format!("{}clicks:{{1}}:{day}", config.prefix)).query_async(&mut conn).await.unwrap();
    assert!(ttl > 90 * 86_400 && ttl <= 91 * 86_400, "day keys expire 90 days after their day: {ttl}");
    let ttl: i64 =
        redis::cmd("TTL").arg(format!("{}clicks:{{1}}", config.prefix)).query_async(&mut conn).await.unwrap();
    assert_eq!(ttl, -1, "totals do not expire");

    // A restarted Redis forgets scripts: the counters load theirs again by themselves.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let mut later = counters.updates();
    later.click(1, now, false, 10);
    later.retain_tag("1");
    assert_eq!(outcomes(&counters.apply("clicks", 0, 15, 15, &later).await.unwrap()), [("1", ApplyOutcome::Applied)]);
    assert_eq!(counters.clicks(1).await.unwrap(), 10);
    cleanup(&config).await;
}

#[tokio::test]
async fn a_link_with_thousands_of_visitors_in_one_batch_counts_them_all_and_its_keys_expire() {
    let config = redis(&format!("{}:", unique("t")));
    let counters = Counters::new(config.clone(), config.connect().await.unwrap(), 90);
    counters.load().await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let day = day_of(now);
    // More visitors than one PFADD of the script takes (1,000), and more than Lua's `unpack`
    // could take at once (8,000).
    let mut updates = counters.updates();
    for visitor in 0..9_500u64 {
        updates.click(7, now, false, visitor.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let applied = counters.apply("clicks", 0, 0, 99, &updates).await.unwrap();
    assert_eq!(outcomes(&applied), [(day.as_str(), ApplyOutcome::Applied), ("7", ApplyOutcome::Applied)]);
    let mut conn = config.connect().await.unwrap();
    let key = format!("{}visitors:{{7}}:{day}", config.prefix);
    let visitors: f64 = redis::cmd("PFCOUNT").arg(&key).query_async::<u64>(&mut conn).await.unwrap() as f64;
    // HyperLogLog's standard error is 0.81%.
    assert!((visitors - 9_500.0).abs() < 9_500.0 * 0.03, "{visitors} visitors counted of 9,500");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(ttl > 90 * 86_400 && ttl <= 91 * 86_400, "the visitors key expires with its day: {ttl}");
    assert_eq!(counters.hget("clicks:{7}", "human").await.unwrap(), 9_500);
    cleanup(&config).await;
}

#[tokio::test]
async fn processors_agree_on_one_shared_secret() {
    let config = redis(&format!("{}:", unique("t")));
    let counters = Counters::new(config.clone(), config.connect().await.unwrap(), 90);
    assert_eq!(counters.shared_secret("visitor", "first").await.unwrap(), "first");
    assert_eq!(counters.shared_secret("visitor", "second").await.unwrap(), "first");
    cleanup(&config).await;
}

#[tokio::test]
async fn links_are_listed_in_creation_order_page_by_page() {
    let config = redis(&format!("{}:", unique("t")));
    let index = LinkIndex::new(config.clone(), config.connect().await.unwrap());
    for i in 0..7u64 {
        // Ids with different digit counts check that the padding keeps numeric order.
        let id = if i < 3 { 9 + i } else { 1_000_000_000_000_000 + i };
        assert!(index.claim(&events::LinkEvent::new(id, format!("c{i}"), "https://e.com", 0)).await.unwrap());
    }
    let mut codes = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = index.list(cursor.as_deref(), 3).await.unwrap();
        codes.extend(page.links.iter().map(|l| l.code.clone()));
        pages += 1;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(codes, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    assert_eq!(pages, 3);
    cleanup(&config).await;
}

#[tokio::test]
async fn of_many_creators_of_one_code_exactly_one_wins() {
    let config = redis(&format!("{}:", unique("t")));
    let index = LinkIndex::new(config.clone(), config.connect().await.unwrap());
    let link = |url: &str, id: u64| events::LinkEvent::new(id, "same", url, 0);
    let (a, b) = (link("https://a.example", 1), link("https://b.example", 2));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let index = index.clone();
            let link = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { index.claim(&link).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
    let stored = index.get("same").await.unwrap().unwrap();
    // Releasing another version does not remove the winner.
    let loser = if stored.link_id == 1 { &b } else { &a };
    index.release(loser).await.unwrap();
    assert_eq!(index.get("same").await.unwrap(), Some(stored.clone()));
    // A newer version replaces it, an older one does not.
    let mut newer = stored.clone();
    newer.id += 10;
    newer.url = "https://newer.example".into();
    assert!(index.put(&newer).await.unwrap());
    assert!(!index.put(&stored).await.unwrap(), "an older version must not overwrite a newer one");
    assert_eq!(index.get("same").await.unwrap().unwrap().url, "https://newer.example");
    assert_eq!(index.list(None, 10).await.unwrap().links.len(), 1);
    index.release(&newer).await.unwrap();
    assert_eq!(index.get("same").await.unwrap(), None);
    assert!(index.list(None, 10).await.unwrap().links.is_empty());
    cleanup(&config).await;
}
