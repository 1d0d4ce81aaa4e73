//! Runnel's edge: serves short-link redirects and emits a click event for each one without
//! waiting on Kafka; manages links (links topic + Redis index, announced to every edge's
//! cache); serves per-link stats from ClickHouse's pre-aggregated view; checks API keys and
//! rate limits; exports Prometheus metrics.
//!
//! Entry point: [`run`], which takes its listener and its shutdown signal as arguments.

mod auth;
mod cache;
mod client;
mod config;
mod error;
mod health;
mod hot_metrics;
mod http1;
mod limits;
mod links;
mod metrics;
mod orders;
mod producer;
mod redirect;
mod server;
mod spool;
mod stats;

pub use auth::{hash_key, validate_api_keys};
pub use config::{ClickEncoding, EdgeConfig};
pub use error::{ApiError, EdgeError};
pub use server::{AppState, router, run};
