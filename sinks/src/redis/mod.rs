//! Redis: the link index (`link:{code}`, a materialized view of the links topic) and the
//! click counters, whose per-partition fence advances in the same atomic script as the counts.
//!
//! Keys are hash-tagged by link (`clicks:{42}`) so a Redis Cluster can spread them.

mod config;
mod counters;
mod links;

pub use config::RedisConfig;
pub use counters::{ApplyOutcome, ClickCounters};
pub use links::{LinkIndex, LinkPage};
