//! Redis: the link index (`link:{code}`, a materialized view of the links topic) and the live
//! counters, whose fences advance in the same atomic script as the counts.
//!
//! Keys are hash-tagged (by link, or by day for day-wide keys) so a Redis Cluster can spread
//! them; see [`Counters`].

mod config;
mod counters;
mod links;

pub use config::RedisConfig;
pub use counters::{ApplyOutcome, CounterUpdates, Counters, day_of};
pub use links::{LinkIndex, LinkPage};
