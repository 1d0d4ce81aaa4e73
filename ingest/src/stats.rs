//! Reports (scope `reports:read`, rate class `reports`), all read from pre-aggregated tables
//! (see `sinks::reports`):
//!
//! - `GET /api/links/{code}/stats`: the link's clicks, human clicks and unique visitors per
//!   `interval` (hour, day, week, month);
//! - `GET /api/links/{code}/stats/{dimension}`: its clicks by country, device, browser, os,
//!   referrer or channel;
//! - `GET /api/reports/{name}`: top-links, sales, top-products, customers, conversions;
//! - `GET /api/reports/live`: today's counters from Redis.
//!
//! Parameters: `from`, `to` (days, inclusive) or `days`, `tz`, `interval`, `limit`. Output: JSON,
//! `format=csv`, or Arrow IPC for `format=arrow` or `Accept: application/vnd.apache.arrow.stream`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sinks::reports::{self, Report, ReportError, ReportParams, Table};

use crate::ApiError;
use crate::auth::Scope;
use crate::limits::Class;
use crate::server::AppState;

const ARROW: &str = "application/vnd.apache.arrow.stream";

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        match error {
            ReportError::Invalid { .. } => ApiError::invalid_parameter(error.to_string()),
            ReportError::Store(store) => ApiError::unavailable("the report store", store),
        }
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = state.keys.authorize(headers, Scope::ReportsRead)?;
    state.limits.check(Class::Reports, key)
}

async fn link_id(state: &AppState, code: &str) -> Result<u64, ApiError> {
    Ok(state
        .links
        .index()
        .get(code)
        .await
        .map_err(|e| ApiError::unavailable("link index", e))?
        .ok_or_else(|| ApiError::not_found("no such link"))?
        .link_id)
}

/// The table in the format asked for; `extra` fields go into the JSON object.
fn respond(
    table: &Table,
    params: &ReportParams,
    headers: &HeaderMap,
    extra: serde_json::Value,
) -> Result<Response, ApiError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match params.format.as_deref() {
        Some(format) => format,
        None if accept.contains(ARROW) => "arrow",
        None if accept.contains("text/csv") => "csv",
        None => "json",
    };
    match format {
        "json" => {
            let body = serde_json::to_vec(&reports::to_json(table, extra.as_object()))
                .map_err(|e| ApiError::unavailable("JSON encoding", e))?;
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
        }
        "csv" => {
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], reports::to_csv(table))
                .into_response())
        }
        "arrow" => {
            let bytes = reports::to_arrow(table).map_err(|e| ApiError::unavailable("Arrow encoding", e))?;
            Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(ARROW))], bytes).into_response())
        }
        other => Err(ApiError::invalid_parameter(format!("format: `{other}` is not one of json, csv, arrow"))),
    }
}

async fn run(state: &AppState, report: &Report, params: &ReportParams) -> Result<Table, ApiError> {
    let plan = report.plan(params, jiff::Timestamp::now())?;
    Ok(plan.run(&state.clickhouse).await?)
}

pub(crate) async fn link_stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Query(params) = query?;
    let link_id = link_id(&state, &code).await?;
    let table = run(&state, &Report::LinkSeries { link_id }, &params).await?;
    let sum = |column: usize| -> u64 {
        table.rows.iter().map(|row| if let reports::Value::UInt(n) = row[column] { n } else { 0 }).sum()
    };
    let extra = serde_json::json!({ "code": code, "link_id": link_id, "clicks": sum(1), "human_clicks": sum(2) });
    respond(&table, &params, &headers, extra)
}

pub(crate) async fn link_breakdown(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((code, dimension)): Path<(String, String)>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Query(params) = query?;
    let link_id = link_id(&state, &code).await?;
    let table = run(&state, &Report::breakdown(link_id, &dimension)?, &params).await?;
    respond(&table, &params, &headers, serde_json::json!({ "code": code, "link_id": link_id, "dimension": dimension }))
}

pub(crate) async fn named_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Query(params) = query?;
    let table = if name == "live" {
        reports::live(&state.counters, jiff::Timestamp::now()).await?
    } else {
        let report = Report::named(&name).ok_or_else(|| {
            ApiError::not_found(format!("no report `{name}`; reports: live, {}", reports::NAMES.join(", ")))
        })?;
        run(&state, &report, &params).await?
    };
    respond(&table, &params, &headers, serde_json::json!({}))
}
