//! Runnel's edge: serves short-link redirects and emits a click event for each one without
//! waiting on Kafka; creates links (Redis index + links topic); serves per-link stats from
//! ClickHouse's pre-aggregated view; exports Prometheus metrics.
//!
//! Entry point: [`run`], which takes its listener and its shutdown signal as arguments.

mod cache;
mod config;
mod error;
mod metrics;
mod producer;
mod routes;
mod server;

pub use config::EdgeConfig;
pub use error::{ApiError, EdgeError};
pub use server::{AppState, router, run};
