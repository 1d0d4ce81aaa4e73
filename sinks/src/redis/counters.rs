//! Click counters with an offset fence: one Lua script applies a partition's increments and
//! advances that partition's fence together, and skips a batch it has already applied.

use redis::Script;
use redis::aio::ConnectionManager;

use super::RedisConfig;
use crate::{Fences, SinkError};

/// KEYS[1] the fence, KEYS[2..] counters; ARGV[1] first offset, ARGV[2] last offset,
/// ARGV[3..] increments for KEYS[2..]. Returns {status, fence}: 1 applied, 0 already applied,
/// -1 the fence lies inside the batch (the caller drops what is stored and calls again).
const APPLY: &str = r"
local fence = tonumber(redis.call('GET', KEYS[1]) or '-1')
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
if fence >= last then return {0, fence} end
if fence >= first then return {-1, fence} end
for i = 2, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[2])
return {1, last}
";

/// What [`ClickCounters::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Counted; the fence is now the batch's last offset.
    Applied,
    /// The fence was already at or past the batch: nothing changed.
    AlreadyApplied,
    /// The fence lies inside the batch: nothing changed; only offsets above it may be applied.
    Overlap { fence: i64 },
}

/// The per-link click counters.
#[derive(Clone)]
pub struct ClickCounters {
    config: RedisConfig,
    conn: ConnectionManager,
    script: Script,
}

impl ClickCounters {
    /// Counters over an open connection.
    pub fn new(config: RedisConfig, conn: ConnectionManager) -> Self {
        Self { config, conn, script: Script::new(APPLY) }
    }

    fn fence_key(&self, source: &str, partition: i32) -> String {
        self.config.key(format_args!("fence:{source}:{partition}"))
    }

    /// `clicks:{link_id}`: every click of the link.
    pub fn clicks_key(&self, link_id: u64) -> String {
        self.config.key(format_args!("clicks:{{{link_id}}}"))
    }

    /// Adds `increments` (link id, clicks) from offsets `first..=last` of one partition, once.
    pub async fn apply(
        &self,
        source: &str,
        partition: i32,
        first: i64,
        last: i64,
        increments: &[(u64, u64)],
    ) -> Result<ApplyOutcome, SinkError> {
        let mut invocation = self.script.key(self.fence_key(source, partition));
        invocation.arg(first).arg(last);
        for (link_id, _) in increments {
            invocation.key(self.clicks_key(*link_id));
        }
        for (_, count) in increments {
            invocation.arg(*count);
        }
        let (status, fence): (i64, i64) =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(|e| self.config.error(e))?;
        Ok(match status {
            1 => ApplyOutcome::Applied,
            0 => ApplyOutcome::AlreadyApplied,
            _ => ApplyOutcome::Overlap { fence },
        })
    }

    /// The fences of `partitions` for `source`; partitions never applied are absent.
    pub async fn fences(&self, source: &str, partitions: &[i32]) -> Result<Fences, SinkError> {
        if partitions.is_empty() {
            return Ok(Fences::new());
        }
        let keys: Vec<String> = partitions.iter().map(|p| self.fence_key(source, *p)).collect();
        let values: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(partitions.iter().zip(values).filter_map(|(p, v)| v.map(|v| (*p, v))).collect())
    }

    /// Total clicks counted for `link_id`.
    pub async fn clicks(&self, link_id: u64) -> Result<u64, SinkError> {
        let value: Option<u64> = redis::cmd("GET")
            .arg(self.clicks_key(link_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(value.unwrap_or(0))
    }
}
