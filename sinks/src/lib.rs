//! Runnel's storage writers and readers, one folder per store:
//!
//! - [`clickhouse`]: schema migrations, fenced inserts of raw rows, the offset fence, stats reads;
//! - [`redis`]: the link index and fenced counters;
//! - [`archive`]: raw events as Parquet files per hour, fenced by their file names;
//! - [`reports`]: report queries over the pre-aggregated tables and their output formats.
//!
//! Each sink decides in one place ([`SinkError::is_retryable`]) whether a failure is worth
//! retrying or must be given up on.

pub mod archive;
pub mod clickhouse;
mod error;
pub mod redis;
pub mod reports;

pub use error::SinkError;

/// Highest stored Kafka offset per partition, as a sink's fence reports it.
pub type Fences = std::collections::HashMap<i32, i64>;
