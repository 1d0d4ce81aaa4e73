//! What operators see is true and complete: `docs/metrics.md` lists exactly what a running edge
//! and processor export (names, types, labels); every metric a Grafana dashboard or Prometheus
//! rule uses is listed; every ClickHouse panel query runs on 18.16 and on a current engine
//! (chdb-core); promtool accepts the Prometheus config and rules and passes the rules' unit tests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{BROWSER, KEY, TestEnv, create_link, eventually, follow, http};
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A metric family as documented or as scraped: type and label names.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The tables of docs/metrics.md, per section (`Edge`, `Processors`, `Process`).
fn catalogue() -> BTreeMap<String, BTreeMap<String, Family>> {
    let text = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let mut sections: BTreeMap<String, BTreeMap<String, Family>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.split_whitespace().next().unwrap().to_string();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let labels = cells[3].split(',').map(|l| l.trim().trim_matches('`').to_string()).filter(|l| !l.is_empty());
        sections.entry(section.clone()).or_default().insert(
            cells[1].trim_matches('`').to_string(),
            Family { kind: cells[2].to_string(), labels: labels.collect() },
        );
    }
    sections
}

/// The families of a Prometheus text exposition.
fn scraped(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(name.to_string(), Family { kind: kind.to_string(), labels: BTreeSet::new() });
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|base| families.contains_key(*base)))
            .unwrap_or(name);
        let entry = families.get_mut(family).unwrap_or_else(|| panic!("a sample of an undeclared family: {line}"));
        for pair in labels.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
            let label = pair.split('=').next().unwrap().trim_matches(',');
            if label != "le" && label != "quantile" {
                entry.labels.insert(label.to_string());
            }
        }
    }
    families
}

fn compare(binary: &str, exported: &BTreeMap<String, Family>, documented: &BTreeMap<String, Family>) {
    for (name, family) in exported {
        let doc = documented
            .get(name)
            .unwrap_or_else(|| panic!("{binary} exports {name}, which docs/metrics.md does not list"));
        assert_eq!(family, doc, "{binary}: {name} is exported as {family:?}, documented as {doc:?}");
    }
    for name in documented.keys() {
        assert!(exported.contains_key(name), "docs/metrics.md lists {name}, which {binary} does not export");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_catalogue_is_what_the_edge_and_processor_export() {
    let env = TestEnv::new("metrics");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();

    // A workload touching every path that creates a series: redirects (found and unknown),
    // link lookups, order events (accepted and invalid), flushes of both pipelines.
    let (code, _) = create_link(&env, "https://shop.example/metrics").await;
    follow(&env, &code, 5, BROWSER).await;
    assert_eq!(http().get(format!("{}/no-such-code", env.edge_url())).send().await.unwrap().status(), 404);
    let order = json!({"event_id": "m-1", "order_id": "mo-1", "customer_id": "c1", "status": "paid", "currency": "EUR",
        "items": [{"product_id": "p1", "sku": "S1", "quantity": 1, "unit_price": 100}],
        "totals": {"subtotal": 100, "tax": 0, "shipping": 0, "discount": 0, "total": 100}, "time": "2026-11-20T10:00:00Z"});
    for (body, status) in [(order.to_string(), 202), ("{\"event_id\": 1}".to_string(), 400)] {
        let response = http()
            .post(format!("{}/api/orders/events", env.edge_url()))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    let processor_url = format!("http://127.0.0.1:{}/metrics", env.metrics_port);
    let flushed = eventually(Duration::from_secs(60), || async {
        let text = http().get(&processor_url).send().await.unwrap().text().await.unwrap();
        ["clicks", "orders"].iter().all(|p| {
            text.contains(&format!(
                "runnel_processor_flush_duration_seconds_count{{pipeline=\"{p}\",sink=\"clickhouse\"}}"
            ))
        })
    })
    .await;
    assert!(flushed, "both pipelines flushed");
    // Process metrics are refreshed every 5 s; the lag gauge comes with librdkafka's statistics.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let docs = catalogue();
    let process = &docs["Process"];
    let edge_text = http().get(env.edge_metrics_url()).send().await.unwrap().text().await.unwrap();
    let processor_text = http().get(&processor_url).send().await.unwrap().text().await.unwrap();
    for (binary, text, section) in [("the edge", &edge_text, "Edge"), ("the processor", &processor_text, "Processors")]
    {
        let mut documented = docs[section].clone();
        documented.extend(process.clone());
        compare(binary, &scraped(text), &documented);
    }
}

/// Metric names a PromQL text uses (Runnel's and the process metrics; `up` is Prometheus').
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("runnel_") || w.starts_with("process_"))
        .map(|w| ["_bucket", "_sum", "_count"].iter().find_map(|s| w.strip_suffix(s)).unwrap_or(w).to_string())
        .collect()
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((path.file_name().unwrap().to_string_lossy().to_string(), dashboard));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(), ["business.json", "edge.json", "pipeline.json"]);
    out
}

/// The ClickHouse query with the grafana-clickhouse-datasource macros and the dashboard's
/// variables replaced as Grafana would (a fixed week of November 2026).
fn expand(sql: &str, variables: &BTreeMap<String, String>) -> String {
    let (from, to) = (1_794_182_400_i64, 1_794_787_200_i64); // 2026-11-09 .. 2026-11-16 UTC
    let mut out =
        sql.replace("$__fromTime", &format!("toDateTime({from})")).replace("$__toTime", &format!("toDateTime({to})"));
    for (macro_name, render) in [
        (
            "$__timeFilter(",
            (|c: &str, f: i64, t: i64| format!("{c} >= toDateTime({f}) AND {c} <= toDateTime({t})"))
                as fn(&str, i64, i64) -> String,
        ),
        ("$__dateFilter(", |c: &str, _, _| format!("{c} >= toDate('2026-11-09') AND {c} <= toDate('2026-11-16')")),
    ] {
        while let Some(at) = out.find(macro_name) {
            let close = at + out[at..].find(')').unwrap();
            let column = out[at + macro_name.len()..close].trim().to_string();
            out.replace_range(at..=close, &render(&column, from, to));
        }
    }
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "a macro or variable the test does not know:\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_catalogued_metrics_and_their_clickhouse_queries_run_on_both_engines() {
    let documented: BTreeSet<String> = catalogue().into_values().flat_map(|s| s.into_keys()).collect();

    // Prometheus: every metric of every panel and rule is one the binaries export.
    let mut used = BTreeSet::new();
    let mut clickhouse_queries = BTreeMap::new();
    for (file, dashboard) in dashboards() {
        let variables: BTreeMap<String, String> = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), v["current"]["value"].as_str().unwrap().to_string()))
            .collect();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                match target["datasource"]["type"].as_str().unwrap() {
                    "prometheus" => {
                        let names = metric_names(target["expr"].as_str().unwrap());
                        assert!(!names.is_empty(), "{file}: panel {} queries no Runnel metric", panel["title"]);
                        used.extend(names);
                    }
                    "grafana-clickhouse-datasource" => {
                        let key = format!("{file}: {}", panel["title"].as_str().unwrap());
                        clickhouse_queries.insert(key, expand(target["rawSql"].as_str().unwrap(), &variables));
                    }
                    other => panic!("{file}: a panel with datasource {other}"),
                }
            }
        }
    }
    let rules = std::fs::read_to_string(repo("compose/prometheus/rules.yml")).unwrap();
    let rule_metrics = metric_names(&rules);
    assert!(rule_metrics.len() >= 8, "{rule_metrics:?}");
    used.extend(rule_metrics);
    let unknown: Vec<&String> = used.difference(&documented).collect();
    assert!(unknown.is_empty(), "dashboards or alerts use metrics nobody exports: {unknown:?}");
    assert!(clickhouse_queries.len() >= 8, "{clickhouse_queries:?}");

    // ClickHouse 18.16: the schema of `runnel migrate` with a few rows through the processors.
    let env = TestEnv::new("grafana");
    env.prepare();
    let _edge = env.spawn_edge().await;
    let _processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://shop.example/grafana").await;
    follow(&env, &code, 3, BROWSER).await;
    assert!(
        eventually(Duration::from_secs(60), || async { env.ch_u64("SELECT count() FROM clicks").await == 3 }).await
    );
    let ch = env.clickhouse();
    for (name, sql) in &clickhouse_queries {
        if let Err(error) = ch.query(sql).fetch_bytes("TabSeparated").unwrap().collect().await {
            panic!("{name} fails on ClickHouse 18.16: {error}\n{sql}");
        }
    }

    // The current engine: the schema with its newer-server statements, the same queries.
    let dir = common::chdb_dir(&env, "chdb-grafana");
    common::run_chdb(&dir, &json!(clickhouse_queries));
}

fn promtool(args: &[&str]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo("compose/prometheus"))
        .output()
        .expect("promtool is installed (scripts/test installs Debian's prometheus package)");
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool_and_their_unit_tests() {
    promtool(&["check", "config", "prometheus.yml"]);
    let rules = promtool(&["check", "rules", "rules.yml"]);
    // promtool read every rule in the file: none was skipped as unparsable.
    let written = std::fs::read_to_string(repo("compose/prometheus/rules.yml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim().starts_with("- alert: ") || l.trim().starts_with("- record: "))
        .count();
    assert!(written >= 11, "rules.yml holds {written} rules");
    assert!(rules.contains(&format!("SUCCESS: {written} rules found")), "{rules}");
    let tests = promtool(&["test", "rules", "rules.test.yml"]);
    assert!(tests.contains("SUCCESS"), "{tests}");
    // Every alert has a unit test.
    let alerts: BTreeSet<&str> = std::fs::read_to_string(repo("compose/prometheus/rules.yml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|a| Box::leak(a.to_string().into_boxed_str()) as &str)
        .collect();
    let tested = std::fs::read_to_string(repo("compose/prometheus/rules.test.yml")).unwrap();
    for alert in alerts {
        assert!(tested.contains(&format!("alertname: {alert}")), "{alert} has no unit test in rules.test.yml");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_the_pipeline() {
    let mut env = TestEnv::new("logs");
    env.set("RUNNEL_LOG_FORMAT", "json");
    env.set("RUST_LOG", "info,runnel_ingest=debug");
    env.prepare();
    let edge = env.spawn_edge().await;
    let processor = env.spawn_processor();
    let (code, _) = create_link(&env, "https://shop.example/logs").await;
    let response = http().get(format!("{}/{code}", env.edge_url())).send().await.unwrap();
    let id: u64 = response.headers()["x-request-id"].to_str().unwrap().parse().unwrap();

    let lines = |text: String| -> Vec<Value> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l}")))
            .collect()
    };
    let span_field = |line: &Value, span: &str, field: &str| -> Option<Value> {
        line["spans"].as_array()?.iter().find(|s| s["name"] == span).map(|s| s[field].clone())
    };
    let served = eventually(Duration::from_secs(5), || {
        let text = edge.log_text();
        async move {
            lines(text)
                .iter()
                .any(|l| l["message"] == "request served" && span_field(l, "request", "request_id") == Some(json!(id)))
        }
    })
    .await;
    assert!(served, "no `request served` line with request_id {id}:\n{}", edge.log_text());
    let assigned = eventually(Duration::from_secs(30), || {
        let text = processor.log_text();
        async move {
            lines(text).iter().any(|l| {
                l["message"].as_str().is_some_and(|m| m.starts_with("partitions assigned"))
                    && span_field(l, "pipeline", "pipeline") == Some(json!("clicks"))
            })
        }
    })
    .await;
    assert!(assigned, "no pipeline-tagged assignment line:\n{}", processor.log_text());
}

#[test]
fn the_compose_stack_and_dockerfile_hold_together() {
    let output =
        std::process::Command::new("python3").arg(repo("tests/check_compose.py")).arg(repo("")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let commands: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    assert_eq!(commands, ["edge", "migrate", "process", "topics"]);
    // Every command a service runs is one the binary has.
    for command in &commands {
        let status =
            std::process::Command::new(env!("CARGO_BIN_EXE_runnel")).args([command, "--help"]).output().unwrap();
        assert!(status.status.success(), "runnel {command} --help: {}", String::from_utf8_lossy(&status.stderr));
    }
}
