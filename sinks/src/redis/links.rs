//! The link index: `link:{code}` is a hash with the latest version of the code's link (`ver`,
//! its event id, and `json`, the link event); `links:all` lists every link in creation order
//! for cursor pagination; `links:changed` is the pub/sub channel edges listen on to drop a
//! changed link from their caches.
//!
//! Versions are compared in Lua as decimal strings of equal length: Snowflake ids exceed the
//! 2^53 that Lua numbers hold exactly.

use events::LinkEvent;
use redis::Script;
use redis::aio::ConnectionManager;

use super::RedisConfig;
use crate::SinkError;

/// KEYS[1] link hash, KEYS[2] list; ARGV[1] version, ARGV[2] json, ARGV[3] list member.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1], 'json', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return 1
";

/// KEYS[1] link hash, KEYS[2] list; ARGV as for CLAIM. Writes only a newer version.
const PUT: &str = r"
local cur = redis.call('HGET', KEYS[1], 'ver')
if cur and (#cur > #ARGV[1] or (#cur == #ARGV[1] and cur >= ARGV[1])) then return 0 end
redis.call('HSET', KEYS[1], 'ver', ARGV[1], 'json', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return 1
";

/// KEYS[1] link hash, KEYS[2] list; ARGV[1] version, ARGV[2] list member.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'ver') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 1
end
return 0
";

/// One page of links.
#[derive(Debug)]
pub struct LinkPage {
    /// The links, oldest first.
    pub links: Vec<LinkEvent>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

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

    fn list_key(&self) -> String {
        self.config.key(format_args!("links:all"))
    }

    /// The pub/sub channel announcing changed codes.
    pub fn channel(&self) -> String {
        self.config.key(format_args!("links:changed"))
    }

    fn member(link: &LinkEvent) -> String {
        // Zero-padded so lexicographic order is creation order.
        format!("{:020}:{}", link.link_id, link.code)
    }

    async fn run(&self, script: &str, link: &LinkEvent) -> Result<bool, SinkError> {
        let json = serde_json::to_string(link).expect("link event serializes");
        let done: i64 = Script::new(script)
            .key(self.key(&link.code))
            .key(self.list_key())
            .arg(link.id.to_string())
            .arg(json)
            .arg(Self::member(link))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(done == 1)
    }

    /// Stores a new link if its code is free; `false` when another link holds the code.
    /// Atomic: of any number of creators of one code exactly one wins.
    pub async fn claim(&self, link: &LinkEvent) -> Result<bool, SinkError> {
        self.run(CLAIM, link).await
    }

    /// Stores `link` unless the index already holds this or a newer version of its code;
    /// returns whether it was written.
    pub async fn put(&self, link: &LinkEvent) -> Result<bool, SinkError> {
        self.run(PUT, link).await
    }

    /// Removes `link` if the index still holds exactly this version (undoes a
    /// [`claim`](Self::claim) whose event could not be recorded).
    pub async fn release(&self, link: &LinkEvent) -> Result<(), SinkError> {
        Script::new(RELEASE)
            .key(self.key(&link.code))
            .key(self.list_key())
            .arg(link.id.to_string())
            .arg(Self::member(link))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(|e| self.config.error(e))
    }

    /// The current state of `code`, if any.
    pub async fn get(&self, code: &str) -> Result<Option<LinkEvent>, SinkError> {
        let key = self.key(code);
        let json: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("json")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        json.map(|json| decode(&key, &json)).transpose()
    }

    /// Up to `limit` links after `cursor` (from a previous page), oldest first.
    pub async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<LinkPage, SinkError> {
        let start = cursor.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.list_key())
            .arg(start)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        let mut pipe = redis::pipe();
        for member in &members {
            let code = member.split_once(':').map_or(member.as_str(), |(_, code)| code);
            pipe.cmd("HGET").arg(self.key(code)).arg("json");
        }
        let values: Vec<Option<String>> = if members.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.config.error(e))?
        };
        let links = members
            .iter()
            .zip(values)
            .filter_map(|(member, json)| json.map(|json| decode(member, &json)))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = (members.len() == limit).then(|| members.last().cloned()).flatten();
        Ok(LinkPage { links, next_cursor })
    }

    /// Tells every edge that `code` changed.
    pub async fn announce(&self, code: &str) -> Result<(), SinkError> {
        redis::cmd("PUBLISH")
            .arg(self.channel())
            .arg(code)
            .query_async::<i64>(&mut self.conn.clone())
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

fn decode(key: &str, json: &str) -> Result<LinkEvent, SinkError> {
    serde_json::from_str(json).map_err(|e| SinkError::Corrupt { key: key.to_string(), reason: e.to_string() })
}
