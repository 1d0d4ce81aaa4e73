//! ClickHouse: schema migrations, fenced inserts of raw click rows, the offset fence, and the
//! per-link daily stats read from the pre-aggregated view.
//!
//! Talks to servers from 18.16 on over HTTP in `RowBinary`. The client's schema validation
//! (`RowBinaryWithNamesAndTypes`) needs a newer server and stays off.

mod cluster;
mod config;
mod migrate;
mod row_binary;
mod stats;
mod writer;

pub use cluster::{Placeholders, cluster_migrations, clusterize};
pub use config::ClickhouseConfig;
pub use migrate::{ApplyReport, Deferred, Migration, MigrationPlan, Migrator, ServerVersion, Statement};
pub use row_binary::{CLICK_COLUMNS, ClickRowRef};
pub use stats::{DailyStats, daily_stats};
pub use writer::{ClickRow, ClickhouseWriter, DEDUP_TOKENS_SINCE, LinkRow, OrderRow, dedup_settings};
