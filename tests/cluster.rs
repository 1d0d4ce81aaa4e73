//! The cluster schema (`clickhouse-schema/cluster/`) on a real two-shard ClickHouse 18.16 cluster
//! with ZooKeeper (`scripts/stack cluster`): `runnel migrate` applies it once from either node,
//! the processors store every event exactly once across the shards (a Kafka partition's rows
//! and fence on one shard), and every report answers on the cluster exactly as on one server
//! holding the same rows.

mod common;

use std::time::Duration;

use common::{TestEnv, eventually};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const NODES: [&str; 2] = ["http://127.0.0.1:8124", "http://127.0.0.1:8125"];
const CLICKS: u64 = 1200;
const ORDERS: u64 = 300;

async fn ch_text(url: &str, sql: &str) -> String {
    let response = reqwest::Client::new().post(url).body(sql.to_string()).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{url}: {sql}: {text}");
    text.trim().to_string()
}

/// Drops a test database from every cluster node when dropped (`TestEnv` cleans only the
/// single server), so replicated tables and their ZooKeeper entries do not pile up.
struct ClusterDatabase(String);

impl ClusterDatabase {
    /// Also drops what earlier runs of this test left behind (killed before their clean-up).
    async fn new(db: &str) -> Self {
        for node in NODES {
            let left = ch_text(
                node,
                &format!("SELECT name FROM system.databases WHERE name LIKE 'runnel\\_tcluster%' AND name != '{db}'"),
            )
            .await;
            for old in left.lines().filter(|l| !l.is_empty()) {
                ch_text(node, &format!("DROP DATABASE IF EXISTS {old}")).await;
            }
        }
        Self(db.to_string())
    }
}

impl Drop for ClusterDatabase {
    fn drop(&mut self) {
        let db = self.0.clone();
        // Best effort, on a runtime of its own: a failed clean-up must not hide the result.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                for node in NODES {
                    let _ =
                        reqwest::Client::new().post(node).body(format!("DROP DATABASE IF EXISTS {db}")).send().await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_schema_stores_once_and_reports_as_one_server_does() {
    let mut env = TestEnv::new("cluster");
    env.set("RUNNEL_CLICKHOUSE_URL", NODES[0]);
    env.set("RUNNEL_CLICKHOUSE_CLUSTER", "runnel");
    env.prepare();
    let db = env.database();
    let _dropped_at_end = ClusterDatabase::new(&db).await;

    // Applied once: the other node finds every migration recorded (schema_migrations is
    // replicated to every node) and the tables on both nodes.
    let mut again = env.command(&["migrate"]);
    again.env("RUNNEL_CLICKHOUSE_URL", NODES[1]);
    let out = again.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("up to date"), "{said}");
    for node in NODES {
        let tables = ch_text(node, &format!("SELECT groupArray(name) FROM (SELECT name FROM system.tables WHERE database = '{db}' AND name IN ('clicks', 'clicks_local', 'orders_local', 'link_clicks_daily_local', 'kafka_offsets') ORDER BY name)")).await;
        assert_eq!(
            tables, "['clicks','clicks_local','kafka_offsets','link_clicks_daily_local','orders_local']",
            "{node}"
        );
        let engine = ch_text(
            node,
            &format!("SELECT engine FROM system.tables WHERE database = '{db}' AND name = 'clicks_local'"),
        )
        .await;
        assert_eq!(engine, "ReplicatedMergeTree", "{node}");
    }

    // Events through Kafka and the real processor, spread over every partition.
    let processor = env.spawn_processor();
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap();
    let uas = [common::BROWSER, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"];
    let countries = ["DE", "FR", "US", "JP"];
    for batch in 0..(CLICKS / 50) {
        let lines: String = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                let link = n % 7;
                let at = 1_794_268_800_000 + (n % 96) * 3_600_000 + n; // from 2026-11-10, 4 days
                json!({"v": 1, "id": 10_000 + n, "ts": at, "link_id": 500 + link, "code": format!("cl-{link}"),
                       "method": "GET", "ua": uas[(n % 5 == 0) as usize], "ref": "https://www.google.com/",
                       "ip": format!("192.0.2.{}", n % 200), "country": countries[(n % 4) as usize]})
                .to_string()
                    + "\n"
            })
            .collect();
        let topic = format!("{}clicks", env.topic_prefix());
        let key = format!("k{batch}");
        producer.send(FutureRecord::to(&topic).key(&key).payload(&lines), Duration::from_secs(10)).await.unwrap();
    }
    let statuses = ["created", "paid", "paid", "shipped", "refunded"];
    for batch in 0..(ORDERS / 20) {
        let lines: String = (0..20)
            .map(|i| {
                let n = batch * 20 + i;
                let order = n / 2;
                let day = 10 + order % 4;
                let total = (1 + order % 3) * (250 + 10 * (order % 11));
                json!({"event_id": format!("ce{n}"), "order_id": format!("co{order}"), "customer_id": format!("cc{}", order % 40),
                       "status": statuses[(n % 5) as usize], "currency": if order % 3 == 0 { "USD" } else { "EUR" },
                       "items": [{"product_id": format!("p{}", order % 9), "sku": format!("SKU-{}", order % 9), "quantity": 1 + order % 3, "unit_price": 250 + 10 * (order % 11)}],
                       "totals": {"subtotal": total, "tax": 0, "shipping": 0, "discount": 0, "total": total},
                       "channel": "web", "link_code": if order % 2 == 0 { json!(format!("cl-{}", order % 7)) } else { serde_json::Value::Null },
                       // The others name a click (stored on either shard) instead.
                       "click_id": if order % 2 == 1 { json!(10_000 + order * 7) } else { serde_json::Value::Null },
                       "time": format!("2026-11-{day}T{:02}:{:02}:00Z", order % 24, n % 60)})
                .to_string()
                    + "\n"
            })
            .collect();
        let topic = format!("{}orders", env.topic_prefix());
        let key = format!("o{batch}");
        producer.send(FutureRecord::to(&topic).key(&key).payload(&lines), Duration::from_secs(10)).await.unwrap();
    }
    let count = |table: &'static str| {
        let db = db.clone();
        async move { ch_text(NODES[1], &format!("SELECT count() FROM {db}.{table}")).await.parse::<u64>().unwrap() }
    };
    let stored = eventually(Duration::from_secs(90), || async {
        count("clicks").await == CLICKS && count("orders").await == ORDERS
    })
    .await;
    assert!(
        stored,
        "stored {} clicks, {} orders\n{}",
        count("clicks").await,
        count("orders").await,
        processor.log_text()
    );

    // Both shards hold rows, and no Kafka partition is split between them.
    let mut partitions = Vec::new();
    for node in NODES {
        let rows = ch_text(node, &format!("SELECT count() FROM {db}.clicks_local")).await.parse::<u64>().unwrap();
        assert!(rows > 0 && rows < CLICKS, "{node} holds {rows} of {CLICKS} clicks");
        partitions.push(ch_text(node, &format!("SELECT groupUniqArray(kafka_partition) FROM {db}.clicks_local")).await);
    }
    let shard = |text: &str| -> Vec<i64> {
        text.trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    };
    let (one, two) = (shard(&partitions[0]), shard(&partitions[1]));
    assert!(one.iter().all(|p| !two.contains(p)), "partitions on both shards: {one:?} and {two:?}");

    // A restarted processor seeks past the fences it reads through the Distributed table: nothing
    // is stored twice.
    drop(processor);
    let processor = env.spawn_processor();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(count("clicks").await, CLICKS, "{}", processor.log_text());
    assert_eq!(ch_text(NODES[0], &format!("SELECT uniqExact(event_id) FROM {db}.clicks")).await, CLICKS.to_string());
    drop(processor);

    // The same rows on one server (the stack's), copied from both shards; its views fill from
    // the INSERT as the cluster's did.
    let mut single = TestEnv::new("clusterref");
    single.set("RUNNEL_TOPIC_PREFIX", env.topic_prefix());
    single.prepare();
    let one_server = common::clickhouse_url();
    let shards = "127.0.0.1:9001,127.0.0.1:9002";
    for table in ["clicks", "orders"] {
        ch_text(
            &one_server,
            &format!("INSERT INTO {}.{table} SELECT * FROM remote('{shards}', {db}, {table}_local)", single.database()),
        )
        .await;
    }

    let runs: &[&[&str]] = &[
        &["report", "link", "--link-id", "503", "--interval", "hour"],
        &["report", "link", "--link-id", "503"],
        &["report", "link", "--link-id", "501", "--dimension", "country"],
        &["report", "link", "--link-id", "501", "--dimension", "device"],
        &["report", "top-links"],
        &["report", "top-links", "--tz", "Asia/Tokyo"],
        &["report", "sales"],
        &["report", "sales", "--interval", "week"],
        &["report", "top-products"],
        &["report", "customers"],
        &["report", "conversions"],
    ];
    // A report over 2026-11-09..14 on the cluster and on one server: the same rows, not none.
    let same_on_both = |args: &[&str], when: &str| {
        let mut args = args.to_vec();
        args.extend(["--from", "2026-11-09", "--to", "2026-11-14", "--format", "json"]);
        let (ok, on_cluster, err) = env.run(&args);
        assert!(ok, "{args:?} on the cluster{when}: {err}");
        let (ok, on_one, err) = single.run(&args);
        assert!(ok, "{args:?} on one server{when}: {err}");
        let rows: serde_json::Value = serde_json::from_str(&on_cluster).unwrap();
        assert!(!rows["rows"].as_array().unwrap().is_empty(), "{args:?}{when}: no rows");
        assert_eq!(on_cluster, on_one, "{args:?}{when}: the cluster and one server differ");
    };
    for args in runs {
        same_on_both(args, "");
    }

    // The rollup's lists, written through the cluster's Distributed tables, answer as one
    // server's do.
    // Two old lists first: the rollup keeps its own and the newest other, and drops the oldest
    // from every shard (ON CLUSTER, from the local tables).
    for sql in [
        "new_customers_hourly (version, cutoff, paid_before, listed, hour, new_customers) \
         VALUES (1, '2026-11-01 00:00:00', 0, 1, '2026-10-31 10:00:00', 1), (2, '2026-11-02 00:00:00', 0, 1, '2026-10-31 10:00:00', 1)",
        "active_customers_daily (version, listed, day, active, paid_orders) \
         VALUES (1, 1, '2026-10-31 00:00:00', 1, 1), (2, 1, '2026-10-31 00:00:00', 1, 1)",
    ] {
        ch_text(&format!("{}/?insert_distributed_sync=1", NODES[0]), &format!("INSERT INTO {db}.{sql}")).await;
    }
    for env in [&env, &single] {
        let (ok, out, err) = env.run(&["rollup"]);
        assert!(ok && out.contains("new customers per hour: listed now"), "{out}{err}");
    }
    for table in ["new_customers_hourly", "active_customers_daily"] {
        let old =
            ch_text(NODES[0], &format!("SELECT groupUniqArray(version) FROM {db}.{table} WHERE version < 3")).await;
        assert_eq!(old, "[2]", "{table}: the oldest list dropped, the next kept");
        for node in NODES {
            let left = ch_text(node, &format!("SELECT count() FROM {db}.{table}_local WHERE version = 1")).await;
            assert_eq!(left, "0", "{node} {table}_local: the oldest list dropped");
        }
    }
    let days = ch_text(NODES[0], &format!("SELECT count() FROM {db}.active_customers_daily")).await;
    assert_ne!(days.trim(), "0", "the cluster's list of active customers per day");
    let rolled = |database: &str| {
        format!("SELECT count(), sum(clicks), sum(visitors) FROM {database}.link_days WHERE link_id = 503")
    };
    let on_cluster = ch_text(NODES[0], &rolled(&db)).await;
    assert!(!on_cluster.starts_with('0'), "the cluster's counts of link 503's days: {on_cluster}");
    assert_eq!(on_cluster, ch_text(&one_server, &rolled(&single.database())).await);
    for args in [&["report", "customers"][..], &["report", "top-links"], &["report", "link", "--link-id", "503"]] {
        same_on_both(args, " after the rollup");
    }

    // A day's first hours listed on the cluster (the rollup at 12:30 on 2026-11-20, a day with
    // clicks before and after noon) answer as one server's list does, and the oldest list of
    // first hours is dropped from every shard.
    let clicks = "clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
        SELECT 50000 + number, toDateTime(1795132800 + (number % 8) * 7200 + number % 3600), 600 + r, \
        concat('h', toString(r)), number, toUInt8(number % 5 = 0), 'direct' \
        FROM (SELECT number, toUInt64(floor(pow(1500, (intHash64(number) % 1000000) / 1000000))) - 1 AS r FROM numbers(6000))";
    ch_text(&format!("{}/?insert_distributed_sync=1", NODES[0]), &format!("INSERT INTO {db}.{clicks}")).await;
    ch_text(&one_server, &format!("INSERT INTO {}.{clicks}", single.database())).await;
    let planted = "link_leaders_hours (version, day, hours, link_id, code, clicks, human_clicks, listed, floor_humans, day_clicks, day_humans) \
        VALUES (1, '2026-10-01', 5, 1, 'a', 1, 1, 1, 0, 1, 1), (2, '2026-10-01', 6, 1, 'a', 1, 1, 1, 0, 1, 1)";
    ch_text(&format!("{}/?insert_distributed_sync=1", NODES[0]), &format!("INSERT INTO {db}.{planted}")).await;
    let noon = "2026-11-20T12:30:00Z".parse().unwrap();
    let mut lists = Vec::new();
    for config in [
        common::clickhouse_config(NODES[0], &db, Some("runnel")),
        common::clickhouse_config(&one_server, &single.database(), None),
    ] {
        let done = sinks::reports::leaders::refresh(&config, noon, 90, |_, _| {}).await.unwrap();
        let (span, links) = done.first_hours.unwrap_or_else(|| panic!("no first hours listed: {done:?}"));
        assert_eq!(span.to_string(), "2026-11-20 00:00-12:00");
        lists.push(links);
    }
    assert!(lists[0] > 100 && lists[0] == lists[1], "links listed on the cluster and one server: {lists:?}");
    let versions =
        ch_text(NODES[0], &format!("SELECT groupUniqArray(version) FROM {db}.link_leaders_hours WHERE version < 3"))
            .await;
    assert_eq!(versions, "[2]", "link_leaders_hours: the oldest list dropped, the next kept");
    for node in NODES {
        let left = ch_text(node, &format!("SELECT count() FROM {db}.link_leaders_hours_local WHERE version = 1")).await;
        assert_eq!(left, "0", "{node} link_leaders_hours_local: the oldest list dropped");
    }
    let listed = |database: &str| {
        format!("SELECT count(), sum(human_clicks) FROM {database}.link_leaders_hours WHERE hours = 12")
    };
    assert_eq!(ch_text(NODES[0], &listed(&db)).await, ch_text(&one_server, &listed(&single.database())).await);
    for args in [&["report", "top-links"][..], &["report", "top-links", "--limit", "50"]] {
        let mut args = args.to_vec();
        args.extend(["--from", "2026-11-19", "--to", "2026-11-20", "--format", "json"]);
        let (ok, on_cluster, err) = env.run(&args);
        assert!(ok, "{args:?} on the cluster: {err}");
        let (ok, on_one, err) = single.run(&args);
        assert!(ok, "{args:?} on one server: {err}");
        assert!(on_cluster.contains("\"h0\""), "{on_cluster}");
        assert_eq!(on_cluster, on_one, "{args:?}: the cluster and one server differ");
    }
}
