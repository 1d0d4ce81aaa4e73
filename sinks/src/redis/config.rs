//! Redis connection settings.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

use crate::SinkError;

/// How to reach Redis and how to name keys.
#[derive(clap::Args, Clone, Debug)]
pub struct RedisConfig {
    /// Redis URL.
    #[arg(id = "redis_url", long = "redis-url", env = "RUNNEL_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// Prefix of every key Runnel writes (lets several deployments or tests share one Redis).
    #[arg(id = "redis_prefix", long = "redis-prefix", env = "RUNNEL_REDIS_PREFIX", default_value = "")]
    pub prefix: String,
    /// Timeout of one Redis command, in milliseconds.
    #[arg(
        id = "redis_timeout_ms",
        long = "redis-timeout-ms",
        env = "RUNNEL_REDIS_TIMEOUT_MS",
        default_value_t = 2_000
    )]
    pub timeout_ms: u64,
}

impl RedisConfig {
    /// Checks the settings without I/O.
    pub fn validate(&self) -> Result<(), SinkError> {
        redis::Client::open(self.url.as_str())
            .map_err(|e| SinkError::Invalid { variable: "RUNNEL_REDIS_URL", reason: format!("'{}': {e}", self.url) })?;
        Ok(())
    }

    /// Connects (and pings): fails with a message naming Redis when it does not answer.
    /// The connection reconnects by itself after that.
    pub async fn connect(&self) -> Result<ConnectionManager, SinkError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| self.error(e))?;
        let timeout = Duration::from_millis(self.timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let mut conn = ConnectionManager::new_with_config(client, config).await.map_err(|e| self.error(e))?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| self.error(e))?;
        Ok(conn)
    }

    /// A client for connections of other kinds (pub/sub).
    pub fn client(&self) -> Result<redis::Client, SinkError> {
        redis::Client::open(self.url.as_str()).map_err(|e| self.error(e))
    }

    /// Wraps a client error with the server's address.
    pub(crate) fn error(&self, source: redis::RedisError) -> SinkError {
        SinkError::Redis { url: self.url.clone(), source }
    }

    /// `{prefix}{rest}`.
    pub(crate) fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}{}", self.prefix, rest)
    }
}
