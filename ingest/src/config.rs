//! The edge's configuration: one struct, from `RUNNEL_*` environment variables.

use std::net::SocketAddr;

use events::kafka::KafkaConfig;
use sinks::clickhouse::ClickhouseConfig;
use sinks::redis::RedisConfig;

use crate::EdgeError;

/// The clicks topic's message layout (`events::click_batch`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickEncoding {
    /// NDJSON: one JSON object per click, several clicks per message.
    Ndjson,
    /// A compact batch: each distinct text once per message.
    Compact,
}

/// Settings of `runnel edge`.
#[derive(clap::Args, Clone, Debug)]
pub struct EdgeConfig {
    /// Address the edge listens on for redirects and the API.
    #[arg(long, env = "RUNNEL_EDGE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Address of the edge's `/metrics`, apart from traffic (keep it off the public network).
    #[arg(long, env = "RUNNEL_EDGE_METRICS_ADDR", default_value = "127.0.0.1:9463")]
    pub metrics_addr: SocketAddr,
    /// Base URL that short links are shown under in API answers (defaults to `http://{addr}`).
    #[arg(long, env = "RUNNEL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Worker number in event ids (0–1023); must differ between edges sharing a topic.
    /// Defaults to a number derived from host name and process id.
    #[arg(long, env = "RUNNEL_WORKER_ID")]
    pub worker_id: Option<u16>,
    /// Links kept in the in-process cache.
    #[arg(long, env = "RUNNEL_LINK_CACHE_CAPACITY", default_value_t = 100_000)]
    pub link_cache_capacity: u64,
    /// How long a cached link is trusted before it is read from Redis again, in milliseconds.
    #[arg(long, env = "RUNNEL_LINK_CACHE_TTL_MS", default_value_t = 5_000)]
    pub link_cache_ttl_ms: u64,
    /// `Cache-Control` header of redirects; `private, max-age=0` makes browsers come back, so
    /// every click is counted.
    #[arg(long, env = "RUNNEL_REDIRECT_CACHE_CONTROL", default_value = "private, max-age=0")]
    pub redirect_cache_control: String,
    /// Capture a click event for every redirect. Off, redirects are served and counted in
    /// metrics only (for maintenance, or to measure the redirect alone).
    #[arg(long, env = "RUNNEL_CAPTURE_CLICKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub capture_clicks: bool,
    /// How click events are written to the clicks topic: `compact`, a batch that writes each
    /// distinct text once per message (several times fewer bytes for the broker to store and
    /// serve, and cheaper to read), or `ndjson`, a JSON line per click (what any JSON consumer,
    /// ClickHouse's Kafka engine included, reads). Runnel's processors read both.
    #[arg(long, env = "RUNNEL_CLICK_ENCODING", value_enum, default_value_t = ClickEncoding::Compact)]
    pub click_encoding: ClickEncoding,
    /// Click events the producer may hold in memory while Kafka is slow or away.
    #[arg(long, env = "RUNNEL_PRODUCER_QUEUE_MESSAGES", default_value_t = 500_000)]
    pub producer_queue_messages: u32,
    /// Idempotent producers. Turn off only for brokers that mishandle the producer-epoch bump
    /// librdkafka makes after a delivery time-out or a purge (tansu 0.6 stops accepting that
    /// producer's writes); order is then kept with one request in flight, and duplicates of a
    /// retry are absorbed downstream by event id and link version.
    #[arg(long, env = "RUNNEL_KAFKA_IDEMPOTENCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_idempotence: bool,
    /// Directory of the click spool, where clicks wait while Kafka is unavailable. One per
    /// edge process; it must survive the process (not a tmpfs that a restart clears).
    #[arg(long, env = "RUNNEL_SPOOL_DIR", default_value = "runnel-spool")]
    pub spool_dir: std::path::PathBuf,
    /// Most bytes the click spool may hold; beyond it clicks are dropped and counted.
    #[arg(long, env = "RUNNEL_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
    /// How long shutdown waits for the producer to deliver what it holds, in milliseconds.
    #[arg(long, env = "RUNNEL_SHUTDOWN_FLUSH_MS", default_value_t = 10_000)]
    pub shutdown_flush_ms: u64,
    /// API keys, comma separated `name:sha256-hex:scope+scope` (scopes `links:read`,
    /// `links:write`, `orders:write`, `reports:read`). `runnel api-key` makes one. Without
    /// any, every `/api` request answers 401.
    #[arg(long, env = "RUNNEL_API_KEYS", default_value = "", hide_env_values = true)]
    pub api_keys: String,
    /// Link API requests per minute and key (0: unlimited).
    #[arg(long, env = "RUNNEL_RATE_LIMIT_LINKS_PER_MIN", default_value_t = 300)]
    pub rate_limit_links_per_min: u32,
    /// Order-intake requests per minute and key (0: unlimited).
    #[arg(long, env = "RUNNEL_RATE_LIMIT_ORDERS_PER_MIN", default_value_t = 20)]
    pub rate_limit_orders_per_min: u32,
    /// Report requests per minute and key (0: unlimited).
    #[arg(long, env = "RUNNEL_RATE_LIMIT_REPORTS_PER_MIN", default_value_t = 10)]
    pub rate_limit_reports_per_min: u32,
    /// Redirects per minute and client IP (0: unlimited, the default).
    #[arg(long, env = "RUNNEL_RATE_LIMIT_REDIRECTS_PER_MIN", default_value_t = 0)]
    pub rate_limit_redirects_per_min: u32,
    /// Largest link-API request body, in bytes.
    #[arg(long, env = "RUNNEL_LINKS_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub links_max_body_bytes: usize,
    /// Largest order-intake request body, in bytes.
    #[arg(long, env = "RUNNEL_ORDERS_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub orders_max_body_bytes: usize,
    /// Most order events in one request.
    #[arg(long, env = "RUNNEL_ORDERS_MAX_EVENTS", default_value_t = 10_000)]
    pub orders_max_events: usize,
    /// Proxies whose `X-Forwarded-For` is believed, comma separated CIDRs (e.g. `10.0.0.0/8`).
    #[arg(long, env = "RUNNEL_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Request header carrying the client's country from a CDN (e.g. `CF-IPCountry`); empty for none.
    #[arg(long, env = "RUNNEL_COUNTRY_HEADER", default_value = "")]
    pub country_header: String,
    /// Store client IPs whole instead of truncated to /24 (IPv4) or /48 (IPv6).
    #[arg(long, env = "RUNNEL_STORE_FULL_IP", default_value_t = false)]
    pub store_full_ip: bool,
    /// How long a client connection may wait between requests before the edge closes it, in
    /// milliseconds.
    #[arg(long, env = "RUNNEL_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// How long a client has to send a whole request head once it started one, in
    /// milliseconds; then it gets 408 and the connection closes (slow-header clients cannot hold
    /// connections open).
    #[arg(long, env = "RUNNEL_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Kafka.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// Redis (link index).
    #[command(flatten)]
    pub redis: RedisConfig,
    /// ClickHouse (stats).
    #[command(flatten)]
    pub clickhouse: ClickhouseConfig,
}

impl EdgeConfig {
    /// Checks every setting without I/O; the message names the variable.
    pub fn validate(&self) -> Result<(), EdgeError> {
        self.kafka.validate()?;
        self.redis.validate()?;
        self.clickhouse.validate()?;
        if self.worker_id.is_some_and(|w| w > 1023) {
            return Err(EdgeError::Invalid { variable: "RUNNEL_WORKER_ID", reason: "must be 0–1023".into() });
        }
        if self.link_cache_capacity == 0 {
            return Err(EdgeError::Invalid {
                variable: "RUNNEL_LINK_CACHE_CAPACITY",
                reason: "must be at least 1".into(),
            });
        }
        if axum::http::HeaderValue::from_str(&self.redirect_cache_control).is_err() {
            return Err(EdgeError::Invalid {
                variable: "RUNNEL_REDIRECT_CACHE_CONTROL",
                reason: "not a valid header value".into(),
            });
        }
        for (variable, ms) in
            [("RUNNEL_IDLE_TIMEOUT_MS", self.idle_timeout_ms), ("RUNNEL_HEADER_TIMEOUT_MS", self.header_timeout_ms)]
        {
            if ms == 0 {
                return Err(EdgeError::Invalid { variable, reason: "must be at least 1".into() });
            }
        }
        crate::auth::ApiKeys::parse(&self.api_keys)?;
        crate::client::parse_cidrs(&self.trusted_proxies)?;
        if !self.country_header.is_empty()
            && axum::http::HeaderName::from_bytes(self.country_header.as_bytes()).is_err()
        {
            return Err(EdgeError::Invalid { variable: "RUNNEL_COUNTRY_HEADER", reason: "not a header name".into() });
        }
        if let Some(url) = &self.public_url {
            url::Url::parse(url)
                .map_err(|e| EdgeError::Invalid { variable: "RUNNEL_PUBLIC_URL", reason: format!("'{url}': {e}") })?;
        }
        Ok(())
    }

    /// The worker number: configured, or derived from host name and process id.
    pub fn worker(&self) -> u16 {
        self.worker_id.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let seed = format!("{}:{}", host.trim(), std::process::id());
            (fnv1a(seed.as_bytes()) % 1024) as u16
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to spread host/pid pairs over 1024 workers.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}
