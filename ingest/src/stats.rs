//! `GET /api/links/{code}/stats?days=N` (scope `reports:read`): clicks per day from the
//! pre-aggregated view.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::ApiError;
use crate::auth::Scope;
use crate::limits::Class;
use crate::server::AppState;

/// Query of the stats route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    days: Option<u32>,
}

pub(crate) async fn link_stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = state.keys.authorize(&headers, Scope::ReportsRead)?;
    state.limits.check(Class::Reports, key)?;
    let Query(query) = query?;
    let days = query.days.unwrap_or(30);
    if !(1..=3660).contains(&days) {
        return Err(ApiError::invalid_parameter("days must be between 1 and 3660"));
    }
    let link = state
        .links
        .index()
        .get(&code)
        .await
        .map_err(|e| ApiError::unavailable("link index", e))?
        .ok_or_else(|| ApiError::not_found("no such link"))?;
    let days_stats = sinks::clickhouse::daily_stats(&state.clickhouse, link.link_id, days)
        .await
        .map_err(|e| ApiError::unavailable("ClickHouse", e))?;
    let clicks: u64 = days_stats.iter().map(|d| d.clicks).sum();
    let human_clicks: u64 = days_stats.iter().map(|d| d.human_clicks).sum();
    Ok(Json(serde_json::json!({
        "code": link.code,
        "link_id": link.link_id,
        "clicks": clicks,
        "human_clicks": human_clicks,
        "days": days_stats,
    }))
    .into_response())
}
