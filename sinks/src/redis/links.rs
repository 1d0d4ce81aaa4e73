//! The link index: `link:{code}` holds the latest link event of that code, as JSON.

use events::LinkEvent;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::RedisConfig;
use crate::SinkError;

/// Reads and writes the link index.
#[derive(Clone)]
pub struct LinkIndex {
    config: RedisConfig,
    conn: ConnectionManager,
}

impl LinkIndex {
    /// An index over an open connection.
    pub fn new(config: RedisConfig, conn: ConnectionManager) -> Self {
        Self { config, conn }
    }

    fn key(&self, code: &str) -> String {
        self.config.key(format_args!("link:{{{code}}}"))
    }

    /// Stores a new link if its code is free; `false` when another link holds the code.
    /// Atomic (`SET NX`): of two creators of one code exactly one wins.
    pub async fn claim(&self, link: &LinkEvent) -> Result<bool, SinkError> {
        let json = serde_json::to_string(link).expect("link event serializes");
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&link.code))
            .arg(json)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(set.is_some())
    }

    /// The current state of `code`, if any.
    pub async fn get(&self, code: &str) -> Result<Option<LinkEvent>, SinkError> {
        let key = self.key(code);
        let json: Option<String> = self.conn.clone().get(&key).await.map_err(|e| self.config.error(e))?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| SinkError::Corrupt { key, reason: e.to_string() }))
            .transpose()
    }

    /// Removes `link` from the index if the index still holds exactly this version (undoes a
    /// [`claim`](Self::claim) whose event could not be recorded).
    pub async fn release(&self, link: &LinkEvent) -> Result<(), SinkError> {
        let json = serde_json::to_string(link).expect("link event serializes");
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.key(&link.code))
        .arg(json)
        .invoke_async::<i64>(&mut self.conn.clone())
        .await
        .map(|_| ())
        .map_err(|e| self.config.error(e))
    }

    /// Checks that Redis answers.
    pub async fn ping(&self) -> Result<(), SinkError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(|e| self.config.error(e))
    }
}
