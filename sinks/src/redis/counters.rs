//! Live counters in Redis, exactly once through offset fences that live beside the counters.
//!
//! Keys are hash-tagged so a Redis Cluster can spread them: a link's keys by the link id
//! (`clicks:{42}`, `clicks:{42}:2026-11-22`, `visitors:{42}:2026-11-22`), the day-wide keys by
//! the day (`top:{2026-11-22}`, `orders:{2026-11-22}`, `items:{2026-11-22}`). Every tag has its
//! own fence hash in its own slot (`fence:{42}`, field `{source}:{partition}`), and one Lua
//! script per tag applies a batch's updates and moves that fence together, so the script only
//! touches keys of one slot and a batch is applied once per tag, whatever crashes in between.
//!
//! | key | type | what |
//! |---|---|---|
//! | `clicks:{link}` | hash | `total`, `human`, `bot` clicks ever |
//! | `clicks:{link}:{day}` | hash | `human`, `bot` clicks of the day |
//! | `visitors:{link}:{day}` | HyperLogLog | unique human visitors of the day |
//! | `totals:{day}` | hash | `human`, `bot` clicks of the day, all links |
//! | `top:{day}` | sorted set | link id → human clicks of the day |
//! | `orders:{day}` | hash | `count:{status}`, `revenue:{status}:{currency}` (minor units) |
//! | `items:{day}` | hash | product id → units sold (order events with status `paid`) |
//!
//! Day keys expire `retention` days after their day ends.

use std::collections::{BTreeMap, HashMap};

use redis::aio::ConnectionManager;

use super::RedisConfig;
use crate::SinkError;

/// KEYS[1] the tag's fence hash, KEYS[2..] its counters; ARGV[1] fence field, ARGV[2] first
/// offset, ARGV[3] last offset, then operations, each an op code and a key index followed by
/// its arguments: `h` field by, `z` member by, `x` unix-time (four arguments each), and `p`
/// count member… (a HyperLogLog's members in one PFADD: one argument per visitor).
/// Returns {status, fence}: 1 applied, 0 already applied, -1 the fence lies inside the range
/// (nothing changed; the caller applies only what lies above the fence).
const APPLY: &str = r"
local fence = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local first, last = tonumber(ARGV[2]), tonumber(ARGV[3])
if fence >= last then return {0, fence} end
if fence >= first then return {-1, fence} end
local i = 4
while i <= #ARGV do
  local op, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if op == 'p' then
    local n = tonumber(ARGV[i + 2])
    redis.call('PFADD', key, unpack(ARGV, i + 3, i + 2 + n))
    i = i + 3 + n
  else
    local a, b = ARGV[i + 2], ARGV[i + 3]
    if op == 'h' then redis.call('HINCRBY', key, a, b)
    elseif op == 'z' then redis.call('ZINCRBY', key, b, a)
    elseif op == 'x' then redis.call('EXPIREAT', key, a)
    end
    i = i + 4
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1, last}
";

/// Most HyperLogLog members in one `p` operation: Lua's `unpack` is bounded by its C stack
/// (8,000 values in Redis's Lua 5.1).
const PFADD_CHUNK: usize = 1_000;

/// What applying one tag's updates did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied; the tag's fence is now the range's last offset.
    Applied,
    /// The fence was already at or past the range: nothing changed.
    AlreadyApplied,
    /// The fence lies inside the range: nothing changed; only offsets above it may be applied.
    Overlap { fence: i64 },
}

/// The updates of one hash tag, summed.
#[derive(Debug, Default, PartialEq, Eq)]
struct TagUpdates<'a> {
    /// Hash increments by (key, field).
    hincr: BTreeMap<(String, String), i64>,
    /// Sorted-set increments by (key, member).
    zincr: BTreeMap<(String, String), i64>,
    /// HyperLogLog members by key (the batch's own sets, not copies).
    pfadd: BTreeMap<String, &'a VisitorSet>,
    /// Expiry (Unix seconds) by key.
    expire_at: BTreeMap<String, u64>,
}

/// Visitor ids (already keyed hashes, so the fast hasher suffices).
type VisitorSet = foldhash::HashSet<u64>;

/// One link's clicks in a batch.
#[derive(Debug, Default)]
struct LinkTally {
    human: i64,
    bot: i64,
    /// Per day (days since the epoch): human and bot clicks, human visitor ids.
    days: BTreeMap<u64, (i64, i64, VisitorSet)>,
}

/// One day's day-wide updates in a batch.
#[derive(Debug, Default)]
struct DayTally {
    /// Human and bot clicks, all links.
    clicks: (i64, i64),
    /// Human clicks per link.
    top: foldhash::HashMap<u64, i64>,
    /// (status, currency) → (events, total).
    orders: BTreeMap<(String, String), (i64, i64)>,
    /// Units per product (paid orders).
    items: BTreeMap<String, i64>,
}

/// A batch's counter updates, summed per link and per day as they come (cheap per event);
/// turned into per-tag commands only when applied.
#[derive(Debug, Default)]
pub struct CounterUpdates {
    prefix: String,
    retention_secs: u64,
    links: BTreeMap<u64, LinkTally>,
    days: BTreeMap<u64, DayTally>,
    /// Only this tag is applied (a retry above one tag's fence).
    only: Option<String>,
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn day_of(unix_secs: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
    humantime::format_rfc3339_seconds(time).to_string()[..10].to_string()
}

impl CounterUpdates {
    /// One click of `link_id` at `unix_secs`.
    pub fn click(&mut self, link_id: u64, unix_secs: u64, bot: bool, visitor_id: u64) {
        let day = unix_secs / 86_400;
        let link = self.links.entry(link_id).or_default();
        let daily = link.days.entry(day).or_default();
        let day_wide = self.days.entry(day).or_default();
        if bot {
            link.bot += 1;
            daily.1 += 1;
            day_wide.clicks.1 += 1;
        } else {
            link.human += 1;
            daily.0 += 1;
            daily.2.insert(visitor_id);
            day_wide.clicks.0 += 1;
            *day_wide.top.entry(link_id).or_default() += 1;
        }
    }

    /// One order event at `unix_secs`: counted and its total added by status and currency;
    /// units per product counted when the status is `paid`.
    pub fn order(&mut self, unix_secs: u64, status: &str, currency: &str, total: i64, items: &[(&str, u32)]) {
        let day = self.days.entry(unix_secs / 86_400).or_default();
        let entry = day.orders.entry((status.to_string(), currency.to_string())).or_default();
        entry.0 += 1;
        entry.1 += total;
        if status == "paid" {
            for (product, quantity) in items {
                *day.items.entry((*product).to_string()).or_default() += i64::from(*quantity);
            }
        }
    }

    /// The updates as commands per hash tag: a link's id, or a day's date.
    fn tag_updates(&self) -> BTreeMap<String, TagUpdates<'_>> {
        let p = &self.prefix;
        let mut tags: BTreeMap<String, TagUpdates> = BTreeMap::new();
        let mut dates: HashMap<u64, String> = HashMap::new();
        let mut date = |day: u64| dates.entry(day).or_insert_with(|| day_of(day * 86_400)).clone();
        let expiry = |day: u64| (day + 1) * 86_400 + self.retention_secs;
        let wanted = |tag: &str| self.only.as_deref().is_none_or(|only| only == tag);
        for (link_id, tally) in &self.links {
            let tag = link_id.to_string();
            if !wanted(&tag) {
                continue;
            }
            let t = tags.entry(tag).or_default();
            let total = format!("{p}clicks:{{{link_id}}}");
            t.hincr.insert((total.clone(), "total".into()), tally.human + tally.bot);
            for (field, n) in [("human", tally.human), ("bot", tally.bot)] {
                if n > 0 {
                    t.hincr.insert((total.clone(), field.into()), n);
                }
            }
            for (day, (human, bot, visitors)) in &tally.days {
                let d = date(*day);
                let daily = format!("{p}clicks:{{{link_id}}}:{d}");
                for (field, n) in [("human", *human), ("bot", *bot)] {
                    if n > 0 {
                        t.hincr.insert((daily.clone(), field.into()), n);
                    }
                }
                t.expire_at.insert(daily, expiry(*day));
                if !visitors.is_empty() {
                    let key = format!("{p}visitors:{{{link_id}}}:{d}");
                    t.pfadd.insert(key.clone(), visitors);
                    t.expire_at.insert(key, expiry(*day));
                }
            }
        }
        for (day, tally) in &self.days {
            let d = date(*day);
            if !wanted(&d) {
                continue;
            }
            let t = tags.entry(d.clone()).or_default();
            if tally.clicks != (0, 0) {
                let totals = format!("{p}totals:{{{d}}}");
                for (field, n) in [("human", tally.clicks.0), ("bot", tally.clicks.1)] {
                    if n > 0 {
                        t.hincr.insert((totals.clone(), field.into()), n);
                    }
                }
                t.expire_at.insert(totals, expiry(*day));
            }
            if !tally.top.is_empty() {
                let top = format!("{p}top:{{{d}}}");
                for (link_id, n) in &tally.top {
                    t.zincr.insert((top.clone(), link_id.to_string()), *n);
                }
                t.expire_at.insert(top, expiry(*day));
            }
            if !tally.orders.is_empty() {
                let orders = format!("{p}orders:{{{d}}}");
                for ((status, currency), (count, revenue)) in &tally.orders {
                    *t.hincr.entry((orders.clone(), format!("count:{status}"))).or_default() += count;
                    *t.hincr.entry((orders.clone(), format!("revenue:{status}:{currency}"))).or_default() += revenue;
                }
                t.expire_at.insert(orders, expiry(*day));
            }
            if !tally.items.is_empty() {
                let items = format!("{p}items:{{{d}}}");
                for (product, n) in &tally.items {
                    t.hincr.insert((items.clone(), product.clone()), *n);
                }
                t.expire_at.insert(items, expiry(*day));
            }
        }
        tags
    }

    /// Whether nothing is to be applied.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.days.is_empty()
    }

    /// Keeps only the updates of `tag`.
    pub fn retain_tag(&mut self, tag: &str) {
        self.only = Some(tag.to_string());
    }
}

/// The script's index of `key` (`KEYS[2..]`), naming it on first use.
fn key_index<'a>(keys: &mut Vec<&'a str>, index: &mut HashMap<&'a str, usize>, key: &'a str) -> usize {
    *index.entry(key).or_insert_with(|| {
        keys.push(key);
        keys.len() + 1
    })
}

/// A script argument, formatted by the client straight into the request.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

impl redis::ToRedisArgs for Arg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        match self {
            Arg::Text(text) => text.write_redis_args(out),
            Arg::Int(n) => n.write_redis_args(out),
        }
    }
}

/// The counters of one deployment (one key prefix).
#[derive(Clone)]
pub struct Counters {
    config: RedisConfig,
    conn: ConnectionManager,
    retention_days: u32,
    script: redis::Script,
}

/// Scripts sent in one round trip.
const PIPELINE_DEPTH: usize = 512;

impl Counters {
    /// Counters over an open connection; day keys live `retention_days` after their day.
    pub fn new(config: RedisConfig, conn: ConnectionManager, retention_days: u32) -> Self {
        Self { config, conn, retention_days, script: redis::Script::new(APPLY) }
    }

    /// An empty set of updates for this deployment's keys.
    pub fn updates(&self) -> CounterUpdates {
        CounterUpdates {
            prefix: self.config.prefix.clone(),
            retention_secs: u64::from(self.retention_days) * 86_400,
            ..CounterUpdates::default()
        }
    }

    fn invocation(&self, field: &str, first: i64, last: i64, tag: &str, updates: &TagUpdates) -> redis::Cmd {
        // KEYS[1] is the fence; each counter key is named once and referred to by its index.
        let mut keys: Vec<&str> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut key_of = |key| key_index(&mut keys, &mut index, key);
        // (op, key index, a, b), written straight into the command below.
        let mut ops: Vec<(&str, usize, Arg<'_>, Arg<'_>)> = Vec::new();
        for ((key, f), by) in &updates.hincr {
            ops.push(("h", key_of(key), Arg::Text(f), Arg::Int(*by)));
        }
        for ((key, member), by) in &updates.zincr {
            ops.push(("z", key_of(key), Arg::Text(member), Arg::Int(*by)));
        }
        // HyperLogLog members follow their `p`, key and count: one argument each. Expiries
        // come last, when every key they name exists.
        let visitors: Vec<(usize, Vec<u64>)> =
            updates.pfadd.iter().map(|(key, members)| (key_of(key), members.iter().copied().collect())).collect();
        let expiries: Vec<(usize, u64)> = updates.expire_at.iter().map(|(key, at)| (key_of(key), *at)).collect();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(keys.len() + 1).arg(self.fence_key(tag)).arg(&keys);
        cmd.arg(field).arg(first).arg(last);
        for (op, k, a, b) in ops {
            cmd.arg(op).arg(k).arg(a).arg(b);
        }
        for (k, members) in &visitors {
            for chunk in members.chunks(PFADD_CHUNK) {
                cmd.arg("p").arg(k).arg(chunk.len()).arg(chunk);
            }
        }
        for (k, at) in expiries {
            cmd.arg("x").arg(k).arg(at).arg("");
        }
        cmd
    }

    fn fence_key(&self, tag: &str) -> String {
        self.config.key(format_args!("fence:{{{tag}}}"))
    }

    /// Applies `updates` from offsets `first..=last` of `source`'s `partition`, once per tag.
    /// Returns each tag's outcome.
    pub async fn apply(
        &self,
        source: &str,
        partition: i32,
        first: i64,
        last: i64,
        updates: &CounterUpdates,
    ) -> Result<Vec<(String, ApplyOutcome)>, SinkError> {
        let field = format!("{source}:{partition}");
        let tag_updates = updates.tag_updates();
        let tags: Vec<(&String, &TagUpdates)> = tag_updates.iter().collect();
        let mut outcomes = Vec::with_capacity(tags.len());
        for chunk in tags.chunks(PIPELINE_DEPTH) {
            let mut pipe = redis::pipe();
            for (tag, tag_updates) in chunk {
                pipe.add_command(self.invocation(&field, first, last, tag, tag_updates));
            }
            let replies: Vec<(i64, i64)> = match pipe.query_async(&mut self.conn.clone()).await {
                Ok(replies) => replies,
                // A restarted Redis has forgotten the script: load it, send the round again
                // (tags applied before the error are fenced and say so).
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    self.load().await?;
                    pipe.query_async(&mut self.conn.clone()).await.map_err(|e| self.config.error(e))?
                }
                Err(e) => return Err(self.config.error(e)),
            };
            for ((tag, _), (status, fence)) in chunk.iter().zip(replies) {
                let outcome = match status {
                    1 => ApplyOutcome::Applied,
                    0 => ApplyOutcome::AlreadyApplied,
                    _ => ApplyOutcome::Overlap { fence },
                };
                outcomes.push(((*tag).clone(), outcome));
            }
        }
        Ok(outcomes)
    }

    /// Loads the script into the server's cache.
    pub async fn load(&self) -> Result<(), SinkError> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(APPLY)
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(|e| self.config.error(e))
    }

    /// The deployment-wide secret `name`: set to `candidate` by the first process to ask, read
    /// by every later one, so all processors derive the same keys.
    pub async fn shared_secret(&self, name: &str, candidate: &str) -> Result<String, SinkError> {
        let key = self.config.key(format_args!("secret:{name}"));
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.config.error(e))?;
        redis::cmd("GET").arg(&key).query_async(&mut conn).await.map_err(|e| self.config.error(e))
    }

    /// A counter hash's field (0 when absent): `clicks:{42}` `total`, say.
    pub async fn hget(&self, key: &str, field: &str) -> Result<i64, SinkError> {
        let value: Option<i64> = redis::cmd("HGET")
            .arg(self.config.key(format_args!("{key}")))
            .arg(field)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))?;
        Ok(value.unwrap_or(0))
    }

    /// A counter hash's fields (`orders:{2026-11-22}`, say).
    pub async fn hgetall(&self, key: &str) -> Result<BTreeMap<String, i64>, SinkError> {
        let key = self.config.key(format_args!("{key}"));
        redis::cmd("HGETALL").arg(key).query_async(&mut self.conn.clone()).await.map_err(|e| self.config.error(e))
    }

    /// The `n` members of a sorted set with the highest scores (`top:{2026-11-22}`, say).
    pub async fn top(&self, key: &str, n: usize) -> Result<Vec<(String, i64)>, SinkError> {
        let key = self.config.key(format_args!("{key}"));
        redis::cmd("ZREVRANGE")
            .arg(key)
            .arg(0)
            .arg(n.saturating_sub(1))
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.config.error(e))
    }

    /// Every click counted for `link_id`.
    pub async fn clicks(&self, link_id: u64) -> Result<u64, SinkError> {
        Ok(self.hget(&format!("clicks:{{{link_id}}}"), "total").await?.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updates() -> CounterUpdates {
        CounterUpdates { prefix: "p:".into(), retention_secs: 86_400, ..CounterUpdates::default() }
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_700_000_000), "2023-11-14");
        assert_eq!(day_of(1_700_006_399), "2023-11-14");
        assert_eq!(day_of(1_700_006_400), "2023-11-15");
    }

    #[test]
    fn clicks_are_summed_per_tag_and_bots_stay_out_of_visitors_and_top_links() {
        let mut u = updates();
        let t = 1_700_000_000;
        u.click(42, t, false, 1);
        u.click(42, t, false, 1);
        u.click(42, t, true, 2);
        let tags = u.tag_updates();
        let link = &tags["42"];
        assert_eq!(link.hincr[&("p:clicks:{42}".into(), "total".into())], 3);
        assert_eq!(link.hincr[&("p:clicks:{42}".into(), "human".into())], 2);
        assert_eq!(link.hincr[&("p:clicks:{42}:2023-11-14".into(), "bot".into())], 1);
        assert_eq!(link.pfadd["p:visitors:{42}:2023-11-14"].iter().collect::<Vec<_>>(), [&1]);
        assert_eq!(link.expire_at["p:clicks:{42}:2023-11-14"], 1_700_006_400 + 86_400);
        assert!(!link.expire_at.contains_key("p:clicks:{42}"), "totals never expire");
        assert_eq!(tags["2023-11-14"].zincr[&("p:top:{2023-11-14}".into(), "42".into())], 2);
        u.retain_tag("42");
        assert_eq!(u.tag_updates().keys().collect::<Vec<_>>(), ["42"]);
    }

    #[test]
    fn orders_count_by_status_and_currency_and_units_only_when_paid() {
        let mut u = updates();
        u.order(1_700_000_000, "paid", "EUR", 3665, &[("p1", 2), ("p2", 1)]);
        u.order(1_700_000_000, "created", "EUR", 100, &[("p1", 5)]);
        let tags = u.tag_updates();
        let day = &tags["2023-11-14"];
        assert_eq!(day.hincr[&("p:orders:{2023-11-14}".into(), "count:paid".into())], 1);
        assert_eq!(day.hincr[&("p:orders:{2023-11-14}".into(), "revenue:paid:EUR".into())], 3665);
        assert_eq!(day.hincr[&("p:items:{2023-11-14}".into(), "p1".into())], 2);
    }
}
