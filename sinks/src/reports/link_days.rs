//! Link days: each link's clicks, human clicks and unique human visitors of each closed UTC day
//! and of each of its hours, merged once by the rollup and stored as plain counts (`link_days`,
//! `link_hours`, migration 0019). A link's series by UTC day or by hour then reads a row per
//! whole day or hour instead of merging `uniqIf` states on every call.
//!
//! Why the answer stays exact: a row is read only while the link's clicks of that day in
//! `clicks_hourly_by_link`, the table the series otherwise merges, are the count the row was made
//! from. Clicks are only ever added, so the same count means the same clicks, and their visitors
//! merge to the same number. A day without such a row (not rolled yet, or a click stored late) is
//! merged from its hours as before. [`refresh`] rolls a day again when its totals moved on.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::leaders::{self, Span};
use super::{Interval, Plan, ReportError, Table, tsv, tsv_parse, tsv_rows};
use crate::clickhouse::ClickhouseConfig;

/// What one [`refresh`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Days with clicks in the window (before today).
    pub days: usize,
    /// Days whose rows were current already.
    pub current: usize,
    /// Days rolled now.
    pub rolled: Vec<Date>,
    /// Days that took clicks while they were being rolled (rolled again next time; meanwhile the
    /// report uses the rows of links that took none).
    pub changing: Vec<Date>,
}

/// The days `link_days` holds in `[first, end)`: day, version, the day's clicks and human clicks
/// when rolled.
pub fn rolled_sql(first: Date, end: Date) -> String {
    format!(
        "SELECT day, version, clicks, human_clicks FROM link_days_rolled \
         WHERE day >= toDate('{first}') AND day < toDate('{end}')"
    )
}

/// The statements that store every link's counts of `day` as `version`: per hour
/// (`link_hours`), then per day (`link_days`).
pub fn roll_sql(day: Date, version: u64) -> [String; 2] {
    let span = Span::day(day);
    let (start, end) = (span.start(), span.end());
    let counts = "countMerge(clicks), sumMerge(human_clicks), toUInt64(uniqIfMerge(visitors))";
    let hours = format!("FROM clicks_hourly_by_link WHERE hour >= toDateTime({start}) AND hour < toDateTime({end})");
    [
        format!(
            "INSERT INTO link_hours (link_id, hour, version, clicks, human_clicks, visitors) \
             SELECT link_id, hour, toUInt64({version}), {counts} {hours} GROUP BY link_id, hour"
        ),
        format!(
            "INSERT INTO link_days (link_id, day, version, clicks, human_clicks, visitors) \
             SELECT link_id, toDate('{day}'), toUInt64({version}), {counts} {hours} GROUP BY link_id"
        ),
    ]
}

/// Rolls every UTC day of the `days` before today (`now`'s UTC day) that has clicks and whose
/// rows are missing or out of date (the day's clicks or human clicks in `dimension_clicks_hourly`
/// are not those it was rolled with). `progress` hears of each day rolled, with its clicks.
pub async fn refresh(
    clickhouse: &ClickhouseConfig,
    now: Timestamp,
    days: u32,
    mut progress: impl FnMut(Date, u64),
) -> Result<Refreshed, ReportError> {
    let today = now.to_zoned(TimeZone::UTC).date();
    let first = today
        .checked_sub(jiff::Span::new().days(i64::from(days)))
        .map_err(|e| ReportError::invalid("days", e.to_string()))?;
    let sql = [leaders::day_totals_sql(first, today), rolled_sql(first, today)];
    let (hours, rolled) = tokio::try_join!(tsv(clickhouse, &sql[0]), tsv(clickhouse, &sql[1]))?;
    let mut totals = std::collections::BTreeMap::<Date, (u64, u64)>::new();
    for (hour, (clicks, humans)) in leaders::hour_totals(&hours)? {
        let Ok(day) = Timestamp::from_second(hour).map(|t| t.to_zoned(TimeZone::UTC).date()) else { continue };
        let day = totals.entry(day).or_default();
        *day = (day.0 + clicks, day.1 + humans);
    }
    const SOURCE: &str = "link_days_rolled";
    let mut newest = std::collections::BTreeMap::<Date, (u64, (u64, u64))>::new();
    for row in tsv_rows(SOURCE, &rolled) {
        let [day, version, clicks, humans] = row?;
        let [day] = tsv_parse::<Date, 1>(SOURCE, [day])?;
        let [version, clicks, humans] = tsv_parse::<u64, 3>(SOURCE, [version, clicks, humans])?;
        if newest.get(&day).is_none_or(|(v, _)| *v < version) {
            newest.insert(day, (version, (clicks, humans)));
        }
    }
    let mut done = Refreshed { days: totals.len(), ..Refreshed::default() };
    for (day, day_totals) in totals {
        if newest.get(&day).is_some_and(|(_, rolled)| *rolled == day_totals) {
            done.current += 1;
            continue;
        }
        let span_totals = leaders::span_totals_sql(Span::day(day));
        let before = leaders::totals(clickhouse, &span_totals).await?;
        let version = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
        for insert in roll_sql(day, version) {
            clickhouse.client().query(&insert).execute().await.map_err(|e| clickhouse.error(e))?;
        }
        if leaders::totals(clickhouse, &span_totals).await? != before {
            done.changing.push(day);
            continue;
        }
        let record = format!(
            "INSERT INTO link_days_rolled (day, version, clicks, human_clicks) \
             VALUES ('{day}', {version}, {}, {})",
            before.0, before.1
        );
        clickhouse.client().query(&record).execute().await.map_err(|e| clickhouse.error(e))?;
        progress(day, before.0);
        done.rolled.push(day);
    }
    Ok(done)
}

/// What a series' buckets are: UTC hours (`link_hours`) or UTC days (`link_days`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grain {
    /// A bucket per UTC hour.
    Hour,
    /// A bucket per UTC day.
    Day,
}

impl Grain {
    fn bucket_sql(self) -> &'static str {
        match self {
            Self::Hour => "toUInt32(hour)",
            Self::Day => "toUInt32(toStartOfDay(hour, 'UTC'))",
        }
    }
}

/// The link's newest rows of the UTC days `[first, end)` (Unix seconds, midnights), a row per
/// bucket: bucket (Unix seconds), clicks, human clicks, visitors.
pub fn rows_sql(grain: Grain, link_id: u64, (first, end): (i64, i64)) -> String {
    let newest = "argMax(clicks, version), argMax(human_clicks, version), argMax(visitors, version)";
    match grain {
        Grain::Day => format!(
            "SELECT toUInt32(day) * 86400 AS b, {newest} FROM link_days \
             WHERE link_id = {link_id} AND day >= toDate('{}') AND day < toDate('{}') GROUP BY b",
            super::range::utc_date(first),
            super::range::utc_date(end),
        ),
        Grain::Hour => format!(
            "SELECT toUInt32(hour) AS b, {newest} FROM link_hours \
             WHERE link_id = {link_id} AND hour >= toDateTime({first}) AND hour < toDateTime({end}) GROUP BY b"
        ),
    }
}

/// The link's clicks of each UTC day in `[first, end)` as `clicks_hourly_by_link` holds them
/// now: day number (days since 1970), clicks.
pub fn counts_sql(link_id: u64, (first, end): (i64, i64)) -> String {
    format!(
        "SELECT intDiv(toUInt32(hour), 86400) AS d, countMerge(clicks) FROM clicks_hourly_by_link \
         WHERE link_id = {link_id} AND hour >= toDateTime({first}) AND hour < toDateTime({end}) GROUP BY d"
    )
}

/// The link's series over the hour slices `hours` (`[start, end)`, Unix seconds), merged from
/// `clicks_hourly_by_link` as the plain query does: bucket, clicks, human clicks, visitors.
pub fn hours_sql(grain: Grain, link_id: u64, hours: &[(i64, i64)]) -> String {
    let slices: Vec<String> =
        hours.iter().map(|(a, b)| format!("(hour >= toDateTime({a}) AND hour < toDateTime({b}))")).collect();
    format!(
        "SELECT {} AS bucket, countMerge(clicks), sumMerge(human_clicks), toUInt64(uniqIfMerge(visitors)) \
         FROM clicks_hourly_by_link WHERE link_id = {link_id} AND ({}) GROUP BY bucket",
        grain.bucket_sql(),
        slices.join(" OR "),
    )
}

/// A link's series by hour, or by day where the days are UTC days, answered with the closed
/// days' rows of `link_hours` or `link_days` (`None` for any other series, or a range without a
/// closed whole UTC day: the plain query answers). Three queries at once: the rows, the link's
/// clicks of those days now (a day's rows are used only where their clicks add up to that) and
/// the range's other hours merged (today, partial days at the ends); then a fourth for the days
/// whose rows are missing or out of date. The same rows as the plain query.
pub async fn series(
    clickhouse: &ClickhouseConfig,
    plan: &Plan,
    link_id: u64,
    now: Timestamp,
) -> Result<Option<Table>, ReportError> {
    let range = &plan.range;
    let grain = match plan.fill {
        Some(Interval::Hour) => Grain::Hour,
        Some(Interval::Day) if range.days_are_utc_days() => Grain::Day,
        _ => return Ok(None),
    };
    let split = range.split();
    let Some((first, end)) = split.days else { return Ok(None) };
    let closed_end = end.min(leaders::midnight(now.to_zoned(TimeZone::UTC).date()));
    if closed_end <= first {
        return Ok(None);
    }
    let closed = (first, closed_end);
    let mut others = split.hours.clone();
    if closed_end < end {
        others.push((closed_end, end));
    }
    let sql = [rows_sql(grain, link_id, closed), counts_sql(link_id, closed), hours_sql(grain, link_id, &others)];
    let (rows, counts, mut text) = tokio::try_join!(tsv(clickhouse, &sql[0]), tsv(clickhouse, &sql[1]), async {
        if others.is_empty() { Ok(String::new()) } else { tsv(clickhouse, &sql[2]).await }
    })?;
    const SOURCE: &str = "link_days";
    let mut counted = std::collections::BTreeMap::new();
    for row in tsv_rows(SOURCE, &counts) {
        let [day, clicks] = tsv_parse::<i64, 2>(SOURCE, row?)?;
        counted.insert(day, clicks);
    }
    let mut by_day = std::collections::BTreeMap::<i64, (i64, Vec<[i64; 4]>)>::new();
    for row in tsv_rows(SOURCE, &rows) {
        let row = tsv_parse::<i64, 4>(SOURCE, row?)?;
        let day = by_day.entry(row[0].div_euclid(86_400)).or_default();
        day.0 += row[1];
        day.1.push(row);
    }
    for (day, (clicks, rows)) in by_day {
        if counted.get(&day) == Some(&clicks) {
            counted.remove(&day);
            for [bucket, clicks, humans, visitors] in rows {
                text.push_str(&format!("{bucket}\t{clicks}\t{humans}\t{visitors}\n"));
            }
        }
    }
    // Days with clicks and no current rows: merged from their hours.
    let mut stale: Vec<(i64, i64)> = Vec::new();
    for day in counted.keys() {
        match stale.last_mut() {
            Some((_, end)) if *end == day * 86_400 => *end += 86_400,
            _ => stale.push((day * 86_400, (day + 1) * 86_400)),
        }
    }
    if !stale.is_empty() {
        text.push_str(&tsv(clickhouse, &hours_sql(grain, link_id, &stale)).await?);
    }
    plan.table_from_tsv(&text).map(Some)
}
