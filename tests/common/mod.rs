//! Test harness for end-to-end tests against the local stack (`scripts/stack up`).
//!
//! Every [`TestEnv`] isolates itself: its own topic prefix, consumer groups, ClickHouse
//! database and Redis key prefix, and its own ports, so tests run in parallel and leave
//! nothing behind. It runs the real `runnel` binary.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

pub const BIN: &str = env!("CARGO_BIN_EXE_runnel");
/// The API key every test edge admits with all scopes.
pub const KEY: &str = "rk_test_all_scopes";
/// A key with `links:read` only.
pub const READ_KEY: &str = "rk_test_links_read";

pub fn kafka_brokers() -> String {
    std::env::var("RUNNEL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}
pub fn clickhouse_url() -> String {
    std::env::var("RUNNEL_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}
/// The configuration the binary would build for ClickHouse at `url`, `database` (and `cluster`),
/// for tests that call the library's rollups at a fixed time.
pub fn clickhouse_config(url: &str, database: &str, cluster: Option<&str>) -> sinks::clickhouse::ClickhouseConfig {
    sinks::clickhouse::ClickhouseConfig {
        url: url.into(),
        database: database.into(),
        user: "default".into(),
        password: String::new(),
        cluster: cluster.map(Into::into),
        pool: Default::default(),
    }
}

pub fn redis_url() -> String {
    std::env::var("RUNNEL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A port nothing listens on, for a child process to bind. Taken below Linux's ephemeral range
/// (32768 and up): a port the kernel handed out by `bind(0)` can be handed again to any
/// outgoing connection (a Kafka client's, say) before the child binds it. Ports are handed out
/// in turn from a random start, so two tests of one binary never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, rand::rng().random_range(0..COUNT), Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One test's private slice of the stack.
pub struct TestEnv {
    pub id: String,
    pub edge_port: u16,
    pub metrics_port: u16,
    pub edge_metrics_port: u16,
    pub logs: PathBuf,
    children: Vec<Child>,
    extra_env: Vec<(String, String)>,
}

/// A running `runnel` process, killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().unwrap()
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    pub fn new(name: &str) -> Self {
        let id = format!(
            "t{}{:08x}",
            name.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>(),
            rand::rng().random::<u32>()
        );
        let logs = std::env::temp_dir().join(format!("runnel-tests/{id}"));
        std::fs::create_dir_all(&logs).unwrap();
        Self {
            id,
            edge_port: free_port(),
            metrics_port: free_port(),
            edge_metrics_port: free_port(),
            logs,
            children: Vec::new(),
            extra_env: Vec::new(),
        }
    }

    /// Adds an environment variable for every process started from now on.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.extra_env.push((key.into(), value.into()));
    }

    pub fn database(&self) -> String {
        format!("runnel_{}", self.id)
    }
    pub fn topic_prefix(&self) -> String {
        format!("{}.", self.id)
    }
    pub fn redis_prefix(&self) -> String {
        format!("{}:", self.id)
    }
    pub fn edge_metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.edge_metrics_port)
    }
    pub fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.edge_port)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("RUNNEL_KAFKA_BROKERS", kafka_brokers())
            .env("RUNNEL_CLICKHOUSE_URL", clickhouse_url())
            .env("RUNNEL_REDIS_URL", redis_url())
            .env("RUNNEL_TOPIC_PREFIX", self.topic_prefix())
            .env("RUNNEL_GROUP_PREFIX", format!("{}-", self.id))
            // One instance id per test: a restarted processor takes over from the one it replaces.
            .env("RUNNEL_PROCESSOR_INSTANCE_ID", format!("{}-p", self.id))
            .env("RUNNEL_CLICKHOUSE_DATABASE", self.database())
            .env("RUNNEL_REDIS_PREFIX", self.redis_prefix())
            .env("RUNNEL_EDGE_ADDR", format!("127.0.0.1:{}", self.edge_port))
            .env("RUNNEL_PROCESS_METRICS_ADDR", format!("127.0.0.1:{}", self.metrics_port))
            .env("RUNNEL_EDGE_METRICS_ADDR", format!("127.0.0.1:{}", self.edge_metrics_port))
            .env(
                "RUNNEL_API_KEYS",
                format!(
                    "all:{}:links:read+links:write+orders:write+reports:read,reader:{}:links:read",
                    ingest::hash_key(KEY),
                    ingest::hash_key(READ_KEY)
                ),
            )
            // Tests poll the API; limits are lowered only by the tests about limits.
            .env("RUNNEL_RATE_LIMIT_LINKS_PER_MIN", "100000")
            .env("RUNNEL_RATE_LIMIT_ORDERS_PER_MIN", "100000")
            .env("RUNNEL_RATE_LIMIT_REPORTS_PER_MIN", "100000")
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a one-shot subcommand and returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    /// Creates the topics and applies the migrations.
    pub fn prepare(&self) {
        let (ok, out, err) = self.run(&["topics"]);
        assert!(ok, "runnel topics failed:\n{out}\n{err}");
        let (ok, out, err) = self.run(&["migrate"]);
        assert!(ok, "runnel migrate failed:\n{out}\n{err}");
    }

    pub fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_command(name, self.command(args))
    }

    /// Starts `command` with its output in a log file of the test's.
    pub fn spawn_command(&self, name: &str, mut command: Command) -> Proc {
        let log = self
            .logs
            .join(format!("{name}-{}.log", Instant::now().elapsed().as_nanos() ^ rand::rng().random::<u32>() as u128));
        let file = std::fs::File::create(&log).unwrap();
        let child = command.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file)).spawn().unwrap();
        Proc { child, log }
    }

    /// Starts an edge and waits until it answers /healthz.
    pub async fn spawn_edge(&self) -> Proc {
        self.spawn_edge_at(self.edge_port).await
    }

    /// Starts an edge on `port` (a second edge of the same deployment).
    pub async fn spawn_edge_at(&self, port: u16) -> Proc {
        let log = self.logs.join(format!("edge-{port}-{}.log", rand::rng().random::<u32>()));
        let file = std::fs::File::create(&log).unwrap();
        self.spawn_edge_writing_to(port, file, log).await
    }

    /// Starts an edge on `port` with its output going to `output` (`log` names it in failures).
    pub async fn spawn_edge_writing_to(&self, port: u16, output: std::fs::File, log: PathBuf) -> Proc {
        let file = output;
        let child = self
            .command(&["edge"])
            .env("RUNNEL_EDGE_ADDR", format!("127.0.0.1:{port}"))
            // The first edge's metrics on `edge_metrics_port`, any other's on a port of its own.
            .env(
                "RUNNEL_EDGE_METRICS_ADDR",
                format!("127.0.0.1:{}", if port == self.edge_port { self.edge_metrics_port } else { free_port() }),
            )
            // One spool per edge; a restarted edge on the same port finds its spool again.
            .env("RUNNEL_SPOOL_DIR", self.logs.join(format!("spool-{port}")))
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let mut proc = Proc { child, log };
        let url = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return proc;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("edge exited with {status}:\n{}", proc.log_text());
            }
            assert!(Instant::now() < deadline, "edge did not answer within 30 s:\n{}", proc.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A processor of its own group member id and metrics port, beside the test's usual one.
    pub fn spawn_processor_named(&self, name: &str) -> Proc {
        self.spawn_processor_with_metrics(name, free_port())
    }

    /// A processor of its own group member id, serving its metrics on `metrics_port`.
    pub fn spawn_processor_with_metrics(&self, name: &str, metrics_port: u16) -> Proc {
        let mut command = self.command(&["process", "--pipelines", "clicks,orders,links"]);
        if self.setting("RUNNEL_PROCESSOR_INSTANCE_ID", String::new()) != "none" {
            command.env("RUNNEL_PROCESSOR_INSTANCE_ID", format!("{}-{name}", self.id));
        }
        command.env("RUNNEL_PROCESS_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"));
        self.spawn_command(&format!("process-{name}"), command)
    }

    pub fn spawn_processor(&self) -> Proc {
        self.spawn("process", &["process", "--pipelines", "clicks,orders,links"])
    }

    /// A setting as this test's processes see it: the test's own value, else `default`.
    fn setting(&self, key: &str, default: String) -> String {
        self.extra_env.iter().rev().find(|(k, _)| k == key).map_or(default, |(_, v)| v.clone())
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(self.setting("RUNNEL_CLICKHOUSE_URL", clickhouse_url()))
            .with_database(self.database())
            .with_validation(false)
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.setting("RUNNEL_REDIS_URL", redis_url()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// A field of a hash under this test's prefix (`clicks:{42}` `total`, say).
    pub async fn redis_hget(&self, key: &str, field: &str) -> Option<u64> {
        redis::cmd("HGET")
            .arg(format!("{}{key}", self.redis_prefix()))
            .arg(field)
            .query_async(&mut self.redis().await)
            .await
            .unwrap()
    }

    pub async fn ch_u64(&self, sql: &str) -> u64 {
        self.clickhouse().query(sql).fetch_one::<u64>().await.unwrap()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        // Leave nothing behind in ClickHouse and Redis. Best effort: a failed clean-up must not
        // hide the test's own result. Topics stay: tansu 0.6's DeleteTopics removes every topic
        // of the cluster, whatever name it is given (its `topic_delete_by.sql`), so tests never
        // call it; their topics carry the test's random prefix and are tiny.
        let database = self.database();
        let prefix = self.redis_prefix();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let ch = clickhouse::Client::default().with_url(clickhouse_url()).with_validation(false);
                let _ = ch.query(&format!("DROP DATABASE IF EXISTS {database}")).execute().await;
                if let Ok(client) = redis::Client::open(redis_url()) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        if !keys.is_empty() {
                            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                        }
                    }
                }
            });
        })
        .join()
        .ok();
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A browser's user agent (clicks from it count as human).
pub const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// Follows `/{code}` `times` times as `user_agent`; each answer must be a 302 within 2 s (a
/// redirect never waits on Kafka). Returns the request ids (the click event ids).
pub async fn follow(env: &TestEnv, code: &str, times: usize, user_agent: &str) -> Vec<u64> {
    let client = http();
    let mut ids = Vec::with_capacity(times);
    for _ in 0..times {
        let started = Instant::now();
        let response =
            client.get(format!("{}/{code}", env.edge_url())).header("user-agent", user_agent).send().await.unwrap();
        assert_eq!(response.status(), 302);
        assert!(started.elapsed() < Duration::from_secs(2), "a redirect waited {:?}", started.elapsed());
        ids.push(response.headers()["x-request-id"].to_str().unwrap().parse().unwrap());
    }
    ids
}

/// An API request with the all-scopes key.
pub fn api(method: reqwest::Method, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
    http().request(method, url).bearer_auth(KEY)
}

/// Creates a link through the API from a JSON body and returns the answer.
pub async fn create_link_with(env: &TestEnv, body: serde_json::Value) -> serde_json::Value {
    let response =
        api(reqwest::Method::POST, format!("{}/api/links", env.edge_url())).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "create link: {}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Creates a link through the API and returns (code, link_id).
pub async fn create_link(env: &TestEnv, url: &str) -> (String, u64) {
    let body = create_link_with(env, serde_json::json!({ "url": url })).await;
    (body["code"].as_str().unwrap().to_string(), body["link_id"].as_u64().unwrap())
}

/// Every message of `topic` (all `partitions`), read from the beginning until none has arrived
/// for `quiet`.
pub fn read_topic(brokers: &str, topic: &str, partitions: i32, quiet: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", rand::rng().random::<u32>()))
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            messages.push(message.detach());
            last = Instant::now();
        }
    }
    messages
}

/// A Kafka broker of one test's own (tansu on a free port, data in the test's folder), for
/// outage tests that must not disturb the shared broker.
pub struct PrivateBroker {
    pub brokers: String,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl PrivateBroker {
    pub fn start(env: &TestEnv) -> Self {
        let port = free_port();
        let dir = env.logs.join(format!("broker-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self { brokers: format!("127.0.0.1:{port}"), child: None, port, dir };
        broker.restart();
        broker
    }

    /// Starts the broker (again, on the same data) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.join("tansu.log")).unwrap();
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new("tansu")
            .args([
                "broker",
                "--storage-engine",
                "sqlite://tansu.db",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &listener,
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tansu is installed (scripts/stack up installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private broker did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the broker at once.
    pub fn stop(&mut self) {
        stop_child(&mut self.child, false);
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is answered, as from a
    /// coordinator that stopped responding.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the broker runs");
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {signal} the broker");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server of one test's own, for outage tests.
pub struct PrivateRedis {
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start(env: &TestEnv) -> Self {
        let port = free_port();
        let dir = env.logs.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self { url: format!("redis://127.0.0.1:{port}"), port, dir, child: None };
        redis.restart();
        redis
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/stack up installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "private redis");
    }

    /// Stops the server (gracefully: its append-only file keeps every write).
    pub fn stop(&mut self) {
        stop_child(&mut self.child, true);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        stop_child(&mut self.child, false);
    }
}

/// A ClickHouse server of one test's own (the Debian package's server with its own ports and
/// data folder), for outage tests.
pub struct PrivateClickhouse {
    pub url: String,
    http_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl PrivateClickhouse {
    pub fn start(env: &TestEnv) -> Self {
        let http_port = free_port();
        let dir = env.logs.join(format!("clickhouse-{http_port}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let template =
            std::fs::read_to_string("/etc/clickhouse-server/config.xml").expect("clickhouse-server is installed");
        let config = template
            .replace("/var/lib/clickhouse/", &format!("{}/data/", dir.display()))
            .replace("/var/log/clickhouse-server/", &format!("{}/", dir.display()))
            .replace("<listen_host>::1</listen_host>", "")
            .replace("<http_port>8123</http_port>", &format!("<http_port>{http_port}</http_port>"))
            .replace("<tcp_port>9000</tcp_port>", &format!("<tcp_port>{}</tcp_port>", free_port()))
            .replace(
                "<interserver_http_port>9009</interserver_http_port>",
                &format!("<interserver_http_port>{}</interserver_http_port>", free_port()),
            );
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::copy("/etc/clickhouse-server/users.xml", dir.join("users.xml")).unwrap();
        let mut server = Self {
            url: format!("http://127.0.0.1:{http_port}"),
            http_port,
            config: dir.join("config.xml"),
            child: None,
        };
        server.restart();
        server
    }

    pub fn restart(&mut self) {
        let child = Command::new("/usr/sbin/clickhouse-server")
            .arg(format!("--config-file={}", self.config.display()))
            .current_dir(self.config.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server is installed");
        self.child = Some(child);
        wait_for_port(self.http_port, "private clickhouse");
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child, true);
    }
}

impl Drop for PrivateClickhouse {
    fn drop(&mut self) {
        stop_child(&mut self.child, false);
    }
}

/// Stops a server of a test's own and waits for it: SIGTERM when `graceful` (it flushes what
/// it holds), else SIGKILL.
fn stop_child(child: &mut Option<Child>, graceful: bool) {
    if let Some(mut child) = child.take() {
        if graceful {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        } else {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Prometheus text a process serves on `port`, empty when it does not answer.
pub async fn scrape(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of a metric line in Prometheus text, 0 when absent.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A directory for queries on a current ClickHouse engine (chdb-core, in process): the schema
/// with its newer-server statements (`runnel schema --server 26.9`) in `schema.json`, and
/// `data/` for raw rows (`<table>.tsv`) to load through the raw tables.
pub fn chdb_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.logs.join(name);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let (ok, schema, err) = env.run(&["schema", "--server", "26.9"]);
    assert!(ok, "{err}");
    std::fs::write(dir.join("schema.json"), schema).unwrap();
    dir
}

/// Runs `queries` (name → SQL) there with `tests/chdb_reports.py`; returns
/// `{"version", "results": {name: TabSeparated}}` and fails the test naming a refused query.
pub fn run_chdb(dir: &std::path::Path, queries: &serde_json::Value) -> serde_json::Value {
    std::fs::write(dir.join("queries.json"), queries.to_string()).unwrap();
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chdb_reports.py"))
        .args([dir.join("schema.json"), dir.join("data"), dir.join("queries.json")])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(output.status.success(), "chdb: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}
