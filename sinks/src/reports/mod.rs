//! Reports: every one a single SQL query over the pre-aggregated tables of
//! `clickhouse-schema/0006_reports.sql` (never over the raw `clicks` and `orders`), plus the live
//! figures of today from the Redis counters. The edge serves them under `/api/reports/…` and
//! `/api/links/{code}/stats…`, the CLI as `runnel report`; both render a [`Table`] as JSON, CSV,
//! Arrow IPC or text.

mod format;
pub mod leaders;
pub mod link_days;
pub mod new_customers;
mod range;

use jiff::Timestamp;
use serde::Deserialize;

pub use format::{to_arrow, to_csv, to_json, to_text};
pub use range::{Interval, MAX_DAYS, Range, Split};

use crate::SinkError;
use crate::clickhouse::ClickhouseConfig;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is wrong (HTTP 400).
    #[error("{param}: {reason}")]
    Invalid {
        /// The parameter's name.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store did not answer (HTTP 503).
    #[error(transparent)]
    Store(#[from] SinkError),
}

impl ReportError {
    pub(crate) fn invalid(param: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { param, reason: reason.into() }
    }

    /// The parameter at fault, for a bad request.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { param, .. } => Some(param),
            Self::Store(_) => None,
        }
    }
}

/// The parameters every report takes (unused ones are ignored).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// First day, `YYYY-MM-DD` (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last day, inclusive (default: today in `tz`).
    pub to: Option<String>,
    /// IANA time zone of the days (default `UTC`).
    pub tz: Option<String>,
    /// Series buckets: `hour`, `day`, `week`, `month` (which ones depends on the report).
    pub interval: Option<String>,
    /// Rows of a top list (default 10, at most 1,000).
    pub limit: Option<u32>,
    /// Instead of `from`: the last N days up to `to`.
    pub days: Option<u32>,
    /// Response format for the API (`json`, `csv`, `arrow`); the `Accept` header also picks
    /// Arrow.
    pub format: Option<String>,
}

/// Breakdown dimensions of a link's clicks.
pub const DIMENSIONS: &[&str] = &["country", "device", "browser", "os", "referrer", "channel"];

/// A report and what it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A link's clicks, human clicks and unique human visitors per hour/day/week/month.
    LinkSeries {
        /// The link.
        link_id: u64,
    },
    /// A link's clicks per value of one dimension.
    LinkBreakdown {
        /// The link.
        link_id: u64,
        /// One of [`DIMENSIONS`].
        dimension: String,
    },
    /// Links with the most human clicks.
    TopLinks,
    /// Order events, revenue and average order value per day/week/month, status and currency.
    Sales,
    /// Products with the most paid revenue.
    TopProducts,
    /// New and returning customers per day/week/month.
    Customers,
    /// Links with the most attributed paid orders: clicks, orders, revenue, conversion rate.
    Conversions,
}

/// The names `runnel report` and `/api/reports/{name}` take for the range reports.
pub const NAMES: &[&str] = &["top-links", "sales", "top-products", "customers", "conversions"];

impl Report {
    /// The report of a name in [`NAMES`].
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "top-links" => Self::TopLinks,
            "sales" => Self::Sales,
            "top-products" => Self::TopProducts,
            "customers" => Self::Customers,
            "conversions" => Self::Conversions,
            _ => return None,
        })
    }

    /// A link breakdown, checking the dimension.
    pub fn breakdown(link_id: u64, dimension: &str) -> Result<Self, ReportError> {
        if !DIMENSIONS.contains(&dimension) {
            return Err(ReportError::invalid(
                "dimension",
                format!("`{dimension}` is not one of {}", DIMENSIONS.join(", ")),
            ));
        }
        Ok(Self::LinkBreakdown { link_id, dimension: dimension.to_string() })
    }

    /// Its name in output.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LinkSeries { .. } => "link-series",
            Self::LinkBreakdown { .. } => "link-breakdown",
            Self::TopLinks => "top-links",
            Self::Sales => "sales",
            Self::TopProducts => "top-products",
            Self::Customers => "customers",
            Self::Conversions => "conversions",
        }
    }

    /// The report's query for `params`, and how to read its rows.
    pub fn plan(&self, params: &ReportParams, now: Timestamp) -> Result<Plan, ReportError> {
        let from = match (params.days, &params.from) {
            (Some(_), Some(_)) => return Err(ReportError::invalid("days", "give from or days, not both")),
            (Some(days @ 1..), None) => {
                let to = Range::resolve(None, params.to.as_deref(), params.tz.as_deref(), now)?.to;
                let days = i64::from(days.min(MAX_DAYS as u32 + 1)) - 1;
                Some(
                    to.checked_sub(jiff::Span::new().days(days))
                        .map_err(|e| ReportError::invalid("days", e.to_string()))?
                        .to_string(),
                )
            }
            (Some(_), None) => return Err(ReportError::invalid("days", "must be at least 1")),
            (None, from) => from.clone(),
        };
        let range = Range::resolve(from.as_deref(), params.to.as_deref(), params.tz.as_deref(), now)?;
        let limit = match params.limit {
            None => 10,
            Some(n @ 1..=1000) => n,
            Some(n) => return Err(ReportError::invalid("limit", format!("{n} is not between 1 and 1000"))),
        };
        let series = |default, allowed: &[Interval]| Interval::parse(params.interval.as_deref(), default, allowed);
        let mut first = None;
        let (sql, columns, fill) = match self {
            Self::LinkSeries { link_id } => {
                let interval =
                    series(Interval::Day, &[Interval::Hour, Interval::Day, Interval::Week, Interval::Month])?;
                let sql = format!(
                    "SELECT {bucket} AS bucket, countMerge(clicks) AS clicks, sumMerge(human_clicks) AS human_clicks, \
                     toUInt64(uniqIfMerge(visitors)) AS visitors \
                     FROM clicks_hourly_by_link WHERE link_id = {link_id} AND {hours} \
                     GROUP BY bucket ORDER BY bucket",
                    bucket = range.bucket_sql(interval, "hour"),
                    hours = range.hours_sql("hour"),
                );
                (
                    sql,
                    cols(&[
                        ("time", Kind::Time),
                        ("clicks", Kind::UInt),
                        ("human_clicks", Kind::UInt),
                        ("visitors", Kind::UInt),
                    ]),
                    Some(interval),
                )
            }
            Self::LinkBreakdown { link_id, dimension } => {
                let sql = format!(
                    "SELECT value, sum(clicks) AS total, sum(human_clicks) AS humans \
                     FROM link_dimension_clicks_hourly WHERE link_id = {link_id} AND dimension = '{dimension}' AND {hours} \
                     GROUP BY value ORDER BY humans DESC, total DESC, value LIMIT {limit}",
                    hours = range.hours_sql("hour"),
                );
                (sql, cols(&[("value", Kind::Text), ("clicks", Kind::UInt), ("human_clicks", Kind::UInt)]), None)
            }
            Self::TopLinks => {
                let sql = format!(
                    // A link's code never changes: grouping by the number alone is twice as fast.
                    "SELECT link_id, any(code) AS link_code, sum(clicks) AS total, sum(human_clicks) AS humans FROM {rows} \
                     GROUP BY link_id ORDER BY humans DESC, total DESC, link_id LIMIT {limit}",
                    rows = range.hours_days_months_where_sql("link_id, code, clicks, human_clicks", LINK_CLICKS, "1"),
                );
                (
                    sql,
                    cols(&[
                        ("link_id", Kind::UInt),
                        ("code", Kind::Text),
                        ("clicks", Kind::UInt),
                        ("human_clicks", Kind::UInt),
                    ]),
                    None,
                )
            }
            Self::Sales => {
                let interval = series(Interval::Day, &[Interval::Day, Interval::Week, Interval::Month])?;
                // Where local days are UTC days, whole days come from the daily table (a row per
                // day, status and currency instead of 24); otherwise every hour is read.
                const COLUMNS: &str = "status, currency, events, total, units";
                let split = range.split();
                let rows = if range.days_are_utc_days() && split.days.is_some() {
                    format!(
                        "(SELECT hour, {COLUMNS} FROM orders_hourly WHERE {hours} UNION ALL \
                         SELECT toDateTime(toUInt32(day) * 86400) AS hour, {COLUMNS} FROM orders_daily WHERE {days})",
                        hours = range.split_hours_sql(&split, "hour"),
                        days = range.split_days_sql(&split, "day"),
                    )
                } else {
                    "orders_hourly".to_string()
                };
                let sql = format!(
                    "SELECT {bucket} AS bucket, status, currency, sum(events) AS orders, sum(total) AS revenue, \
                     sum(units) AS items, if(orders = 0, 0, revenue / orders) AS average_order_value \
                     FROM {rows} WHERE {hours} \
                     GROUP BY bucket, status, currency ORDER BY bucket, status, currency",
                    bucket = range.bucket_sql(interval, "hour"),
                    hours = range.hours_sql("hour"),
                );
                (
                    sql,
                    cols(&[
                        ("time", Kind::Time),
                        ("status", Kind::Text),
                        ("currency", Kind::Text),
                        ("orders", Kind::UInt),
                        ("revenue", Kind::Int),
                        ("items", Kind::UInt),
                        ("average_order_value", Kind::Float),
                    ]),
                    None,
                )
            }
            Self::TopProducts => {
                // Grouped by the product key (0015), one number instead of product, SKU and
                // currency; the names of the few keys listed come from `product_keys`.
                let top = format!(
                    "SELECT product_key, sum(units) AS sold, sum(revenue) AS earned FROM {rows} \
                     GROUP BY product_key ORDER BY earned DESC, sold DESC, product_key LIMIT {limit}",
                    rows = range.hours_days_weeks_months_where_sql(
                        "product_key, units, revenue",
                        [
                            "product_key_sales_hourly",
                            "product_key_sales_daily",
                            "product_key_sales_weekly",
                            "product_key_sales_monthly"
                        ],
                        "1",
                    ),
                );
                let sql = format!(
                    "SELECT product_id, sku, currency, sold, earned FROM ({top}) AS top \
                     ANY LEFT JOIN ({names}) AS names USING product_key \
                     ORDER BY earned DESC, sold DESC, product_id, sku, currency",
                    names = product_names_sql(&format!("SELECT product_key FROM ({top})")),
                );
                first = Some(top);
                (
                    sql,
                    cols(&[
                        ("product_id", Kind::Text),
                        ("sku", Kind::Text),
                        ("currency", Kind::Text),
                        ("units", Kind::UInt),
                        ("revenue", Kind::Int),
                    ]),
                    None,
                )
            }
            Self::Customers => {
                // Active customers per bucket (a paid order in it), and new ones (their first
                // paid order ever in it and in the range); the others active are returning.
                let interval = series(Interval::Day, &[Interval::Day, Interval::Week, Interval::Month])?;
                let first = range.bucket_sql(interval, "toStartOfHour(first_paid)");
                let firsts = range.hours_sql("first_paid");
                let sql = customers_sql(
                    &range,
                    interval,
                    &format!(
                        "SELECT {first} AS bucket, count() AS new_customers FROM (\
                         SELECT minMerge(first_order) AS first_paid FROM customer_firsts GROUP BY customer) \
                         WHERE {firsts} GROUP BY bucket"
                    ),
                );
                (
                    sql,
                    cols(&[
                        ("time", Kind::Time),
                        ("new_customers", Kind::UInt),
                        ("returning_customers", Kind::UInt),
                        ("paid_orders", Kind::UInt),
                    ]),
                    Some(interval),
                )
            }
            Self::Conversions => {
                // The top attributed codes first; clicks are summed for those codes only.
                // Orders carrying a link code, and orders naming only a click, through the
                // click's link.
                let attributed = format!(
                    "SELECT code, currency, sum(orders) AS paid_orders, sum(revenue) AS paid_revenue FROM (\
                     SELECT link_code AS code, currency, orders, revenue FROM {orders} AS coded \
                     UNION ALL SELECT code, currency, orders, revenue FROM (\
                     SELECT click_id, currency, orders, revenue FROM click_conversions_hourly WHERE {hours}) AS by_click \
                     ANY INNER JOIN (\
                     SELECT event_id AS click_id, code FROM click_links WHERE event_id IN (\
                     SELECT click_id FROM click_conversions_hourly WHERE {hours})) AS clicked_link USING click_id) \
                     GROUP BY code, currency \
                     ORDER BY paid_orders DESC, paid_revenue DESC, code, currency LIMIT {limit}",
                    orders = range.hours_and_days_sql(
                        "link_code, currency, orders, revenue",
                        "conversions_hourly",
                        "conversions_daily",
                    ),
                    hours = range.hours_sql("hour"),
                );
                let sql = format!(
                    "SELECT code, link_clicks, link_human_clicks, currency, paid_orders, paid_revenue, \
                     if(link_human_clicks = 0, 0, paid_orders / link_human_clicks) AS conversion_rate FROM (\
                     {attributed}) AS attributed \
                     ANY LEFT JOIN (\
                     SELECT code, sum(clicks) AS link_clicks, sum(human_clicks) AS link_human_clicks \
                     FROM {clicks} GROUP BY code) AS clicked USING code \
                     ORDER BY paid_orders DESC, paid_revenue DESC, code, currency LIMIT {limit}",
                    clicks = range.hours_and_days_where_sql(
                        "code, clicks, human_clicks",
                        "link_clicks_hourly",
                        "link_code_clicks_daily",
                        &format!("code IN (SELECT code FROM ({attributed}))"),
                    ),
                );
                first = Some(attributed);
                (
                    sql,
                    cols(&[
                        ("code", Kind::Text),
                        ("clicks", Kind::UInt),
                        ("human_clicks", Kind::UInt),
                        ("currency", Kind::Text),
                        ("orders", Kind::UInt),
                        ("revenue", Kind::Int),
                        ("conversion_rate", Kind::Float),
                    ]),
                    None,
                )
            }
        };
        Ok(Plan { report: self.clone(), range, sql, columns, fill, limit, first })
    }
}

/// Top-links reports by how they were answered, `path` = `leaders` or `plain` (counter).
pub const TOP_LINKS_TOTAL: &str = "runnel_report_top_links_total";

/// Link series by how they were answered, `path` = `link_days` (closed UTC days from the
/// rollup's counts per day or hour, [`link_days`]) or `plain` (counter).
pub const LINK_SERIES_TOTAL: &str = "runnel_report_link_series_total";

/// The customers report over `fresh` (`bucket, new_customers`): active customers per bucket
/// (a paid order in it), new ones (their first paid order ever in it and in the range), the
/// others active are returning.
fn customers_sql(range: &Range, interval: Interval, fresh: &str) -> String {
    customers_from_sql(&active_sql(range, interval, &range.hours_sql("hour")), fresh)
}

/// Active customers (`active`) and paid orders (`paid_orders`) per bucket from the hours of
/// `customer_ids_hourly` that `hours` (SQL) selects.
fn active_sql(range: &Range, interval: Interval, hours: &str) -> String {
    format!(
        "SELECT {bucket} AS bucket, uniqExact(customer) AS active, sum(orders) AS paid_orders \
         FROM customer_ids_hourly WHERE {hours} GROUP BY bucket",
        bucket = range.bucket_sql(interval, "hour"),
    )
}

/// The customers report's rows from `active` ([`active_sql`]) and `fresh` (new customers per
/// bucket).
fn customers_from_sql(active: &str, fresh: &str) -> String {
    format!(
        "SELECT bucket, toUInt64(new_customers), toUInt64(if(active > new_customers, active - new_customers, 0)), \
         paid_orders FROM ({active}) AS active \
         ANY LEFT JOIN ({fresh}) AS fresh USING bucket ORDER BY bucket",
    )
}

/// A link's clicks per hour, day and month.
const LINK_CLICKS: [&str; 3] = ["link_clicks_hourly", "link_clicks_daily", "link_clicks_monthly"];

fn cols(spec: &[(&'static str, Kind)]) -> Vec<Column> {
    spec.iter().map(|(name, kind)| Column { name, kind: *kind }).collect()
}

/// A report ready to run: its SQL and how to read and present its rows.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What it reports.
    pub report: Report,
    /// Its range.
    pub range: Range,
    /// The one query it runs (`TabSeparated` rows, columns as [`Plan::columns`]).
    pub sql: String,
    /// Its columns.
    pub columns: Vec<Column>,
    /// For series: the buckets to fill with zeros where no row came back.
    pub fill: Option<Interval>,
    /// Rows of a top list.
    pub limit: u32,
    /// Reports [`Plan::run`] answers in two steps (the same rows as [`Plan::sql`] in one): the
    /// first step's query. Conversions: the top attributed codes (`code, currency, orders,
    /// revenue`), then the clicks of those codes ([`Plan::conversion_clicks_sql`]). Top
    /// products: the top product keys (`product_key, units, revenue`), then their names
    /// ([`product_names_sql`]).
    pub first: Option<String>,
}

impl Plan {
    /// Runs the report on ClickHouse: its query, or for top links over listed days the daily
    /// leaders first ([`leaders`]).
    pub async fn run(&self, clickhouse: &ClickhouseConfig) -> Result<Table, ReportError> {
        if self.report == Report::TopLinks {
            let answer = leaders::top_links(clickhouse, self, self.limit as usize).await?;
            let path = if answer.is_some() { "leaders" } else { "plain" };
            metrics::counter!(TOP_LINKS_TOTAL, "path" => path).increment(1);
            tracing::debug!(path, "top links answered");
            if let Some(table) = answer {
                return Ok(table);
            }
        }
        match (&self.report, &self.first) {
            (Report::Conversions, Some(attributed)) => return self.conversions(clickhouse, attributed).await,
            (Report::TopProducts, Some(top)) => return self.top_products(clickhouse, top).await,
            _ => {}
        }
        if let Report::LinkSeries { link_id } = self.report {
            let answer = link_days::series(clickhouse, self, link_id, Timestamp::now()).await?;
            let path = if answer.is_some() { "link_days" } else { "plain" };
            metrics::counter!(LINK_SERIES_TOTAL, "path" => path).increment(1);
            if let Some(table) = answer {
                return Ok(table);
            }
        }
        if let (Report::Customers, Some(interval)) = (&self.report, self.fill)
            && let Some(list) = new_customers::current(clickhouse).await?
        {
            let sql = self.customers_listed_sql(interval, &list);
            return self.table_from_tsv(&tsv(clickhouse, &sql).await?);
        }
        self.table_from_tsv(&tsv(clickhouse, &self.sql).await?)
    }

    /// Conversions in two steps, the same rows as [`Plan::sql`] in one: the top attributed codes,
    /// then the clicks of those codes only (the single query computes the codes once more for
    /// each table it reads clicks from).
    async fn conversions(&self, clickhouse: &ClickhouseConfig, attributed: &str) -> Result<Table, ReportError> {
        let source = format!("report {}", self.report.name());
        let mut top = Vec::new();
        for row in tsv_rows(&source, &tsv(clickhouse, attributed).await?) {
            let [code, currency, orders, revenue] = row?;
            let ([orders], [revenue]) =
                (tsv_parse::<u64, 1>(&source, [orders])?, tsv_parse::<i64, 1>(&source, [revenue])?);
            top.push((unescape(code), unescape(currency), orders, revenue));
        }
        let mut codes: Vec<String> = top.iter().map(|(code, ..)| code.clone()).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut clicks = std::collections::HashMap::new();
        if !codes.is_empty() {
            for row in tsv_rows(&source, &tsv(clickhouse, &self.conversion_clicks_sql(&codes)).await?) {
                let [code, total, humans] = row?;
                let [total, humans] = tsv_parse::<u64, 2>(&source, [total, humans])?;
                clicks.insert(unescape(code), (total, humans));
            }
        }
        let rows = top
            .into_iter()
            .map(|(code, currency, orders, revenue)| {
                let (total, humans) = clicks.get(&code).copied().unwrap_or((0, 0));
                let rate = if humans == 0 { 0.0 } else { orders as f64 / humans as f64 };
                vec![
                    Value::Text(code),
                    Value::UInt(total),
                    Value::UInt(humans),
                    Value::Text(currency),
                    Value::UInt(orders),
                    Value::Int(revenue),
                    Value::Float(rate),
                ]
            })
            .collect();
        Ok(Table { report: self.report.name(), range: self.range.clone(), columns: self.columns.clone(), rows })
    }

    /// Top products in two steps: the top product keys, then their names (the single query
    /// would compute the top keys once more for the names' `IN`).
    async fn top_products(&self, clickhouse: &ClickhouseConfig, top: &str) -> Result<Table, ReportError> {
        let source = format!("report {}", self.report.name());
        let mut keys = Vec::new();
        for row in tsv_rows(&source, &tsv(clickhouse, top).await?) {
            let [key, units, revenue] = row?;
            let ([key, units], [revenue]) =
                (tsv_parse::<u64, 2>(&source, [key, units])?, tsv_parse::<i64, 1>(&source, [revenue])?);
            keys.push((key, units, revenue));
        }
        let mut names = std::collections::HashMap::new();
        if !keys.is_empty() {
            let list: Vec<String> = keys.iter().map(|(key, ..)| key.to_string()).collect();
            for row in tsv_rows(&source, &tsv(clickhouse, &product_names_sql(&list.join(", "))).await?) {
                let [key, product, sku, currency] = row?;
                let [key] = tsv_parse::<u64, 1>(&source, [key])?;
                names.insert(key, [unescape(product), unescape(sku), unescape(currency)]);
            }
        }
        let mut rows: Vec<(i64, u64, [String; 3])> = keys
            .into_iter()
            .map(|(key, units, revenue)| {
                let name = names.remove(&key).unwrap_or_else(|| {
                    // Only if `product_keys` lost rows: listed as the join would list it.
                    tracing::warn!(product_key = key, "a product key without a name in product_keys");
                    Default::default()
                });
                (revenue, units, name)
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then_with(|| a.2.cmp(&b.2)));
        let rows = rows
            .into_iter()
            .map(|(revenue, units, [product, sku, currency])| {
                vec![
                    Value::Text(product),
                    Value::Text(sku),
                    Value::Text(currency),
                    Value::UInt(units),
                    Value::Int(revenue),
                ]
            })
            .collect();
        Ok(Table { report: self.report.name(), range: self.range.clone(), columns: self.columns.clone(), rows })
    }

    /// The customers report with the new customers of the hours before `list`'s cutoff from the
    /// list, and those of later hours from the customers who paid since.
    pub fn customers_listed_sql(&self, interval: Interval, list: &new_customers::List) -> String {
        let range = &self.range;
        let first = range.bucket_sql(interval, "toStartOfHour(first_paid)");
        let fresh = format!(
            "SELECT bucket, sum(n) AS new_customers FROM (\
             SELECT {bucket} AS bucket, new_customers AS n FROM new_customers_hourly WHERE version = {version} AND {hours} \
             UNION ALL SELECT {first} AS bucket, toUInt64(1) AS n FROM (\
             SELECT minMerge(first_order) AS first_paid FROM customer_firsts WHERE customer IN (\
             SELECT customer FROM customer_ids_hourly WHERE hour >= toDateTime({cutoff})) \
             GROUP BY customer) WHERE first_paid >= toDateTime({cutoff}) AND {firsts}) GROUP BY bucket",
            bucket = range.bucket_sql(interval, "hour"),
            version = list.version,
            hours = range.hours_sql("hour"),
            cutoff = list.cutoff,
            firsts = range.hours_sql("first_paid"),
        );
        // Buckets of UTC days: the days before the cutoff's day come counted from the list of days.
        let active = if interval == Interval::Day && range.days_are_utc_days() && list.days_hold() {
            format!(
                "SELECT bucket, sum(active) AS active, sum(paid_orders) AS paid_orders FROM (\
                 SELECT toUInt32(day) AS bucket, active, paid_orders FROM active_customers_daily \
                 WHERE version = {version} AND {days} UNION ALL {since}) GROUP BY bucket",
                version = list.version,
                days = range.hours_sql("day"),
                since = active_sql(
                    range,
                    interval,
                    &format!(
                        "hour >= toDateTime({days_end}) AND {hours}",
                        days_end = list.days_end(),
                        hours = range.hours_sql("hour")
                    ),
                ),
            )
        } else {
            active_sql(range, interval, &range.hours_sql("hour"))
        };
        customers_from_sql(&active, &fresh)
    }

    /// Conversions' second step: clicks and human clicks of `codes` over the range.
    pub fn conversion_clicks_sql(&self, codes: &[String]) -> String {
        let literals: Vec<String> = codes.iter().map(|c| sql_string(c)).collect();
        format!(
            "SELECT code, sum(clicks), sum(human_clicks) FROM {} GROUP BY code",
            self.range.hours_and_days_where_sql(
                "code, clicks, human_clicks",
                "link_clicks_hourly",
                "link_code_clicks_daily",
                &format!("code IN ({})", literals.join(", ")),
            )
        )
    }

    /// The table from the query's `TabSeparated` output (the chdb portability test feeds the
    /// current engine's output through here too).
    pub fn table_from_tsv(&self, text: &str) -> Result<Table, ReportError> {
        let mut rows = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != self.columns.len() {
                return Err(SinkError::Corrupt {
                    key: format!("report {}", self.report.name()),
                    reason: format!("a row has {} fields, expected {}", fields.len(), self.columns.len()),
                }
                .into());
            }
            let row = self
                .columns
                .iter()
                .zip(fields)
                .map(|(column, field)| Value::parse(column.kind, field))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| SinkError::Corrupt {
                    key: format!("report {}", self.report.name()),
                    reason: format!("unreadable row `{line}`"),
                })?;
            rows.push(row);
        }
        if let Some(interval) = self.fill {
            rows = fill(rows, &self.range.buckets(interval), &self.columns);
        }
        Ok(Table { report: self.report.name(), range: self.range.clone(), columns: self.columns.clone(), rows })
    }
}

/// Top products' second step: product, SKU and currency of the product keys `keys` gives (a
/// list of numbers or a subquery), as `product_key, product_id, sku, currency`.
pub fn product_names_sql(keys: &str) -> String {
    format!(
        "SELECT product_key, any(product_id) AS product_id, any(sku) AS sku, any(currency) AS currency \
         FROM product_keys WHERE product_key IN ({keys}) GROUP BY product_key"
    )
}

/// `text` as a single-quoted SQL string literal.
pub(crate) fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What one [`rollup`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledUp {
    /// The leading links of closed days.
    pub links: leaders::Refreshed,
    /// The new customers per hour.
    pub customers: new_customers::Refreshed,
    /// Each link's counts of closed days.
    pub link_days: link_days::Refreshed,
}

/// A day [`rollup`] finished, as it goes (the first run over 90 days takes a while).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The day's leading links were listed: how many.
    Listed(jiff::civil::Date, u64),
    /// Every link's counts of the day were stored: the day's clicks.
    Rolled(jiff::civil::Date, u64),
}

/// The rollups reports read besides the views: the leading links of each closed UTC day of
/// the `days` before `now` and of today's closed hours ([`leaders::refresh`]), the new customers
/// per hour ([`new_customers::refresh`]), then each link's counts of the same closed days
/// ([`link_days::refresh`]); `progress` hears of each day done. Run by `runnel rollup` and by the
/// processors every `RUNNEL_ROLLUP_INTERVAL_SECS`.
pub async fn rollup(
    clickhouse: &ClickhouseConfig,
    now: Timestamp,
    days: u32,
    mut progress: impl FnMut(Progress),
) -> Result<RolledUp, ReportError> {
    let links = leaders::refresh(clickhouse, now, days, |day, n| progress(Progress::Listed(day, n))).await?;
    let customers = new_customers::refresh(clickhouse, now).await?;
    let link_days = link_days::refresh(clickhouse, now, days, |day, n| progress(Progress::Rolled(day, n))).await?;
    Ok(RolledUp { links, customers, link_days })
}

/// Keeps the two newest lists of `table`, a rollup's table with a partition per `version`: the
/// older ones are dropped as partitions, on a cluster from every shard's local table.
pub(crate) async fn keep_newest_versions(clickhouse: &ClickhouseConfig, table: &str) -> Result<(), ReportError> {
    let versions = tsv(clickhouse, &format!("SELECT DISTINCT version FROM {table} ORDER BY version DESC")).await?;
    for old in versions.lines().filter_map(|l| l.parse::<u64>().ok()).skip(2) {
        let drop = match clickhouse.cluster_name() {
            Some(cluster) => {
                let database = &clickhouse.database;
                format!("ALTER TABLE {database}.{table}_local ON CLUSTER {cluster} DROP PARTITION {old}")
            }
            None => format!("ALTER TABLE {table} DROP PARTITION {old}"),
        };
        clickhouse.client().query(&drop).execute().await.map_err(|e| clickhouse.error(e))?;
    }
    Ok(())
}

/// The rows of a `TabSeparated` answer (empty lines skipped), each split into exactly `N`
/// fields; a row with another count is [`unreadable`]. `source` names the table or report.
pub(crate) fn tsv_rows<'a, const N: usize>(
    source: &'a str,
    text: &'a str,
) -> impl Iterator<Item = Result<[&'a str; N], SinkError>> + 'a {
    text.lines().filter(|l| !l.is_empty()).map(move |line| {
        <[&str; N]>::try_from(line.split('\t').collect::<Vec<_>>()).map_err(|_| unreadable(source, line))
    })
}

/// Each of `fields` parsed, or [`unreadable`] naming the row.
pub(crate) fn tsv_parse<T: std::str::FromStr, const N: usize>(
    source: &str,
    fields: [&str; N],
) -> Result<[T; N], SinkError> {
    let bad = || unreadable(source, &fields.join("\t"));
    let parsed: Vec<T> = fields.iter().map(|f| f.parse().ok()).collect::<Option<_>>().ok_or_else(bad)?;
    parsed.try_into().map_err(|_| bad())
}

/// The error for a row of `source` that does not read as expected.
pub(crate) fn unreadable(source: &str, line: &str) -> SinkError {
    SinkError::Corrupt { key: source.into(), reason: format!("unreadable row `{line}`") }
}

/// Runs `sql` and returns its `TabSeparated` output.
pub(crate) async fn tsv(clickhouse: &ClickhouseConfig, sql: &str) -> Result<String, SinkError> {
    // A report reads a few small granules of pre-aggregated tables again and again: keeping them
    // decompressed in the server's cache saved about a third of a link breakdown's server time.
    // ClickHouse bypasses the cache for reads of more than `merge_tree_max_rows_to_use_cache`.
    let mut query = clickhouse.pooled_client().query(sql).with_setting("use_uncompressed_cache", "1");
    if clickhouse.cluster_name().is_some() {
        // `IN (subquery)` over Distributed tables becomes `GLOBAL IN` on a cluster: the set is
        // built once and sent to the shards. On one server a plain `IN` keeps the primary key in
        // use (18.16 ignores it for `GLOBAL IN`).
        query = query.with_setting("distributed_product_mode", "global");
    }
    let bytes = query
        .fetch_bytes("TabSeparated")
        .map_err(|e| clickhouse.error(e))?
        .collect()
        .await
        .map_err(|e| clickhouse.error(e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Rows for every bucket: those that came back, zeros for the others.
fn fill(rows: Vec<Vec<Value>>, buckets: &[i64], columns: &[Column]) -> Vec<Vec<Value>> {
    let mut by_time: std::collections::BTreeMap<i64, Vec<Value>> = rows
        .into_iter()
        .filter_map(|row| match row.first() {
            Some(Value::Time(t)) => Some((*t, row)),
            _ => None,
        })
        .collect();
    for bucket in buckets {
        by_time.entry(*bucket).or_insert_with(|| {
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| if i == 0 { Value::Time(*bucket) } else { Value::zero(c.kind) })
                .collect()
        });
    }
    by_time.into_values().collect()
}

/// How a column's values are typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Text,
    /// Unsigned integer.
    UInt,
    /// Signed integer (money in minor units).
    Int,
    /// Floating point (ratios, averages).
    Float,
    /// An instant, shown in the report's time zone.
    Time,
}

/// A column of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text.
    Text(String),
    /// Unsigned integer.
    UInt(u64),
    /// Signed integer.
    Int(i64),
    /// Floating point.
    Float(f64),
    /// Unix seconds.
    Time(i64),
}

impl Value {
    fn parse(kind: Kind, field: &str) -> Option<Self> {
        Some(match kind {
            Kind::Text => Self::Text(unescape(field)),
            Kind::UInt => Self::UInt(field.parse().ok()?),
            Kind::Int => Self::Int(field.parse().ok()?),
            Kind::Float => Self::Float(match field {
                "nan" | "-nan" | "inf" | "-inf" => 0.0,
                _ => field.parse().ok()?,
            }),
            Kind::Time => Self::Time(field.parse().ok()?),
        })
    }

    fn zero(kind: Kind) -> Self {
        match kind {
            Kind::Text => Self::Text(String::new()),
            Kind::UInt => Self::UInt(0),
            Kind::Int => Self::Int(0),
            Kind::Float => Self::Float(0.0),
            Kind::Time => Self::Time(0),
        }
    }
}

/// Undoes `TabSeparated` escaping.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A report's result.
#[derive(Clone, Debug)]
pub struct Table {
    /// The report's name.
    pub report: &'static str,
    /// Its range.
    pub range: Range,
    /// Its columns.
    pub columns: Vec<Column>,
    /// Its rows.
    pub rows: Vec<Vec<Value>>,
}

/// Today's (UTC) figures from the Redis counters: clicks (human, bot), order events by status,
/// revenue by status and currency, and the ten links with the most human clicks.
pub async fn live(counters: &crate::redis::Counters, now: Timestamp) -> Result<Table, ReportError> {
    let day = now.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let range = Range::resolve(Some(&day), Some(&day), Some("UTC"), now)?;
    let totals = counters.hgetall(&format!("totals:{{{day}}}")).await?;
    let orders = counters.hgetall(&format!("orders:{{{day}}}")).await?;
    let top = counters.top(&format!("top:{{{day}}}"), 10).await?;
    let row = |metric: &str, key: &str, value: i64| {
        vec![Value::Text(metric.into()), Value::Text(key.into()), Value::Int(value)]
    };
    let mut rows = vec![
        row("clicks", "human", totals.get("human").copied().unwrap_or(0)),
        row("clicks", "bot", totals.get("bot").copied().unwrap_or(0)),
    ];
    for (field, value) in &orders {
        if let Some(status) = field.strip_prefix("count:") {
            rows.push(row("orders", status, *value));
        }
    }
    for (field, value) in &orders {
        if let Some(status_currency) = field.strip_prefix("revenue:") {
            rows.push(row("revenue", &status_currency.replacen(':', " ", 1), *value));
        }
    }
    for (link_id, clicks) in top {
        rows.push(row("top_link", &link_id, clicks));
    }
    Ok(Table {
        report: "live",
        range,
        columns: cols(&[("metric", Kind::Text), ("key", Kind::Text), ("value", Kind::Int)]),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T10:30:00Z".parse().unwrap()
    }

    #[test]
    fn tab_separated_rows_are_read_by_column_kind_and_series_are_filled() {
        let params =
            ReportParams { from: Some("2026-11-20".into()), to: Some("2026-11-22".into()), ..Default::default() };
        let plan = Report::LinkSeries { link_id: 7 }.plan(&params, now()).unwrap();
        let day = |d: &str| {
            d.parse::<jiff::civil::Date>().unwrap().to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_second()
        };
        let table = plan.table_from_tsv(&format!("{}\t5\t4\t3\n", day("2026-11-21"))).unwrap();
        assert_eq!(table.rows.len(), 3, "one row per day");
        assert_eq!(table.rows[0], vec![Value::Time(day("2026-11-20")), Value::UInt(0), Value::UInt(0), Value::UInt(0)]);
        assert_eq!(table.rows[1], vec![Value::Time(day("2026-11-21")), Value::UInt(5), Value::UInt(4), Value::UInt(3)]);
        let error = plan.table_from_tsv("1\t2\n").unwrap_err().to_string();
        assert!(error.contains("2 fields"), "{error}");
    }

    #[test]
    fn text_fields_are_unescaped() {
        assert_eq!(unescape(r"a\tb\\c\nd"), "a\tb\\c\nd");
        assert_eq!(unescape("plain"), "plain");
    }

    #[test]
    fn no_report_reads_a_raw_table() {
        let params =
            ReportParams { from: Some("2026-10-01".into()), tz: Some("Asia/Tokyo".into()), ..Default::default() };
        let mut reports: Vec<Report> = NAMES.iter().map(|n| Report::named(n).unwrap()).collect();
        reports.push(Report::LinkSeries { link_id: 1 });
        reports.extend(DIMENSIONS.iter().map(|d| Report::breakdown(1, d).unwrap()));
        let day = jiff::civil::date(2026, 10, 5);
        let listed = leaders::Usable {
            lists: vec![
                leaders::Listed { span: leaders::Span::day(day), version: 1, floor: 3 },
                leaders::Listed { span: leaders::Span::first_hours(day.tomorrow().unwrap(), 9), version: 2, floor: 1 },
            ],
            unlisted: vec![jiff::civil::date(2026, 10, 6)],
            complete: false,
        };
        let top = Report::TopLinks.plan(&params, now()).unwrap();
        let bounds = leaders::Bounds { link_id: 1, code: "a".into(), lower: 1, clicks: 1, upper: 2 };
        let conversions = Report::Conversions.plan(&params, now()).unwrap();
        let mut statements: Vec<(String, String)> =
            reports.iter().map(|report| (format!("{report:?}"), report.plan(&params, now()).unwrap().sql)).collect();
        statements.extend([
            ("day totals".into(), leaders::day_totals_sql(day, now().to_zoned(jiff::tz::TimeZone::UTC).date())),
            ("lists".into(), leaders::lists_sql(day, day)),
            ("hours lists".into(), leaders::hours_lists_sql(day, day)),
            ("bounds".into(), leaders::bounds_sql(&top, &listed, 10)),
            ("exact".into(), leaders::exact_sql(&top, &[&bounds])),
            ("conversion clicks".into(), conversions.conversion_clicks_sql(&["a".into()])),
            ("attributed".into(), conversions.first.clone().unwrap()),
            ("top product keys".into(), Report::TopProducts.plan(&params, now()).unwrap().first.unwrap()),
            ("product names".into(), product_names_sql("1, 2")),
            ("link days".into(), link_days::rows_sql(link_days::Grain::Day, 1, (0, 86_400))),
            ("link hours".into(), link_days::rows_sql(link_days::Grain::Hour, 1, (0, 86_400))),
            ("link day counts".into(), link_days::counts_sql(1, (0, 86_400))),
            ("link day hours".into(), link_days::hours_sql(link_days::Grain::Day, 1, &[(0, 3600), (7200, 10_800)])),
        ]);
        for (report, sql) in statements {
            for raw in ["clicks", "orders", "links"] {
                assert!(
                    !sql.contains(&format!("FROM {raw} ")) && !sql.ends_with(&format!("FROM {raw}")),
                    "{report:?} reads {raw}: {sql}"
                );
            }
        }
    }

    #[test]
    fn tsv_rows_take_exactly_their_fields_and_name_a_bad_row() {
        let text = "a\t1\t2\n\nb\t3\t4\n";
        let rows: Vec<[&str; 3]> = tsv_rows("t", text).collect::<Result<_, _>>().unwrap();
        assert_eq!(rows, [["a", "1", "2"], ["b", "3", "4"]]);
        assert_eq!(tsv_parse::<u64, 2>("t", [rows[1][1], rows[1][2]]).unwrap(), [3, 4]);
        for bad in ["a\t1\n", "a\t1\t2\t3\n"] {
            let error = tsv_rows::<3>("link_leaders_daily", bad).next().unwrap().unwrap_err().to_string();
            assert!(error.contains("link_leaders_daily") && error.contains(bad.trim_end()), "{error}");
        }
        let error = tsv_parse::<u64, 2>("t", ["1", "x"]).unwrap_err().to_string();
        assert!(error.contains("unreadable row `1\tx`"), "{error}");
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let bad = |params: ReportParams, report: Report| report.plan(&params, now()).unwrap_err().param();
        assert_eq!(bad(ReportParams { limit: Some(0), ..Default::default() }, Report::TopLinks), Some("limit"));
        assert_eq!(
            bad(ReportParams { interval: Some("hour".into()), ..Default::default() }, Report::Sales),
            Some("interval")
        );
        assert_eq!(Report::breakdown(1, "planet").unwrap_err().param(), Some("dimension"));
    }
}
