//! The processors' configuration, from `RUNNEL_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use events::kafka::KafkaConfig;
use sinks::clickhouse::ClickhouseConfig;
use sinks::redis::RedisConfig;

use crate::ProcessError;

/// A pipeline `runnel process` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// `runnel.clicks` → ClickHouse `clicks` + Redis counters.
    Clicks,
    /// `runnel.orders` → ClickHouse `orders` + Redis counters.
    Orders,
    /// `runnel.links` → the Redis link index + ClickHouse `links`.
    Links,
}

/// Settings of `runnel process`.
#[derive(clap::Args, Clone, Debug)]
pub struct ProcessConfig {
    /// Pipelines to run, comma separated. Available: `clicks`, `orders`, `links`.
    #[arg(long, env = "RUNNEL_PIPELINES", default_value = "clicks,orders,links", value_delimiter = ',')]
    pub pipelines: Vec<String>,
    /// Prefix of consumer group ids: `{prefix}clicks`.
    #[arg(long, env = "RUNNEL_GROUP_PREFIX", default_value = "runnel-")]
    pub group_prefix: String,
    /// Flush a batch when it holds this many events.
    #[arg(long, env = "RUNNEL_BATCH_MAX_ROWS", default_value_t = 50_000)]
    pub batch_max_rows: usize,
    /// Flush a batch when its messages hold this many bytes.
    #[arg(long, env = "RUNNEL_BATCH_MAX_BYTES", default_value_t = 16 << 20)]
    pub batch_max_bytes: usize,
    /// Recent event ids remembered to store a repeated event once (0: off).
    #[arg(long, env = "RUNNEL_DEDUP_WINDOW_EVENTS", default_value_t = 1_000_000)]
    pub dedup_window_events: usize,
    /// Flush a batch when its oldest event waited this long, in milliseconds.
    #[arg(long, env = "RUNNEL_BATCH_MAX_AGE_MS", default_value_t = 1_000)]
    pub batch_max_age_ms: u64,
    /// Longest pause between retries of a failing sink, in milliseconds.
    #[arg(long, env = "RUNNEL_RETRY_MAX_BACKOFF_MS", default_value_t = 30_000)]
    pub retry_max_backoff_ms: u64,
    /// How long one flush keeps retrying failing sinks before it lets go of the batch and reads
    /// it again from Kafka, in milliseconds. Keeps the processor polling, hence in its group,
    /// through long outages (the group's poll interval is set to this plus a minute).
    #[arg(long, env = "RUNNEL_SINK_GIVE_UP_MS", default_value_t = 240_000)]
    pub sink_give_up_ms: u64,
    /// Consumer-group session timeout, in milliseconds: how long the group waits for a
    /// processor that vanished (crash, kill -9) before handing its partitions to the others.
    #[arg(long, env = "RUNNEL_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub kafka_session_timeout_ms: u64,
    /// Longest the broker may hold a fetch waiting for data, in milliseconds
    /// (`fetch.wait.max.ms`). Kafka answers as soon as any data is there; brokers that wait
    /// the full time (tansu 0.6 does) make this the pace of consumption.
    #[arg(long, env = "RUNNEL_KAFKA_FETCH_WAIT_MS", default_value_t = 100)]
    pub kafka_fetch_wait_ms: u64,
    /// Static group membership id (`group.instance.id`), unique per processor and stable
    /// across its restarts: a processor restarted under the same id takes its partitions back
    /// at once instead of waiting for the group to notice the old process is gone. Defaults
    /// to `runnel-{host name}`; processors sharing a host need distinct ids. `none`: dynamic
    /// membership (a processor stopped on purpose leaves the group at once, so scaling down
    /// moves its partitions without waiting for the session timeout).
    #[arg(long, env = "RUNNEL_PROCESSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// A MaxMind-format database (GeoLite2/GeoIP2 City or Country) for clicks' country and
    /// city; without one, the edge's CDN country header is used.
    #[arg(long, env = "RUNNEL_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,
    /// Secret keying visitor ids (a hash of IP and user agent under a key that changes daily).
    /// Unset: the first processor stores a random one in Redis and all share it.
    #[arg(long, env = "RUNNEL_VISITOR_SECRET", hide_env_values = true)]
    pub visitor_secret: Option<String>,
    /// Store the client IP (as the edge sent it) in ClickHouse; by default it stays in the
    /// processor and only the visitor id, country and city are stored.
    #[arg(long, env = "RUNNEL_PROCESS_STORE_IP", default_value_t = false, action = clap::ArgAction::Set)]
    pub store_ip: bool,
    /// Directory of the Parquet archive of raw click and order events
    /// (`topic=…/date=…/hour=…/p{partition}-{first}-{last}.parquet`); unset: no archive.
    #[arg(long, env = "RUNNEL_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
    /// Days the per-day Redis counters live after their day ends.
    #[arg(long, env = "RUNNEL_COUNTER_RETENTION_DAYS", default_value_t = 90)]
    pub counter_retention_days: u32,
    /// How often the clicks pipeline runs `runnel rollup` (each closed day's leading links, new
    /// customers per hour: what the top-links and customers reports read), in seconds; 0: never.
    #[arg(long, env = "RUNNEL_ROLLUP_INTERVAL_SECS", default_value_t = 300)]
    pub rollup_interval_secs: u64,
    /// Have ClickHouse write a batch's materialized views at once, on several of its threads
    /// (`parallel_view_processing`), instead of one after another: shorter flushes where the
    /// server has a core to spare. Off leaves ClickHouse one thread per INSERT.
    #[arg(long, env = "RUNNEL_CLICKHOUSE_PARALLEL_VIEWS", default_value_t = true, action = clap::ArgAction::Set)]
    pub clickhouse_parallel_views: bool,
    /// Address of the processors' `/metrics` endpoint.
    #[arg(long, env = "RUNNEL_PROCESS_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// ClickHouse.
    #[command(flatten)]
    pub clickhouse: ClickhouseConfig,
    /// Redis.
    #[command(flatten)]
    pub redis: RedisConfig,
}

impl ProcessConfig {
    /// Sets the consumer's static membership id unless membership is dynamic.
    pub(crate) fn set_membership(&self, consumer: &mut rdkafka::ClientConfig) {
        let id = self.instance_id();
        if id != "none" {
            consumer.set("group.instance.id", id);
        }
    }

    /// The static membership id: configured, or `runnel-{host name}`; `none` for dynamic.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("runnel-{}", host.trim())
        })
    }

    /// Checks every setting without I/O and returns the pipelines to run.
    pub fn pipelines(&self) -> Result<Vec<Pipeline>, ProcessError> {
        self.kafka.validate()?;
        self.clickhouse.validate()?;
        self.redis.validate()?;
        if self.batch_max_rows == 0 {
            return Err(ProcessError::Invalid {
                variable: "RUNNEL_BATCH_MAX_ROWS",
                reason: "must be at least 1".into(),
            });
        }
        if self.batch_max_bytes == 0 {
            return Err(ProcessError::Invalid {
                variable: "RUNNEL_BATCH_MAX_BYTES",
                reason: "must be at least 1".into(),
            });
        }
        if self.counter_retention_days == 0 {
            return Err(ProcessError::Invalid {
                variable: "RUNNEL_COUNTER_RETENTION_DAYS",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(path) = &self.geoip_db
            && !path.is_file()
        {
            return Err(ProcessError::Invalid {
                variable: "RUNNEL_GEOIP_DB",
                reason: format!("{} is not a readable file", path.display()),
            });
        }
        if self.batch_max_age_ms == 0 {
            return Err(ProcessError::Invalid {
                variable: "RUNNEL_BATCH_MAX_AGE_MS",
                reason: "must be at least 1".into(),
            });
        }
        let mut pipelines = Vec::new();
        for name in &self.pipelines {
            let pipeline = match name.trim() {
                "clicks" => Pipeline::Clicks,
                "orders" => Pipeline::Orders,
                "links" => Pipeline::Links,
                other => {
                    return Err(ProcessError::Invalid {
                        variable: "RUNNEL_PIPELINES",
                        reason: format!("unknown pipeline '{other}' (available: clicks, orders, links)"),
                    });
                }
            };
            if !pipelines.contains(&pipeline) {
                pipelines.push(pipeline);
            }
        }
        if pipelines.is_empty() {
            return Err(ProcessError::Invalid { variable: "RUNNEL_PIPELINES", reason: "no pipeline named".into() });
        }
        Ok(pipelines)
    }
}
