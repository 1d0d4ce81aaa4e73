//! Reports against the real stack: a small dataset with known answers goes through Kafka and the
//! processors; every report (API and CLI) is checked against hand-computed figures, again with
//! the raw tables out of reach (a report that reads them fails), and on a current ClickHouse
//! engine (chdb-core) where every query must answer as the 18.16 server did.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{BROWSER, TestEnv, api, eventually};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::Method;
use serde_json::{Value, json};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const FIREFOX: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn ms(rfc3339: &str) -> u64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

#[allow(clippy::too_many_arguments)]
fn click(id: u64, at: &str, link_id: u64, code: &str, ua: &str, referrer: &str, ip: &str, country: &str) -> String {
    json!({"v": 1, "id": id, "ts": ms(at), "link_id": link_id, "code": code, "method": "GET", "ua": ua,
           "ref": referrer, "ip": ip, "country": country})
    .to_string()
}

#[allow(clippy::too_many_arguments)]
fn order(
    event_id: &str,
    order_id: &str,
    status: &str,
    at: &str,
    customer: &str,
    currency: &str,
    items: &[(&str, u32, i64)],
    link_code: &str,
) -> String {
    let total: i64 = items.iter().map(|(_, q, p)| i64::from(*q) * p).sum();
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q, price)| json!({"product_id": p, "sku": format!("SKU-{p}"), "quantity": q, "unit_price": price}))
        .collect();
    json!({"event_id": event_id, "order_id": order_id, "customer_id": customer, "status": status, "currency": currency,
           "items": items, "totals": {"subtotal": total, "tax": 0, "shipping": 0, "discount": 0, "total": total},
           "channel": "web", "link_code": link_code, "time": at})
    .to_string()
}

async fn get(url: String) -> Value {
    let response = api(Method::GET, &url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}: {}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Rows as lists of values, for compact comparison.
fn rows(report: &Value) -> Vec<Vec<Value>> {
    let columns: Vec<&str> = report["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    report["rows"].as_array().unwrap().iter().map(|row| columns.iter().map(|c| row[*c].clone()).collect()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_answers_from_the_aggregates_as_computed_by_hand_on_both_engines() {
    let mut env = TestEnv::new("reports");
    // The rollup runs when this test says (below), so the first pass takes the plain queries.
    env.set("RUNNEL_ROLLUP_INTERVAL_SECS", "0");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let a = common::create_link_with(&env, json!({"url": "https://shop.example/a", "alias": "rpt-a"})).await;
    let b = common::create_link_with(&env, json!({"url": "https://shop.example/b", "alias": "rpt-b"})).await;
    let (a_id, b_id) = (a["link_id"].as_u64().unwrap(), b["link_id"].as_u64().unwrap());

    // Link a: two human clicks on the 10th (UTC), a bot and a human on the 11th; link b: the
    // 10th and the 12th. In Tokyo (UTC+9) the second click of the 10th falls on the 11th.
    let clicks = [
        click(1, "2026-11-10T10:00:00Z", a_id, "rpt-a", BROWSER, "https://www.google.com/", "192.0.2.1", "DE"),
        click(2, "2026-11-10T23:30:00Z", a_id, "rpt-a", IPHONE, "", "192.0.2.2", "FR"),
        click(3, "2026-11-11T01:00:00Z", a_id, "rpt-a", GOOGLEBOT, "", "192.0.2.3", "US"),
        click(4, "2026-11-11T12:00:00Z", a_id, "rpt-a", BROWSER, "https://www.facebook.com/", "192.0.2.1", "DE"),
        click(5, "2026-11-10T12:00:00Z", b_id, "rpt-b", BROWSER, "", "192.0.2.4", "DE"),
        click(6, "2026-11-12T05:00:00Z", b_id, "rpt-b", FIREFOX, "", "192.0.2.5", "DE"),
    ];
    // Customer c1 buys on the 10th (attributed to a) and again on the 11th; c2 buys once on the
    // 11th (attributed to b); c1's first order is refunded on the 12th.
    let orders = [
        order("e1", "o1", "created", "2026-11-10T11:00:00Z", "c1", "EUR", &[("p1", 2, 500)], "rpt-a"),
        order("e2", "o1", "paid", "2026-11-10T11:05:00Z", "c1", "EUR", &[("p1", 2, 500)], "rpt-a"),
        order("e3", "o2", "created", "2026-11-11T02:00:00Z", "c1", "EUR", &[("p2", 1, 300)], "rpt-a"),
        order("e4", "o2", "paid", "2026-11-11T02:01:00Z", "c1", "EUR", &[("p2", 1, 300)], "rpt-a"),
        order("e5", "o3", "paid", "2026-11-11T13:00:00Z", "c2", "USD", &[("p1", 1, 700)], "rpt-b"),
        order("e6", "o1", "refunded", "2026-11-12T09:00:00Z", "c1", "EUR", &[("p1", 2, 500)], "rpt-a"),
        // Attributed by click id only (click 5 is link b's), before the 10th–12th.
        json!({"event_id": "e7", "order_id": "o4", "customer_id": "c3", "status": "paid", "currency": "USD",
               "items": [{"product_id": "p3", "sku": "SKU-p3", "quantity": 1, "unit_price": 400}],
               "totals": {"subtotal": 400, "tax": 0, "shipping": 0, "discount": 0, "total": 400},
               "channel": "web", "click_id": 5, "time": "2026-11-05T10:00:00Z"})
        .to_string(),
    ];
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", common::kafka_brokers()).create().unwrap();
    let today = jiff::Timestamp::now().to_string();
    let live_click = click(7, &today, a_id, "rpt-a", BROWSER, "", "192.0.2.9", "DE");
    for (topic, lines) in [("clicks", clicks.to_vec()), ("orders", orders.to_vec()), ("clicks", vec![live_click])] {
        let payload: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let topic = format!("{}{topic}", env.topic_prefix());
        producer.send(FutureRecord::to(&topic).key("k").payload(&payload), Duration::from_secs(10)).await.unwrap();
    }
    let stored = eventually(Duration::from_secs(60), || async {
        env.ch_u64("SELECT count() FROM clicks").await == 7 && env.ch_u64("SELECT count() FROM orders").await == 7
    })
    .await;
    assert!(
        stored,
        "stored {} clicks, {} orders",
        env.ch_u64("SELECT count() FROM clicks").await,
        env.ch_u64("SELECT count() FROM orders").await
    );

    let base = format!("{}/api", env.edge_url());
    let utc = "from=2026-11-10&to=2026-11-12";
    let tokyo = "from=2026-11-11&to=2026-11-12&tz=Asia/Tokyo";
    let months = "from=2026-10-01&to=2026-11-30";
    // Today's click counts in October–November only while today is in them.
    let live =
        u64::from(jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date() < jiff::civil::date(2026, 12, 1));
    let t = |day: &str| format!("{day}T00:00:00+00:00");

    // The reports through the API, each with the answer worked out by hand from the data above.
    let expected: Vec<(String, Vec<Vec<Value>>)> = vec![
        (
            format!("links/rpt-a/stats?{utc}"),
            vec![
                vec![json!(t("2026-11-10")), json!(2), json!(2), json!(2)],
                vec![json!(t("2026-11-11")), json!(2), json!(1), json!(1)],
                vec![json!(t("2026-11-12")), json!(0), json!(0), json!(0)],
            ],
        ),
        (
            format!("links/rpt-a/stats?{tokyo}"),
            vec![
                vec![json!("2026-11-11T00:00:00+09:00"), json!(3), json!(2), json!(2)],
                vec![json!("2026-11-12T00:00:00+09:00"), json!(0), json!(0), json!(0)],
            ],
        ),
        (
            format!("links/rpt-a/stats/country?{utc}"),
            vec![
                vec![json!("DE"), json!(2), json!(2)],
                vec![json!("FR"), json!(1), json!(1)],
                vec![json!("US"), json!(1), json!(0)],
            ],
        ),
        (
            format!("links/rpt-a/stats/device?{utc}"),
            vec![
                vec![json!("desktop"), json!(2), json!(2)],
                vec![json!("mobile"), json!(1), json!(1)],
                vec![json!("bot"), json!(1), json!(0)],
            ],
        ),
        (
            format!("links/rpt-a/stats/channel?{utc}"),
            vec![
                vec![json!("direct"), json!(2), json!(1)],
                vec![json!("search"), json!(1), json!(1)],
                vec![json!("social"), json!(1), json!(1)],
            ],
        ),
        (
            format!("reports/top-links?{utc}"),
            vec![
                vec![json!(a_id), json!("rpt-a"), json!(4), json!(3)],
                vec![json!(b_id), json!("rpt-b"), json!(2), json!(2)],
            ],
        ),
        // October and November whole: read from the monthly rollups (0007), today's click too.
        (
            format!("reports/top-links?{months}"),
            vec![
                vec![json!(a_id), json!("rpt-a"), json!(4 + live), json!(3 + live)],
                vec![json!(b_id), json!("rpt-b"), json!(2), json!(2)],
            ],
        ),
        (
            format!("reports/top-products?{months}&limit=2"),
            vec![
                vec![json!("p1"), json!("SKU-p1"), json!("EUR"), json!(2), json!(1000)],
                vec![json!("p1"), json!("SKU-p1"), json!("USD"), json!(1), json!(700)],
            ],
        ),
        (
            format!("reports/conversions?{months}"),
            vec![
                vec![
                    json!("rpt-a"),
                    json!(4 + live),
                    json!(3 + live),
                    json!("EUR"),
                    json!(2),
                    json!(1300),
                    json!(2.0 / (3 + live) as f64),
                ],
                vec![json!("rpt-b"), json!(2), json!(2), json!("USD"), json!(2), json!(1100), json!(1.0)],
            ],
        ),
        // Only the order attributed by its click id.
        (
            "reports/conversions?from=2026-11-01&to=2026-11-09".to_string(),
            vec![vec![json!("rpt-b"), json!(0), json!(0), json!("USD"), json!(1), json!(400), json!(0.0)]],
        ),
        // Tokyo's 11th–12th are UTC 10th 15:00 to 12th 15:00: hours at both ends, the 11th whole.
        (
            format!("reports/top-links?{tokyo}"),
            vec![
                vec![json!(a_id), json!("rpt-a"), json!(3), json!(2)],
                vec![json!(b_id), json!("rpt-b"), json!(1), json!(1)],
            ],
        ),
        (
            format!("reports/sales?{utc}"),
            vec![
                vec![
                    json!(t("2026-11-10")),
                    json!("created"),
                    json!("EUR"),
                    json!(1),
                    json!(1000),
                    json!(2),
                    json!(1000.0),
                ],
                vec![
                    json!(t("2026-11-10")),
                    json!("paid"),
                    json!("EUR"),
                    json!(1),
                    json!(1000),
                    json!(2),
                    json!(1000.0),
                ],
                vec![
                    json!(t("2026-11-11")),
                    json!("created"),
                    json!("EUR"),
                    json!(1),
                    json!(300),
                    json!(1),
                    json!(300.0),
                ],
                vec![json!(t("2026-11-11")), json!("paid"), json!("EUR"), json!(1), json!(300), json!(1), json!(300.0)],
                vec![json!(t("2026-11-11")), json!("paid"), json!("USD"), json!(1), json!(700), json!(1), json!(700.0)],
                vec![
                    json!(t("2026-11-12")),
                    json!("refunded"),
                    json!("EUR"),
                    json!(1),
                    json!(1000),
                    json!(2),
                    json!(1000.0),
                ],
            ],
        ),
        // Tokyo's 11th–12th: every hour read (local days are not UTC days).
        (
            format!("reports/sales?{tokyo}"),
            vec![
                vec![
                    json!("2026-11-11T00:00:00+09:00"),
                    json!("created"),
                    json!("EUR"),
                    json!(1),
                    json!(300),
                    json!(1),
                    json!(300.0),
                ],
                vec![
                    json!("2026-11-11T00:00:00+09:00"),
                    json!("paid"),
                    json!("EUR"),
                    json!(1),
                    json!(300),
                    json!(1),
                    json!(300.0),
                ],
                vec![
                    json!("2026-11-11T00:00:00+09:00"),
                    json!("paid"),
                    json!("USD"),
                    json!(1),
                    json!(700),
                    json!(1),
                    json!(700.0),
                ],
                vec![
                    json!("2026-11-12T00:00:00+09:00"),
                    json!("refunded"),
                    json!("EUR"),
                    json!(1),
                    json!(1000),
                    json!(2),
                    json!(1000.0),
                ],
            ],
        ),
        (
            format!("reports/sales?{utc}&interval=month"),
            vec![
                vec![
                    json!(t("2026-11-01")),
                    json!("created"),
                    json!("EUR"),
                    json!(2),
                    json!(1300),
                    json!(3),
                    json!(650.0),
                ],
                vec![
                    json!(t("2026-11-01")),
                    json!("paid"),
                    json!("EUR"),
                    json!(2),
                    json!(1300),
                    json!(3),
                    json!(650.0),
                ],
                vec![json!(t("2026-11-01")), json!("paid"), json!("USD"), json!(1), json!(700), json!(1), json!(700.0)],
                vec![
                    json!(t("2026-11-01")),
                    json!("refunded"),
                    json!("EUR"),
                    json!(1),
                    json!(1000),
                    json!(2),
                    json!(1000.0),
                ],
            ],
        ),
        (
            format!("reports/top-products?{utc}"),
            vec![
                vec![json!("p1"), json!("SKU-p1"), json!("EUR"), json!(2), json!(1000)],
                vec![json!("p1"), json!("SKU-p1"), json!("USD"), json!(1), json!(700)],
                vec![json!("p2"), json!("SKU-p2"), json!("EUR"), json!(1), json!(300)],
            ],
        ),
        // The 9th to the 29th are three whole weeks (0012's weekly rollup), the 3rd to the 8th
        // days; the order attributed by click id is on the 5th.
        (
            "reports/top-products?from=2026-11-03&to=2026-11-29&limit=3".to_string(),
            vec![
                vec![json!("p1"), json!("SKU-p1"), json!("EUR"), json!(2), json!(1000)],
                vec![json!("p1"), json!("SKU-p1"), json!("USD"), json!(1), json!(700)],
                vec![json!("p3"), json!("SKU-p3"), json!("USD"), json!(1), json!(400)],
            ],
        ),
        (
            format!("reports/customers?{utc}"),
            vec![
                vec![json!(t("2026-11-10")), json!(1), json!(0), json!(1)],
                vec![json!(t("2026-11-11")), json!(1), json!(1), json!(2)],
                vec![json!(t("2026-11-12")), json!(0), json!(0), json!(0)],
            ],
        ),
        (
            format!("reports/conversions?{utc}"),
            vec![
                vec![json!("rpt-a"), json!(4), json!(3), json!("EUR"), json!(2), json!(1300), json!(2.0 / 3.0)],
                vec![json!("rpt-b"), json!(2), json!(2), json!("USD"), json!(1), json!(700), json!(0.5)],
            ],
        ),
    ];
    // The raw rows are visible a moment before the views of the same INSERT have theirs: the
    // first pass waits a little for each report's rows.
    for (path, want) in &expected {
        eventually(Duration::from_secs(10), || async { &rows(&get(format!("{base}/{path}")).await) == want }).await;
        let got = rows(&get(format!("{base}/{path}")).await);
        assert_eq!(&got, want, "{path}");
    }
    let series = get(format!("{base}/links/rpt-a/stats?{utc}")).await;
    assert_eq!((series["clicks"].clone(), series["human_clicks"].clone()), (json!(4), json!(3)));
    // London in November is at offset 0: its days are UTC days, read from the daily table.
    for report in ["sales", "sales?interval=week"] {
        let (path, query) = report.split_once('?').map_or((report, String::new()), |(p, q)| (p, format!("&{q}")));
        let london = rows(&get(format!("{base}/reports/{path}?{utc}&tz=Europe/London{query}")).await);
        let utc_rows = rows(&get(format!("{base}/reports/{path}?{utc}{query}")).await);
        assert!(!utc_rows.is_empty());
        assert_eq!(london, utc_rows, "{report} in London's winter");
    }

    // Live: today's counters in Redis (the one click of today).
    let live: BTreeMap<String, Value> = get(format!("{base}/reports/live")).await["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (format!("{} {}", r["metric"].as_str().unwrap(), r["key"].as_str().unwrap()), r["value"].clone()))
        .collect();
    assert_eq!(live["clicks human"], json!(1), "{live:?}");
    assert_eq!(live["clicks bot"], json!(0), "{live:?}");
    assert_eq!(live[&format!("top_link {a_id}")], json!(1), "{live:?}");

    // CSV and Arrow of the same report.
    let csv = api(Method::GET, format!("{base}/reports/top-products?{utc}&format=csv")).send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.text().await.unwrap(),
        "product_id,sku,currency,units,revenue\np1,SKU-p1,EUR,2,1000\np1,SKU-p1,USD,1,700\np2,SKU-p2,EUR,1,300\n"
    );
    let arrow = api(Method::GET, format!("{base}/reports/top-links?{utc}"))
        .header("accept", "application/vnd.apache.arrow.stream")
        .send()
        .await
        .unwrap();
    assert_eq!(arrow.headers()["content-type"], "application/vnd.apache.arrow.stream");
    let bytes = arrow.bytes().await.unwrap();
    let mut reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let batch = reader.next().unwrap().unwrap();
    assert_eq!((batch.num_rows(), batch.schema().field(1).name().as_str()), (2, "code"));

    // Bad parameters: 400 naming the parameter; unknown names: 404 listing the reports.
    for (path, status, mention) in [
        (format!("reports/sales?{utc}&interval=hour"), 400, "interval"),
        ("reports/top-links?tz=Mars/Base".to_string(), 400, "tz"),
        ("reports/top-links?from=2026-02-30".to_string(), 400, "from"),
        ("reports/top-links?limit=5000".to_string(), 400, "limit"),
        ("reports/top-links?colour=red".to_string(), 400, "colour"),
        ("links/rpt-a/stats/planet".to_string(), 400, "dimension"),
        ("reports/nope".to_string(), 404, "top-links"),
    ] {
        let response = api(Method::GET, format!("{base}/{path}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains(mention), "{path}: {text}");
    }

    // The CLI gives the same answers.
    let (ok, out, err) =
        env.run(&["report", "top-links", "--from", "2026-11-10", "--to", "2026-11-12", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("link_id,code,clicks,human_clicks\n{a_id},rpt-a,4,3\n{b_id},rpt-b,2,2\n"));
    let (ok, out, err) = env.run(&[
        "report",
        "link",
        "--link",
        "rpt-a",
        "--dimension",
        "country",
        "--from",
        "2026-11-10",
        "--to",
        "2026-11-12",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("value  clicks  human_clicks\nDE          2             2\n"), "{out}");

    // Out of reach of the raw tables, every report answers the same: none reads them.
    let ch = env.clickhouse();
    ch.query("RENAME TABLE clicks TO clicks_hidden, orders TO orders_hidden").execute().await.unwrap();
    for (path, want) in &expected {
        let response = api(Method::GET, format!("{base}/{path}")).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{path} with the raw tables hidden: {body}");
        assert_eq!(&rows(&body), want, "{path} with the raw tables hidden");
    }
    ch.query("RENAME TABLE clicks_hidden TO clicks, orders_hidden TO orders").execute().await.unwrap();

    // After the rollup, top links and customers answer the same from its lists. With the
    // tables that the plain queries read emptied, they still do: the lists are what answered.
    let (ok, out, err) = env.run(&["rollup"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("listed now, 0 already current") && out.contains("new customers per hour: listed now"),
        "{out}"
    );
    for (path, want) in &expected {
        assert_eq!(&rows(&get(format!("{base}/{path}")).await), want, "{path} after the rollup");
    }
    // Emptied: what top links merge without the leaders, every customer's first order, and the
    // active customers per hour (days before the cutoff come counted from the list of days).
    const LISTED: [&str; 3] = ["link_clicks_daily", "customer_firsts", "customer_ids_hourly"];
    let hide = |tables: &'static [&'static str]| {
        let ch = ch.clone();
        async move {
            for table in tables {
                ch.query(&format!("RENAME TABLE {table} TO {table}_full")).execute().await.unwrap();
                ch.query(&format!("CREATE TABLE {table} AS {table}_full")).execute().await.unwrap();
            }
        }
    };
    let restore = |tables: &'static [&'static str]| {
        let ch = ch.clone();
        async move {
            for table in tables {
                ch.query(&format!("DROP TABLE {table}")).execute().await.unwrap();
                ch.query(&format!("RENAME TABLE {table}_full TO {table}")).execute().await.unwrap();
            }
        }
    };
    hide(&LISTED).await;
    for path in [format!("reports/top-links?{utc}"), format!("reports/customers?{utc}")] {
        let want = &expected.iter().find(|(p, _)| *p == path).unwrap().1;
        assert_eq!(&rows(&get(format!("{base}/{path}")).await), want, "{path} from the lists alone");
    }
    restore(&LISTED).await;

    // A paid order stored late for the 11th, by a new customer: the list of new customers is out
    // of date, the report merges every customer again and counts c9, and so does the next list.
    let late = json!({"event_id": "e9", "order_id": "o9", "customer_id": "c9", "status": "paid", "currency": "EUR",
           "items": [{"product_id": "p1", "sku": "SKU-p1", "quantity": 1, "unit_price": 100}],
           "totals": {"subtotal": 100, "tax": 0, "shipping": 0, "discount": 0, "total": 100},
           "channel": "web", "time": "2026-11-11T15:00:00Z"});
    let topic = format!("{}orders", env.topic_prefix());
    producer
        .send(FutureRecord::to(&topic).key("o9").payload(&format!("{late}\n")), Duration::from_secs(10))
        .await
        .unwrap();
    let stored =
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM orders").await == 8 }).await;
    assert!(stored, "the late order was not stored");
    let customers = format!("{base}/reports/customers?{utc}");
    let with_c9 = vec![
        vec![json!(t("2026-11-10")), json!(1), json!(0), json!(1)],
        vec![json!(t("2026-11-11")), json!(2), json!(1), json!(3)],
        vec![json!(t("2026-11-12")), json!(0), json!(0), json!(0)],
    ];
    // The raw row is visible before the INSERT has written every view (18.16 writes the views
    // after the table), so the report may lag the count above for a moment.
    eventually(Duration::from_secs(10), || async { rows(&get(customers.clone()).await) == with_c9 }).await;
    assert_eq!(rows(&get(customers.clone()).await), with_c9, "customers after a late order");
    let (ok, out, err) = env.run(&["rollup"]);
    assert!(ok && out.contains("new customers per hour: listed now"), "{out}{err}");
    hide(&LISTED[1..]).await;
    let from_list = rows(&get(customers).await);
    restore(&LISTED[1..]).await;
    assert_eq!(from_list, with_c9, "customers from the new list alone");

    // The current engine: the schema with its newer-server statements, the same raw rows, every
    // report query (as the CLI prints it) answering what 18.16 answered.
    let dir = common::chdb_dir(&env, "chdb");
    for table in ["clicks", "orders"] {
        let mut cursor = ch.query(&format!("SELECT * FROM {table}")).fetch_bytes("TabSeparated").unwrap();
        std::fs::write(dir.join("data").join(format!("{table}.tsv")), cursor.collect().await.unwrap()).unwrap();
    }
    let mut queries: Vec<(String, Vec<String>)> = vec![
        (
            "series-utc".into(),
            vec![
                "link".into(),
                "--link-id".into(),
                a_id.to_string(),
                "--from".into(),
                "2026-11-10".into(),
                "--to".into(),
                "2026-11-12".into(),
            ],
        ),
        (
            "series-tokyo-hourly".into(),
            vec![
                "link".into(),
                "--link-id".into(),
                a_id.to_string(),
                "--from".into(),
                "2026-11-11".into(),
                "--to".into(),
                "2026-11-12".into(),
                "--tz".into(),
                "Asia/Tokyo".into(),
                "--interval".into(),
                "hour".into(),
            ],
        ),
    ];
    for dimension in sinks::reports::DIMENSIONS {
        queries.push((
            format!("breakdown-{dimension}"),
            vec![
                "link".into(),
                "--link-id".into(),
                a_id.to_string(),
                "--dimension".into(),
                dimension.to_string(),
                "--from".into(),
                "2026-11-10".into(),
                "--to".into(),
                "2026-11-12".into(),
            ],
        ));
    }
    for name in sinks::reports::NAMES {
        for (label, tz) in [("utc", "UTC"), ("tokyo", "Asia/Tokyo")] {
            for interval in [None, Some("week")] {
                if interval.is_some() && !["sales", "customers"].contains(name) {
                    continue;
                }
                let mut args = vec![
                    name.to_string(),
                    "--from".into(),
                    "2026-11-10".into(),
                    "--to".into(),
                    "2026-11-12".into(),
                    "--tz".into(),
                    tz.into(),
                ];
                if let Some(interval) = interval {
                    args.extend(["--interval".to_string(), interval.to_string()]);
                }
                queries.push((format!("{name}-{label}-{}", interval.unwrap_or("default")), args));
            }
        }
    }
    for name in ["top-links", "top-products", "conversions"] {
        let args = [name, "--from", "2026-10-01", "--to", "2026-11-30"];
        queries.push((format!("{name}-months"), args.iter().map(|a| a.to_string()).collect()));
    }
    let weeks = ["top-products", "--from", "2026-11-03", "--to", "2026-11-29"];
    queries.push(("top-products-weeks".into(), weeks.iter().map(|a| a.to_string()).collect()));
    let by_click = ["conversions", "--from", "2026-11-01", "--to", "2026-11-09"];
    queries.push(("conversions-by-click".into(), by_click.iter().map(|a| a.to_string()).collect()));
    let mut sql = serde_json::Map::new();
    let mut answers = BTreeMap::new();
    for (name, args) in &queries {
        let mut printed = vec!["report".to_string()];
        printed.extend(args.iter().cloned());
        printed.push("--print-sql".into());
        let (ok, text, err) = env.run(&printed.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{name}: {err}");
        sql.insert(name.clone(), json!(text.trim()));
        let mut csv = vec!["report".to_string()];
        csv.extend(args.iter().cloned());
        csv.extend(["--format".to_string(), "csv".to_string()]);
        let (ok, text, err) = env.run(&csv.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok, "{name}: {err}");
        answers.insert(name.clone(), text);
    }
    // Conversions run as two statements (the top attributed codes, then their clicks): both
    // must answer on the current engine as on 18.16.
    let mut steps = BTreeMap::new();
    for (name, args) in queries.iter().filter(|(name, _)| name.starts_with("conversions")) {
        let plan = plan_for(args, a_id);
        let attributed = plan.first.clone().expect("conversions run in two steps");
        let tsv = |sql: String| {
            let ch = ch.clone();
            async move {
                String::from_utf8(ch.query(&sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec())
                    .unwrap()
            }
        };
        let top = tsv(attributed.clone()).await;
        let codes: Vec<String> = top.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
        assert!(!codes.is_empty(), "{name}: no attributed codes");
        let clicks = plan.conversion_clicks_sql(&codes);
        steps.insert(format!("{name}-attributed"), top);
        steps.insert(format!("{name}-clicks"), tsv(clicks.clone()).await);
        sql.insert(format!("{name}-attributed"), json!(attributed));
        sql.insert(format!("{name}-clicks"), json!(clicks));
    }
    // Top products run as two statements too (the top product keys, then their names).
    for (name, args) in queries.iter().filter(|(name, _)| name.starts_with("top-products")) {
        let plan = plan_for(args, a_id);
        let keys_sql = plan.first.clone().expect("top products run in two steps");
        let keys = String::from_utf8(
            ch.query(&keys_sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec(),
        )
        .unwrap();
        let list: Vec<&str> = keys.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert!(!list.is_empty(), "{name}: no products");
        let names_sql = sinks::reports::product_names_sql(&list.join(", "));
        let names = String::from_utf8(
            ch.query(&names_sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec(),
        )
        .unwrap();
        assert_eq!(names.lines().count(), list.len(), "{name}: every key has its name");
        steps.insert(format!("{name}-keys"), keys);
        steps.insert(format!("{name}-names"), names);
        sql.insert(format!("{name}-keys"), json!(keys_sql));
        sql.insert(format!("{name}-names"), json!(names_sql));
    }
    // Customers from the rollup's list: the same list made on the current engine, then the
    // report's query over it.
    use sinks::reports::new_customers;
    let list = newest_customers_list(&ch).await;
    assert!(list.days_hold(), "the rollup's list and its days hold: {list:?}");
    sql.insert(
        "0-new-customers-list".into(),
        json!(new_customers::list_sql(list.version, list.cutoff, list.paid_before)),
    );
    sql.insert("0-active-customers-list".into(), json!(new_customers::days_sql(list.version, list.cutoff)));
    for (name, args) in queries.iter().filter(|(name, _)| name.starts_with("customers")) {
        let plan = plan_for(args, a_id);
        let listed = plan.customers_listed_sql(plan.fill.unwrap(), &list);
        assert_eq!(
            listed.contains("active_customers_daily"),
            name == "customers-utc-default",
            "{name}: only buckets of UTC days read the list of days"
        );
        let want =
            String::from_utf8(ch.query(&listed).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec())
                .unwrap();
        assert!(!want.trim().is_empty(), "{name}: no rows");
        steps.insert(format!("{name}-listed"), want);
        sql.insert(format!("{name}-listed"), json!(listed));
    }
    let chdb = common::run_chdb(&dir, &Value::Object(sql.clone()));
    assert!(chdb["version"].as_str().unwrap().starts_with("26."), "{chdb}");
    for (name, want) in &steps {
        let mut got: Vec<&str> = chdb["results"][name].as_str().unwrap().lines().collect();
        let mut want: Vec<&str> = want.lines().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{name} differs on chdb {}:\n{}", chdb["version"], sql[name]);
    }
    for (name, args) in &queries {
        // The current engine's rows, read and rendered by the same code as the server's.
        let plan = plan_for(args, a_id);
        let table = plan.table_from_tsv(chdb["results"][name].as_str().unwrap()).unwrap();
        assert_eq!(
            sinks::reports::to_csv(&table),
            answers[name],
            "{name} differs on chdb {}:\n{}",
            chdb["version"],
            sql[name]
        );
    }
}

/// The plan `runnel report` makes for `args` (link reports by id).
fn plan_for(args: &[String], link_id: u64) -> sinks::reports::Plan {
    use sinks::reports::{Report, ReportParams};
    let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
    let report = match args[0].as_str() {
        "link" => match value("--dimension") {
            Some(d) => Report::breakdown(link_id, &d).unwrap(),
            None => Report::LinkSeries { link_id },
        },
        name => Report::named(name).unwrap(),
    };
    let params = ReportParams {
        from: value("--from"),
        to: value("--to"),
        tz: value("--tz").or(Some("UTC".into())),
        interval: value("--interval"),
        limit: value("--limit").map(|l| l.parse().unwrap()),
        ..Default::default()
    };
    report.plan(&params, jiff::Timestamp::now()).unwrap()
}

/// The answer of `runnel report`'s plain query for `args` (as `--print-sql` gives it), as CSV.
async fn plain_csv(ch: &clickhouse::Client, args: &[&str]) -> String {
    let plan = plan_for(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), 0);
    let tsv = ch.query(&plan.sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
    sinks::reports::to_csv(&plan.table_from_tsv(&String::from_utf8_lossy(&tsv)).unwrap())
}

/// `runnel report ARGS --format csv`'s output.
fn report_csv(env: &TestEnv, args: &[&str]) -> String {
    let mut all = vec!["report"];
    all.extend(args);
    all.extend(["--format", "csv"]);
    let (ok, out, err) = env.run(&all);
    assert!(ok, "{args:?}: {err}");
    out
}

/// The newest list of new customers and its checks, read with the statements the report runs.
async fn newest_customers_list(ch: &clickhouse::Client) -> sinks::reports::new_customers::List {
    use sinks::reports::new_customers;
    let numbers = async |sql: String| {
        let tsv = ch.query(&sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
        String::from_utf8(tsv.to_vec())
            .unwrap()
            .trim()
            .split('\t')
            .map(|f| f.parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    let n = numbers(new_customers::newest_sql()).await;
    let c = numbers(new_customers::checks_sql(n[0], n[1] as i64)).await;
    new_customers::List {
        version: n[0],
        cutoff: n[1] as i64,
        paid_before: n[2],
        listed: n[3],
        rows: n[4],
        paid_now: c[0],
        days_listed: c[1],
        days_rows: c[2],
    }
}

/// The clicks of `day` (days after 2026-11-01, UTC) for links `700000 + rank`, rank drawn
/// log-uniformly from [0, 3000): a few links take most clicks and over a thousand get a few,
/// so the day's list of leaders is cut with a floor above zero. Every fifth click is a bot's.
fn zipf_clicks_sql(day: u64, clicks: u64) -> String {
    let rank = format!("toUInt64(floor(pow(3000, (intHash64(number * 8 + {day}) % 1000000) / 1000000))) - 1");
    format!(
        "INSERT INTO clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
         SELECT {day} * 10000000 + number, toDateTime({start} + number * 86400 / {clicks}), 700000 + {rank}, \
         concat('z', toString({rank})), intHash64(number), toUInt8(number % 5 = 0), 'direct' FROM numbers({clicks})",
        start = 1_793_491_200 + day * 86_400,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_links_from_the_daily_leaders_answer_exactly_as_the_plain_query_on_both_engines() {
    let env = TestEnv::new("leaders");
    env.prepare();
    let ch = env.clickhouse();
    for day in 0..4 {
        ch.query(&zipf_clicks_sql(day, 30_000)).execute().await.unwrap();
    }
    let (ok, out, err) = env.run(&["rollup"]);
    assert!(ok, "{err}");
    assert!(out.contains("4 days with clicks: 4 listed now, 0 already current"), "{out}");
    let floors = env.ch_u64("SELECT toUInt64(min(floor_humans)) FROM link_leaders_daily").await;
    assert!(floors > 0, "every day has more than 1,000 links, so every list is cut above zero");

    // Each report through the CLI against its plain query (as --print-sql gives it) over HTTP.
    let plain = async |args: &[&str]| plain_csv(&ch, args).await;
    let cli = |args: &[&str]| report_csv(&env, args);
    let ranges: [&[&str]; 6] = [
        &["top-links", "--from", "2026-11-01", "--to", "2026-11-04"],
        &["top-links", "--from", "2026-11-01", "--to", "2026-11-04", "--limit", "100"],
        &["top-links", "--from", "2026-11-01", "--to", "2026-11-04", "--limit", "1000"],
        &["top-links", "--from", "2026-11-02", "--to", "2026-11-03", "--tz", "Asia/Tokyo"],
        &["top-links", "--from", "2026-11-03", "--to", "2026-11-03", "--limit", "25"],
        &["top-links", "--from", "2026-10-30", "--to", "2026-11-30"],
    ];
    for args in ranges {
        let answer = cli(args);
        assert_eq!(answer, plain(args).await, "{args:?}");
        assert!(answer.lines().count() > 10, "{args:?}: {answer}");
    }

    // With the per-link click tables out of reach, a range of listed days still answers: from the
    // lists alone (the plain query would fail).
    let hide = "RENAME TABLE link_clicks_daily TO lcd_hidden, link_clicks_monthly TO lcm_hidden, link_clicks_hourly TO lch_hidden";
    let show = "RENAME TABLE lcd_hidden TO link_clicks_daily, lcm_hidden TO link_clicks_monthly, lch_hidden TO link_clicks_hourly";
    let listed_days: &[&str] = &["top-links", "--from", "2026-11-01", "--to", "2026-11-04", "--limit", "20"];
    let before = plain(listed_days).await;
    ch.query(hide).execute().await.unwrap();
    let from_lists = cli(listed_days);
    ch.query(show).execute().await.unwrap();
    assert_eq!(from_lists, before);

    // Late clicks for a listed day make a link that was on no list the top one: the day's list
    // is out of date, the report reads that day whole and still answers exactly.
    ch.query(
        "INSERT INTO clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
         SELECT 90000000 + number, toDateTime(1793577600 + number), 123456, 'late', number, 0, 'direct' FROM numbers(20000)",
    )
    .execute()
    .await
    .unwrap();
    let answer = cli(listed_days);
    assert_eq!(answer, plain(listed_days).await);
    assert!(answer.lines().nth(1).unwrap().starts_with("123456,late,20000,20000"), "{answer}");
    let (ok, out, err) = env.run(&["rollup"]);
    assert!(ok, "{err}");
    assert!(out.contains("4 days with clicks: 1 listed now, 3 already current"), "{out}");
    ch.query(hide).execute().await.unwrap();
    let relisted = cli(listed_days);
    ch.query(show).execute().await.unwrap();
    assert_eq!(relisted, answer);

    // The same statements on the current engine: the lists made from the same rows, then the
    // day states, bounds and exact counts the report reads, answering as 18.16 did.
    use sinks::reports::leaders;
    let dir = common::chdb_dir(&env, "chdb-leaders");
    let rows = ch.query("SELECT * FROM clicks").fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
    std::fs::write(dir.join("data").join("clicks.tsv"), rows).unwrap();
    let tsv = async |sql: &str| {
        String::from_utf8(ch.query(sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec()).unwrap()
    };
    let (first, end) = (jiff::civil::date(2026, 11, 1), jiff::civil::date(2026, 11, 5));
    let mut sql = serde_json::Map::new();
    let mut expected = BTreeMap::new();
    let mut usable = leaders::Usable::default();
    let newest = tsv("SELECT day, version, listed, floor_humans, day_clicks, day_humans FROM link_leaders_daily \
         WHERE (day, version) IN (SELECT day, max(version) FROM link_leaders_daily GROUP BY day) \
         GROUP BY day, version, listed, floor_humans, day_clicks, day_humans ORDER BY day")
    .await;
    for line in newest.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let day: jiff::civil::Date = f[0].parse().unwrap();
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        let list = leaders::list_sql(leaders::Span::day(day), n(1), n(2), n(3), (n(4), n(5)));
        sql.insert(format!("a-list-{day}"), json!(list));
        usable.lists.push(leaders::Listed { span: leaders::Span::day(day), version: n(1), floor: n(3) });
    }
    assert_eq!(usable.lists.len(), 4, "{newest}");
    let plan = plan_for(&listed_days.iter().map(|a| a.to_string()).collect::<Vec<_>>(), 0);
    let statements = [
        ("b-totals", leaders::day_totals_sql(first, end)),
        ("c-lists", leaders::lists_sql(first, end)),
        ("d-bounds", leaders::bounds_sql(&plan, &usable, 200)),
        ("e-size", leaders::list_size_sql(leaders::Span::day(jiff::civil::date(2026, 11, 2)))),
    ];
    for (name, statement) in statements {
        sql.insert(name.into(), json!(statement));
        expected.insert(name, tsv(&statement).await);
    }
    let bounds: Vec<leaders::Bounds> = expected["d-bounds"]
        .lines()
        .take(30)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            leaders::Bounds { link_id: n(0), code: f[1].into(), lower: n(2), clicks: n(3), upper: n(2) + 1 }
        })
        .collect();
    let exact = leaders::exact_sql(&plan, &bounds.iter().collect::<Vec<_>>());
    sql.insert("f-exact".into(), json!(exact));
    expected.insert("f-exact", tsv(&exact).await);
    let chdb = common::run_chdb(&dir, &Value::Object(sql));
    let sorted = |text: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    let newest_versions: Vec<String> = usable.lists.iter().map(|list| list.version.to_string()).collect();
    for (name, want) in &expected {
        let got = chdb["results"][*name].as_str().unwrap();
        // chdb holds only the newest list of each day (the versions 18.16 gave them); 18.16 also
        // the list of the 2nd from before the late clicks.
        let want: String = match *name {
            "c-lists" => want
                .lines()
                .filter(|l| newest_versions.iter().any(|v| l.split('\t').nth(2) == Some(v.as_str())))
                .map(|l| format!("{l}\n"))
                .collect(),
            _ => want.clone(),
        };
        assert_eq!(sorted(got), sorted(&want), "{name} differs on chdb {}", chdb["version"]);
        assert!(!want.trim().is_empty(), "{name} answered nothing");
    }
}

/// The current day's closed hours have a list of their own: a top-links report whose range takes
/// in that day reads the list and the day's later hours, not a row per link of the whole day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_links_read_a_day_from_the_list_of_its_first_hours_on_both_engines() {
    use sinks::reports::leaders::{self, Span};
    let env = TestEnv::new("first-hours");
    env.prepare();
    let ch = env.clickhouse();
    for day in 0..4 {
        ch.query(&zipf_clicks_sql(day, 30_000)).execute().await.unwrap();
    }
    let config = common::clickhouse_config(&common::clickhouse_url(), &env.database(), None);
    let at = |time: &str| time.parse::<jiff::Timestamp>().unwrap();
    let fourth = jiff::civil::date(2026, 11, 4);
    let (midnight, nine) = (1_793_750_400, 1_793_750_400 + 9 * 3600);

    // The rollup at 09:30 on the 4th: the three days before whole, the 4th's first nine hours.
    let done = leaders::refresh(&config, at("2026-11-04T09:30:00Z"), 90, |_, _| {}).await.unwrap();
    assert_eq!(done.listed.len(), 3, "{done:?}");
    assert_eq!(done.first_hours, Some((Span::first_hours(fourth, 9), 1000)), "{done:?}");
    // The list, against the same leaders counted from the raw clicks of 00:00-09:00.
    let tsv = async |sql: &str| {
        String::from_utf8(ch.query(sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec()).unwrap()
    };
    let listed =
        tsv("SELECT link_id, clicks, human_clicks FROM link_leaders_hours ORDER BY human_clicks DESC, link_id").await;
    let by_hand = tsv(&format!(
        "SELECT link_id, count() AS c, countIf(is_bot = 0) AS h FROM clicks \
         WHERE ts >= toDateTime({midnight}) AND ts < toDateTime({nine}) GROUP BY link_id ORDER BY h DESC, link_id LIMIT 1000"
    ))
    .await;
    assert_eq!(listed, by_hand);
    let meta =
        tsv("SELECT any(day), any(hours), any(listed), any(floor_humans), any(day_clicks) FROM link_leaders_hours")
            .await;
    let fields: Vec<&str> = meta.trim().split('\t').collect();
    let nine_hours = env.ch_u64(&format!("SELECT count() FROM clicks WHERE ts >= {midnight} AND ts < {nine}")).await;
    assert_eq!(fields[..3], ["2026-11-04", "9", "1000"], "{meta}");
    assert!(fields[3].parse::<u64>().unwrap() > 0, "more than 1,000 links clicked: the list is cut above zero");
    assert_eq!(fields[4].parse::<u64>().unwrap(), nine_hours);

    let plain = async |args: &[&str]| plain_csv(&ch, args).await;
    let cli = |args: &[&str]| report_csv(&env, args);
    // With the tables of whole days out of reach, only the lists and the hours after 09:00 can
    // answer (without the 4th's list, the report would read the 4th from link_clicks_daily).
    let hide = "RENAME TABLE link_clicks_daily TO lcd_hidden, link_clicks_monthly TO lcm_hidden";
    let show = "RENAME TABLE lcd_hidden TO link_clicks_daily, lcm_hidden TO link_clicks_monthly";
    let ranges: [&[&str]; 4] = [
        &["top-links", "--from", "2026-11-01", "--to", "2026-11-04"],
        &["top-links", "--from", "2026-11-04", "--to", "2026-11-04", "--limit", "100"],
        &["top-links", "--from", "2026-11-02", "--to", "2026-11-04", "--limit", "50"],
        &["top-links", "--from", "2026-11-03", "--to", "2026-11-04", "--tz", "Asia/Tokyo"],
    ];
    let mut answers = Vec::new();
    for args in ranges {
        answers.push(plain(args).await);
    }
    ch.query(hide).execute().await.unwrap();
    let from_lists: Vec<String> = ranges.iter().map(|args| cli(args)).collect();
    ch.query(show).execute().await.unwrap();
    for ((args, got), want) in ranges.iter().zip(&from_lists).zip(&answers) {
        assert_eq!(got, want, "{args:?}");
        assert!(want.lines().count() > 10, "{args:?}: {want}");
    }

    // Clicks stored late for 03:00 make a link on no list the top one: the hours' list is out of
    // date, the 4th is read whole, and the answer is still exact. The next rollup lists again.
    ch.query(&format!(
        "INSERT INTO clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
         SELECT 90000000 + number, toDateTime({} + number % 3600), 123456, 'late', number, 0, 'direct' FROM numbers(20000)",
        midnight + 3 * 3600
    ))
    .execute()
    .await
    .unwrap();
    let fourth_only: &[&str] = ranges[1];
    let answer = cli(fourth_only);
    assert_eq!(answer, plain(fourth_only).await);
    assert!(answer.lines().nth(1).unwrap().starts_with("123456,late,20000,20000"), "{answer}");
    let done = leaders::refresh(&config, at("2026-11-04T09:40:00Z"), 90, |_, _| {}).await.unwrap();
    assert_eq!((done.listed.len(), done.current), (0, 3), "{done:?}");
    assert_eq!(done.first_hours.map(|(span, _)| span), Some(Span::first_hours(fourth, 9)));
    ch.query(hide).execute().await.unwrap();
    let relisted = cli(fourth_only);
    ch.query(show).execute().await.unwrap();
    assert_eq!(relisted, answer);
    // Listed and current: nothing to do.
    let done = leaders::refresh(&config, at("2026-11-04T09:50:00Z"), 90, |_, _| {}).await.unwrap();
    assert_eq!((done.first_hours, done.current), (None, 3), "{done:?}");

    // An hour later and the next: a list each, and only the two newest are kept.
    for time in ["2026-11-04T10:30:00Z", "2026-11-04T11:30:00Z"] {
        leaders::refresh(&config, at(time), 90, |_, _| {}).await.unwrap();
    }
    let kept = tsv("SELECT hours, count() FROM link_leaders_hours GROUP BY hours ORDER BY hours").await;
    assert_eq!(kept, "10\t1000\n11\t1000\n");

    // The same statements on the current engine: the 11 hours' list made from the same rows, the
    // lists, and the bounds the report reads from it.
    let dir = common::chdb_dir(&env, "chdb-first-hours");
    let rows = ch.query("SELECT * FROM clicks").fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
    std::fs::write(dir.join("data").join("clicks.tsv"), rows).unwrap();
    let newest = tsv("SELECT version, listed, floor_humans, day_clicks, day_humans FROM link_leaders_hours \
         WHERE hours = 11 GROUP BY version, listed, floor_humans, day_clicks, day_humans")
    .await;
    let f: Vec<u64> = newest.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let eleven = Span::first_hours(fourth, 11);
    let usable = leaders::Usable {
        lists: vec![leaders::Listed { span: eleven, version: f[0], floor: f[2] }],
        unlisted: vec![],
        complete: false,
    };
    let plan = plan_for(&fourth_only.iter().map(|a| a.to_string()).collect::<Vec<_>>(), 0);
    let bounds = leaders::bounds_sql(&plan, &usable, 200);
    assert!(bounds.contains("link_leaders_hours") && !bounds.contains("link_clicks_daily"), "{bounds}");
    let mut sql = serde_json::Map::new();
    sql.insert("a-list".into(), json!(leaders::list_sql(eleven, f[0], f[1], f[2], (f[3], f[4]))));
    let mut expected = BTreeMap::new();
    for (name, statement) in [
        ("b-lists", leaders::hours_lists_sql(fourth, fourth.tomorrow().unwrap())),
        ("c-bounds", bounds),
        ("d-size", leaders::list_size_sql(eleven)),
        ("e-totals", leaders::span_totals_sql(eleven)),
    ] {
        sql.insert(name.into(), json!(statement));
        let mut want = tsv(&statement).await;
        if name == "b-lists" {
            // chdb holds only the newest list.
            want = want.lines().filter(|l| l.starts_with("2026-11-04\t11\t")).map(|l| format!("{l}\n")).collect();
        }
        expected.insert(name, want);
    }
    let chdb = common::run_chdb(&dir, &Value::Object(sql));
    for (name, want) in &expected {
        let got = chdb["results"][*name].as_str().unwrap();
        let sorted = |text: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert_eq!(sorted(got), sorted(want), "{name} differs on chdb {}", chdb["version"]);
        assert!(!want.trim().is_empty(), "{name} answered nothing");
    }

    // After midnight the 4th is listed whole, and no hours of the 5th are closed yet.
    let done = leaders::refresh(&config, at("2026-11-05T00:30:00Z"), 90, |_, _| {}).await.unwrap();
    assert_eq!((done.listed, done.first_hours), (vec![fourth], None));
    let answer = plain(ranges[0]).await;
    ch.query(hide).execute().await.unwrap();
    let whole = cli(ranges[0]);
    ch.query(show).execute().await.unwrap();
    assert_eq!(whole, answer);
}

/// A link's series by UTC day reads each closed day from the rollup's counts (`link_days`) while
/// the link's clicks of that day are those counted, and merges every other day from its hours.
/// Visitors come back across hours and days, so a day's visitors are not the sum of its hours'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_series_by_day_read_closed_days_from_link_days_on_both_engines() {
    use sinks::reports::link_days;
    let env = TestEnv::new("link-days");
    env.prepare();
    let ch = env.clickhouse();
    // 2026-11-01 to 2026-11-05 10:00 UTC, a click every 30 s spread over three links; 500
    // visitors, every seventh click a bot's.
    let (first, now_s) = (1_793_491_200_i64, 1_793_491_200_i64 + 4 * 86_400 + 10 * 3600);
    ch.query(&format!(
        "INSERT INTO clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
         SELECT number, toDateTime({first} + number * 30), 800000 + number % 3, concat('d', toString(number % 3)), \
         intHash64(number % 500), toUInt8(number % 7 = 0), 'direct' FROM numbers({})",
        (now_s - first) / 30
    ))
    .execute()
    .await
    .unwrap();
    let config = common::clickhouse_config(&common::clickhouse_url(), &env.database(), None);
    let now = jiff::Timestamp::from_second(now_s).unwrap();
    let day = |d: i8| jiff::civil::date(2026, 11, d);

    let done = link_days::refresh(&config, now, 90, |_, _| {}).await.unwrap();
    assert_eq!((done.days, done.current, done.rolled.clone()), (4, 0, (1..=4).map(day).collect()), "{done:?}");
    let tsv = async |sql: &str| {
        String::from_utf8(ch.query(sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap().to_vec()).unwrap()
    };
    // Every link's counts of each closed day and hour, against the same counted from the raw clicks.
    for (table, time, bucket, rows) in
        [("link_days", "day", "toDate(ts, 'UTC')", 12), ("link_hours", "hour", "toStartOfHour(ts, 'UTC')", 12 * 24)]
    {
        let stored = tsv(&format!(
            "SELECT link_id, {time}, clicks, human_clicks, visitors FROM {table} ORDER BY link_id, {time}"
        ))
        .await;
        let by_hand = tsv(&format!(
            "SELECT link_id, {bucket} AS t, count(), countIf(is_bot = 0), uniqIf(visitor_id, is_bot = 0) \
             FROM clicks WHERE ts < toDateTime({}) GROUP BY link_id, t ORDER BY link_id, t",
            first + 4 * 86_400
        ))
        .await;
        assert_eq!(stored, by_hand, "{table}");
        assert_eq!(stored.lines().count(), rows, "{table}");
    }
    let stored = tsv("SELECT visitors FROM link_days ORDER BY link_id, day").await;
    let daily_visitors: u64 = stored.lines().next().unwrap().parse().unwrap();
    assert!(daily_visitors < 500, "visitors come back within a day: {stored}");

    let series = async |link_id: u64, from: &str, to: &str, tz: &str| {
        let (tz, interval) = tz.split_once(' ').unwrap_or((tz, "day"));
        let args: Vec<String> = ["link", "--from", from, "--to", to, "--tz", tz, "--interval", interval]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let plan = plan_for(&args, link_id);
        let rolled = link_days::series(&config, &plan, link_id, now).await.unwrap().map(|t| sinks::reports::to_csv(&t));
        let plain = tsv(&plan.sql).await;
        (rolled, sinks::reports::to_csv(&plan.table_from_tsv(&plain).unwrap()))
    };
    // Closed days, today's hours up to 10:00, a range ending before today, one starting on a
    // closed day and ending later; zones at offset 0 only.
    for (from, to) in [("2026-11-01", "2026-11-05"), ("2026-11-02", "2026-11-03"), ("2026-11-04", "2026-11-30")] {
        let (rolled, plain) = series(800_001, from, to, "UTC").await;
        assert_eq!(rolled.as_deref(), Some(plain.as_str()), "{from}..{to}");
    }
    assert_eq!(
        series(800_001, "2026-11-01", "2026-11-05", "Asia/Tokyo").await.0,
        None,
        "Tokyo's days are not UTC days"
    );
    assert_eq!(series(800_001, "2026-11-05", "2026-11-05", "UTC").await.0, None, "no closed day in the range");
    // By hour, in any zone: the closed UTC days from `link_hours`, the partial ones merged.
    for (from, to, tz) in [
        ("2026-11-01", "2026-11-05", "UTC hour"),
        ("2026-11-02", "2026-11-04", "Asia/Tokyo hour"),
        ("2026-11-02", "2026-11-03", "Asia/Kolkata hour"),
    ] {
        let (rolled, plain) = series(800_001, from, to, tz).await;
        assert_eq!(rolled.as_deref(), Some(plain.as_str()), "{from}..{to} {tz}");
        assert!(plain.lines().count() > 48, "{plain}");
    }

    // The rows are what the report reads: a newer row with the same clicks and other visitors
    // shows up in the answer (and in the CLI's); a newer row with other clicks does not.
    let planted = |version: u64, clicks: &str, visitors: u64| {
        format!(
            "INSERT INTO link_days (link_id, day, version, clicks, human_clicks, visitors) \
             SELECT link_id, day, {version}, {clicks}, human_clicks, {visitors} FROM link_days \
             WHERE link_id = 800001 AND day = toDate('2026-11-02')"
        )
    };
    let (_, plain) = series(800_001, "2026-11-01", "2026-11-05", "UTC").await;
    ch.query(&planted(u64::MAX - 1, "clicks", 424_242)).execute().await.unwrap();
    let (rolled, _) = series(800_001, "2026-11-01", "2026-11-05", "UTC").await;
    let changed: Vec<_> = rolled.as_deref().unwrap().lines().filter(|l| !plain.contains(*l)).collect();
    assert_eq!(changed.len(), 1, "{rolled:?}");
    assert!(changed[0].starts_with("2026-11-02") && changed[0].ends_with(",424242"), "{changed:?}");
    let cli = report_csv(&env, &["link", "--link-id", "800001", "--from", "2026-11-01", "--to", "2026-11-04"]);
    assert!(cli.contains(",424242\n"), "{cli}");
    ch.query(&planted(u64::MAX, "clicks + 1", 424_243)).execute().await.unwrap();
    let (rolled, plain) = series(800_001, "2026-11-01", "2026-11-05", "UTC").await;
    assert_eq!(rolled.as_deref(), Some(plain.as_str()), "a row whose clicks are not the link's is not read");
    // The same for an hour's row: with the same clicks it is read, and a day whose hours' clicks
    // do not add up to the link's is merged whole.
    let planted = |version: u64, clicks: &str, visitors: u64| {
        format!(
            "INSERT INTO link_hours (link_id, hour, version, clicks, human_clicks, visitors) \
             SELECT link_id, hour, {version}, {clicks}, human_clicks, {visitors} FROM link_hours \
             WHERE link_id = 800001 AND hour = toDateTime({})",
            first + 86_400 + 5 * 3600
        )
    };
    let (_, plain) = series(800_001, "2026-11-01", "2026-11-05", "UTC hour").await;
    ch.query(&planted(u64::MAX - 1, "clicks", 434_343)).execute().await.unwrap();
    let (rolled, _) = series(800_001, "2026-11-01", "2026-11-05", "UTC hour").await;
    let changed: Vec<_> = rolled.as_deref().unwrap().lines().filter(|l| !plain.contains(*l)).collect();
    assert_eq!(changed.len(), 1, "{rolled:?}");
    assert!(changed[0].starts_with("2026-11-02T05:00") && changed[0].ends_with(",434343"), "{changed:?}");
    ch.query(&planted(u64::MAX, "clicks + 1", 434_344)).execute().await.unwrap();
    let (rolled, plain) = series(800_001, "2026-11-01", "2026-11-05", "UTC hour").await;
    assert_eq!(rolled.as_deref(), Some(plain.as_str()), "hours whose clicks are not the link's are not read");

    // A click stored late for the 3rd: that day of that link is merged from its hours, the answer
    // stays exact; the next rollup rolls the 3rd again, the one after has nothing to do.
    ch.query(&format!(
        "INSERT INTO clicks (event_id, ts, link_id, code, visitor_id, is_bot, channel) \
         VALUES (99999999, toDateTime({}), 800002, 'd2', 12345, 0, 'direct')",
        first + 2 * 86_400 + 5000
    ))
    .execute()
    .await
    .unwrap();
    for tz in ["UTC", "UTC hour"] {
        let (rolled, plain) = series(800_002, "2026-11-01", "2026-11-05", tz).await;
        assert_eq!(rolled.as_deref(), Some(plain.as_str()), "{tz}");
    }
    let done = link_days::refresh(&config, now, 90, |_, _| {}).await.unwrap();
    assert_eq!((done.current, done.rolled), (3, vec![day(3)]));
    let done = link_days::refresh(&config, now, 90, |_, _| {}).await.unwrap();
    assert_eq!((done.current, done.rolled.len()), (4, 0));
    let (rolled, plain) = series(800_002, "2026-11-01", "2026-11-05", "UTC").await;
    assert_eq!(rolled.as_deref(), Some(plain.as_str()));

    // The same statements on the current engine, from the same clicks.
    let dir = common::chdb_dir(&env, "chdb-link-days");
    let rows = ch.query("SELECT * FROM clicks").fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
    std::fs::write(dir.join("data").join("clicks.tsv"), rows).unwrap();
    let closed = (first, first + 4 * 86_400);
    let mut sql = serde_json::Map::new();
    let [roll_hours, roll_days] = link_days::roll_sql(day(3), 7);
    sql.insert("a-roll-1".into(), json!(roll_hours));
    sql.insert("a-roll-2".into(), json!(roll_days));
    let mut expected = BTreeMap::new();
    let third = first + 2 * 86_400;
    let (by_day, by_hour) = (link_days::Grain::Day, link_days::Grain::Hour);
    let rows = |grain| {
        format!("SELECT * FROM ({}) WHERE intDiv(b, 86400) = 20760", link_days::rows_sql(grain, 800_002, closed))
    };
    for (name, statement) in [
        ("b-rows", rows(by_day)),
        ("b-rows-hours", rows(by_hour)),
        ("c-counts", link_days::counts_sql(800_002, closed)),
        ("d-hours", link_days::hours_sql(by_day, 800_002, &[(first, first + 86_400), (first + 4 * 86_400, now_s)])),
        ("d-hours-hours", link_days::hours_sql(by_hour, 800_002, &[(third, third + 86_400)])),
    ] {
        sql.insert(name.into(), json!(statement));
        expected.insert(name, tsv(&statement).await);
    }
    let chdb = common::run_chdb(&dir, &Value::Object(sql));
    for (name, want) in &expected {
        let sorted = |text: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        assert_eq!(
            sorted(chdb["results"][*name].as_str().unwrap()),
            sorted(want),
            "{name} on chdb {}",
            chdb["version"]
        );
        assert!(!want.trim().is_empty(), "{name} answered nothing");
    }
}

/// A list made during a day: its cutoff is the start of an hour, so the customers of that day
/// come from three places (the hours before the cutoff from the list of new customers, the
/// later ones from the customers who paid since, the day's active customers from its hours) and
/// the days before it from the list of days. Each part is checked by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_with_a_cutoff_inside_a_day_answer_as_without_a_list() {
    use sinks::reports::new_customers;
    let env = TestEnv::new("cutoff");
    env.prepare();
    let ch = env.clickhouse();
    // The 9th: b's first order. The 10th: a at 03:00 (new), b at 04:00 (returning), then after
    // the 09:00 cutoff a again at 09:10 and c at 09:30 (new). And one order that was never paid.
    let orders = [
        ("1", "2026-11-09 05:00:00", "b", "paid"),
        ("2", "2026-11-10 03:00:00", "a", "paid"),
        ("3", "2026-11-10 04:00:00", "b", "paid"),
        ("4", "2026-11-10 09:10:00", "a", "paid"),
        ("5", "2026-11-10 09:30:00", "c", "paid"),
        ("6", "2026-11-10 02:00:00", "d", "created"),
    ];
    let values: Vec<String> = orders
        .iter()
        .map(|(id, at, customer, status)| {
            format!("('e{id}', toDateTime('{at}', 'UTC'), 'o{id}', '{customer}', '{status}', 'EUR', 100, 0, {id})")
        })
        .collect();
    ch.query(&format!(
        "INSERT INTO orders (event_id, ts, order_id, customer_id, status, currency, total, kafka_partition, kafka_offset) \
         VALUES {}",
        values.join(", ")
    ))
    .execute()
    .await
    .unwrap();
    let args: Vec<String> =
        ["customers", "--from", "2026-11-09", "--to", "2026-11-10"].iter().map(|a| a.to_string()).collect();
    let plan = plan_for(&args, 0);
    let answer = async |sql: &str| {
        let tsv = ch.query(sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
        sinks::reports::to_csv(&plan.table_from_tsv(&String::from_utf8_lossy(&tsv)).unwrap())
    };
    let plain = answer(&plan.sql).await;
    let rows: Vec<&str> = plain.lines().skip(1).collect();
    // time, new, returning, paid orders
    assert_eq!(rows.len(), 2, "{plain}");
    assert!(rows[0].ends_with(",1,0,1"), "the 9th: b new: {plain}");
    assert!(rows[1].ends_with(",2,1,4"), "the 10th: a and c new, b returning, four paid orders: {plain}");

    // The list as `runnel rollup` makes it at 09:40 on the 10th.
    let cutoff = new_customers::cutoff_at("2026-11-10T09:40:00Z".parse().unwrap());
    assert_eq!(cutoff, 1_794_301_200, "2026-11-10T09:00:00Z");
    let number = async |sql: String| {
        let tsv = ch.query(&sql).fetch_bytes("TabSeparated").unwrap().collect().await.unwrap();
        String::from_utf8_lossy(&tsv).trim().parse::<u64>().unwrap()
    };
    let before = number(new_customers::paid_before_sql(cutoff)).await;
    assert_eq!(before, 3, "paid before 09:00 on the 10th: one on the 9th, two on the 10th");
    for sql in [new_customers::list_sql(7, cutoff, before), new_customers::days_sql(7, cutoff)] {
        ch.query(&sql).execute().await.unwrap();
    }
    let new_before_cutoff =
        number("SELECT sum(new_customers) FROM new_customers_hourly WHERE version = 7".into()).await;
    assert_eq!(new_before_cutoff, 2, "b on the 9th and a on the 10th are listed, c (09:30) is not");
    let days = number("SELECT count() FROM active_customers_daily WHERE version = 7".into()).await;
    assert_eq!(days, 1, "the list of days holds the 9th only, not the 10th's first hours");
    let list = newest_customers_list(&ch).await;
    let listed = plan.customers_listed_sql(plan.fill.unwrap(), &list);
    assert!(listed.contains("active_customers_daily"), "{listed}");
    assert_eq!(answer(&listed).await, plain, "from the list with a cutoff at 09:00");

    // The CLI finds the list (the newest, and it holds) and answers the same.
    let (ok, out, err) =
        env.run(&["report", "customers", "--from", "2026-11-09", "--to", "2026-11-10", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(out, plain);
}
