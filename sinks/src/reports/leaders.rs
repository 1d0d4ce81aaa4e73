//! Daily leaders: each closed UTC day's leading links by human clicks (`link_leaders_daily`,
//! migration 0010). With them the top-links report over a long range reads about a thousand
//! rows per listed day instead of one row per link and day, and still answers exactly.
//!
//! Why the answer stays exact: on a listed day no link left out of the list had more human
//! clicks than the list's floor. Over a range, a link's human clicks are at least its listed
//! counts plus its exact counts on the parts of the range read whole (hours at the ends, days not
//! listed): its lower bound. They are at most that plus the floors of the listed days it is
//! missing from: its upper bound. A link whose upper bound is below the N-th highest lower bound
//! cannot be among the top N; the few others are summed exactly from `clicks_hourly_by_link` and
//! ranked as the plain query ranks them. When the bounds prove nothing (no listed day, or
//! clicks spread so evenly that the floors add up past the leaders), the report runs its plain
//! query over every link.
//!
//! A list is used only while its day's totals (from `dimension_clicks_hourly`) are still those
//! it was made from, so a click stored late for a listed day sends the report back to reading
//! that day whole until [`refresh`] lists it again.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::{Plan, ReportError, Table, Value, tsv, tsv_parse, tsv_rows, unreadable};
use crate::clickhouse::ClickhouseConfig;

/// Links listed per day.
pub const LEADERS_PER_DAY: u32 = 1000;

/// Most days without a current list that a report reads whole beside the lists.
pub const MAX_UNLISTED_DAYS: usize = 7;

/// Days [`refresh`] looks back by default.
pub const DEFAULT_DAYS: u32 = 90;

/// A UTC day's totals now and its newest list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayState {
    /// The UTC day.
    pub day: Date,
    /// Its clicks now.
    pub clicks: u64,
    /// Its human clicks now.
    pub humans: u64,
    /// The newest list's version (0: never listed).
    pub version: u64,
    /// Rows the newest list was made with.
    pub listed: u64,
    /// Rows of it stored.
    pub rows: u64,
    /// The day's clicks when it was listed.
    pub listed_clicks: u64,
    /// The day's human clicks when it was listed.
    pub listed_humans: u64,
    /// No link left out of the list had more human clicks than this.
    pub floor: u64,
}

impl DayState {
    /// Whether the newest list is whole and the day's totals are still the ones it was made from.
    pub fn is_current(&self) -> bool {
        self.version != 0
            && self.rows == self.listed
            && self.listed_clicks == self.clicks
            && self.listed_humans == self.humans
    }
}

fn midnight(day: Date) -> i64 {
    day.to_zoned(TimeZone::UTC).map(|z| z.timestamp().as_second()).unwrap_or(0)
}

/// Clicks and human clicks of every UTC day in `[first, end)` that has clicks.
pub fn day_totals_sql(first: Date, end: Date) -> String {
    format!(
        "SELECT toDate(hour, 'UTC') AS day, sum(clicks), sum(human_clicks) FROM dimension_clicks_hourly \
         WHERE dimension = 'channel' AND hour >= toDateTime({}) AND hour < toDateTime({}) GROUP BY day",
        midnight(first),
        midnight(end),
    )
}

/// Every list of the days in `[first, end)`: day, version, rows meant, rows stored, the day's
/// clicks and human clicks then, floor.
pub fn lists_sql(first: Date, end: Date) -> String {
    format!(
        "SELECT day, version, any(listed), count(), any(day_clicks), any(day_humans), any(floor_humans) \
         FROM link_leaders_daily WHERE day >= toDate('{first}') AND day < toDate('{end}') GROUP BY day, version"
    )
}

/// The state of every day in `[first, end)` that has clicks, in order.
pub async fn day_states(clickhouse: &ClickhouseConfig, first: Date, end: Date) -> Result<Vec<DayState>, ReportError> {
    let (totals_sql, lists_sql) = (day_totals_sql(first, end), lists_sql(first, end));
    let (totals, lists) = tokio::try_join!(tsv(clickhouse, &totals_sql), tsv(clickhouse, &lists_sql))?;
    const SOURCE: &str = "link_leaders_daily";
    let mut states = std::collections::BTreeMap::new();
    for row in tsv_rows(SOURCE, &totals) {
        let [day, clicks, humans] = row?;
        let ([day], [clicks, humans]) = (tsv_parse::<Date, 1>(SOURCE, [day])?, tsv_parse(SOURCE, [clicks, humans])?);
        states.insert(
            day,
            DayState {
                day,
                clicks,
                humans,
                version: 0,
                listed: 0,
                rows: 0,
                listed_clicks: 0,
                listed_humans: 0,
                floor: 0,
            },
        );
    }
    // Versions are microseconds: one shared by two days (two refreshes in the same instant)
    // would let the report read one day's list as the other's, so neither is used.
    let mut days_of_version: std::collections::HashMap<u64, Vec<Date>> = std::collections::HashMap::new();
    let mut newest: std::collections::BTreeMap<Date, [u64; 6]> = std::collections::BTreeMap::new();
    for row in tsv_rows(SOURCE, &lists) {
        let [day, version, listed, rows, clicks, humans, floor] = row?;
        let [day] = tsv_parse::<Date, 1>(SOURCE, [day])?;
        let [version, listed, rows, clicks, humans, floor] =
            tsv_parse(SOURCE, [version, listed, rows, clicks, humans, floor])?;
        days_of_version.entry(version).or_default().push(day);
        if newest.get(&day).is_none_or(|n| n[0] < version) {
            newest.insert(day, [version, listed, rows, clicks, humans, floor]);
        }
    }
    for (day, [version, listed, rows, listed_clicks, listed_humans, floor]) in newest {
        if days_of_version.get(&version).is_some_and(|days| days.len() > 1) {
            continue;
        }
        if let Some(state) = states.get_mut(&day) {
            *state = DayState { version, listed, rows, listed_clicks, listed_humans, floor, ..state.clone() };
        }
    }
    Ok(states.into_values().collect())
}

/// The day's clicks and human clicks as `link_clicks_daily` holds them, the table lists are
/// made from.
pub fn daily_totals_sql(day: Date) -> String {
    format!("SELECT sum(clicks), sum(human_clicks) FROM link_clicks_daily WHERE day = toDate('{day}')")
}

/// How many links the day's list will hold, and the human clicks of the last one.
pub fn list_size_sql(day: Date) -> String {
    format!(
        "SELECT count(), min(h) FROM (SELECT link_id, sum(human_clicks) AS h FROM link_clicks_daily \
         WHERE day = toDate('{day}') GROUP BY link_id ORDER BY h DESC, link_id LIMIT {LEADERS_PER_DAY})"
    )
}

/// The statement that stores a day's list.
pub fn list_sql(day: Date, version: u64, listed: u64, floor: u64, (clicks, humans): (u64, u64)) -> String {
    format!(
        "INSERT INTO link_leaders_daily \
         (day, version, link_id, code, clicks, human_clicks, listed, floor_humans, day_clicks, day_humans) \
         SELECT toDate('{day}'), toUInt64({version}), link_id, any(code), sum(clicks) AS c, sum(human_clicks) AS h, \
         toUInt32({listed}), toUInt64({floor}), toUInt64({clicks}), toUInt64({humans}) \
         FROM link_clicks_daily WHERE day = toDate('{day}') GROUP BY link_id ORDER BY h DESC, link_id LIMIT {LEADERS_PER_DAY}"
    )
}

/// What one [`refresh`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Days with clicks in the window.
    pub days: usize,
    /// Days whose newest list was current already.
    pub current: usize,
    /// Days listed now.
    pub listed: Vec<Date>,
    /// Days that took clicks while they were being listed (listed again next time).
    pub changing: Vec<Date>,
}

/// Lists every UTC day of the `days` before today (`now`'s UTC day) whose newest list is
/// missing or out of date; `progress` hears of each day listed.
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
    let states = day_states(clickhouse, first, today).await?;
    let mut done = Refreshed { days: states.len(), ..Refreshed::default() };
    for state in states {
        if state.is_current() {
            done.current += 1;
            continue;
        }
        let before = totals(clickhouse, &daily_totals_sql(state.day)).await?;
        let size = totals(clickhouse, &list_size_sql(state.day)).await?;
        let (listed, floor) = (size.0, if size.0 < u64::from(LEADERS_PER_DAY) { 0 } else { size.1 });
        let version = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
        // On a cluster the client inserts with `insert_distributed_sync` (ClickhouseConfig): every
        // shard has its rows when the INSERT returns (the report checks the count).
        let insert = clickhouse.client().query(&list_sql(state.day, version, listed, floor, before));
        insert.execute().await.map_err(|e| clickhouse.error(e))?;
        // Clicks stored for the day meanwhile: the list keeps the totals from before them, so
        // no report uses it; the next refresh lists the day again.
        if totals(clickhouse, &daily_totals_sql(state.day)).await? != before {
            done.changing.push(state.day);
        } else {
            progress(state.day, listed);
            done.listed.push(state.day);
        }
    }
    Ok(done)
}

async fn totals(clickhouse: &ClickhouseConfig, sql: &str) -> Result<(u64, u64), ReportError> {
    let text = tsv(clickhouse, sql).await?;
    let mut fields = text.trim().split('\t').map(|f| f.parse::<u64>());
    match (fields.next(), fields.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(crate::SinkError::Corrupt { key: sql.into(), reason: format!("unreadable answer `{}`", text.trim()) }
            .into()),
    }
}

/// The lists a range can use: its whole UTC days with a current list.
#[derive(Clone, Debug, Default)]
pub struct Usable {
    /// `(day, version, floor)` of each.
    pub lists: Vec<(Date, u64, u64)>,
    /// The whole UTC days with clicks and no current list (read whole).
    pub unlisted: Vec<Date>,
    /// Whether every list holds every link of its day (fewer than [`LEADERS_PER_DAY`]).
    pub complete: bool,
}

impl Usable {
    /// Sorts the days of `states` into listed and unlisted.
    pub fn from_states(states: &[DayState]) -> Self {
        let mut usable = Self { complete: true, ..Self::default() };
        for state in states {
            if state.is_current() {
                usable.complete &= state.listed < u64::from(LEADERS_PER_DAY);
                usable.lists.push((state.day, state.version, state.floor));
            } else {
                usable.unlisted.push(state.day);
            }
        }
        usable
    }

    /// The most human clicks a link left out of every list can have on the listed days.
    pub fn floors(&self) -> u64 {
        self.lists.iter().map(|(_, _, floor)| floor).sum()
    }
}

/// Links with their bounds, highest upper bound first: `link_id, code, human clicks, clicks,
/// floors of the lists it is on` (the counts of the lists and of the parts read whole); at most
/// `rows` of them.
pub fn bounds_sql(plan: &Plan, usable: &Usable, rows: usize) -> String {
    let split = plan.range.split();
    let versions: Vec<String> = usable.lists.iter().map(|(_, version, _)| version.to_string()).collect();
    let (first, last) = match (usable.lists.first(), usable.lists.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ => (plan.range.from, plan.range.from),
    };
    let mut parts = vec![format!(
        "SELECT link_id, code, human_clicks AS h, clicks AS c, floor_humans AS f FROM link_leaders_daily \
         WHERE day >= toDate('{first}') AND day <= toDate('{last}') AND version IN ({})",
        versions.join(", ")
    )];
    if !split.hours.is_empty() {
        parts.push(format!(
            "SELECT link_id, code, human_clicks AS h, clicks AS c, toUInt64(0) AS f FROM link_clicks_hourly WHERE {}",
            plan.range.split_hours_sql(&split, "hour")
        ));
    }
    if !usable.unlisted.is_empty() {
        let days: Vec<String> = usable.unlisted.iter().map(|d| format!("toDate('{d}')")).collect();
        parts.push(format!(
            "SELECT link_id, code, human_clicks AS h, clicks AS c, toUInt64(0) AS f FROM link_clicks_daily WHERE day IN ({})",
            days.join(", ")
        ));
    }
    format!(
        "SELECT link_id, any(code) AS link_code, sum(h) AS lower, sum(c) AS listed_clicks, sum(f) AS listed_floors \
         FROM ({}) GROUP BY link_id ORDER BY toInt64(lower) - toInt64(listed_floors) DESC, link_id LIMIT {rows}",
        parts.join(" UNION ALL ")
    )
}

/// One link's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The link.
    pub link_id: u64,
    /// Its code.
    pub code: String,
    /// At least this many human clicks in the range.
    pub lower: u64,
    /// Clicks in the lists it is on and the parts read whole (all of them when `upper == lower`).
    pub clicks: u64,
    /// At most this many.
    pub upper: u64,
}

/// The links that can be among the top `limit`, when the bounds prove it: `rows` are the
/// answer of [`bounds_sql`] asked for `asked` rows, `floors` is [`Usable::floors`], `complete`
/// [`Usable::complete`]. `None` when a link not among them could still be in the top `limit`.
pub fn contenders(
    mut rows: Vec<Bounds>,
    asked: usize,
    floors: u64,
    complete: bool,
    limit: usize,
) -> Option<Vec<Bounds>> {
    if rows.len() < limit {
        // Fewer links than the list asks for: the answer only if no other link has a click in
        // the range, that is every list holds its whole day and every row came back.
        return (complete && rows.len() < asked).then_some(rows);
    }
    let mut lowers: Vec<u64> = rows.iter().map(|b| b.lower).collect();
    lowers.sort_unstable_by(|a, b| b.cmp(a));
    let cut = lowers[limit - 1];
    // A link in no list and not read whole has at most `floors`; a link beyond the rows asked
    // has at most the last row's upper bound. Either must stay strictly below the cut.
    if floors >= cut {
        return None;
    }
    if rows.len() >= asked && rows.iter().map(|b| b.upper).min().unwrap_or(0) >= cut {
        return None;
    }
    rows.retain(|b| b.upper >= cut);
    Some(rows)
}

/// The exact clicks and human clicks of `links` over the range.
pub fn exact_sql(plan: &Plan, links: &[&Bounds]) -> String {
    let ids: Vec<String> = links.iter().map(|b| b.link_id.to_string()).collect();
    format!(
        "SELECT link_id, countMerge(clicks) AS total, sumMerge(human_clicks) AS humans FROM clicks_hourly_by_link \
         WHERE link_id IN ({}) AND {} GROUP BY link_id",
        ids.join(", "),
        plan.range.hours_sql("hour"),
    )
}

/// The top-links report of `plan` from the daily leaders, or `None` when they prove nothing
/// for it (the caller then runs the plain query).
pub async fn top_links(clickhouse: &ClickhouseConfig, plan: &Plan, limit: usize) -> Result<Option<Table>, ReportError> {
    let Some((first, end)) = plan.range.split().days else { return Ok(None) };
    let day = |seconds: i64| Timestamp::from_second(seconds).map(|t| t.to_zoned(TimeZone::UTC).date());
    let (Ok(first), Ok(end)) = (day(first), day(end)) else { return Ok(None) };
    let usable = Usable::from_states(&day_states(clickhouse, first, end).await?);
    // Days read whole cost a row per link each; past a week of them (a range reaching back
    // before the rollup's 90 days, say) the plain query's monthly rollups read less.
    if usable.lists.is_empty() || usable.unlisted.len() > MAX_UNLISTED_DAYS {
        return Ok(None);
    }
    let asked = (4 * limit).max(200);
    let text = tsv(clickhouse, &bounds_sql(plan, &usable, asked)).await?;
    let floors = usable.floors();
    let source = format!("report {}", plan.report.name());
    let mut rows = Vec::new();
    for row in tsv_rows(&source, &text) {
        let fields = row?;
        let [id, code, lower, clicks, listed_floors] = fields;
        let [link_id, lower, clicks, listed_floors] = tsv_parse(&source, [id, lower, clicks, listed_floors])?;
        // A link on more lists than the range has: not a row this query gives.
        let upper = floors.checked_sub(listed_floors).map(|extra| lower + extra);
        let upper = upper.ok_or_else(|| unreadable(&source, &fields.join("\t")))?;
        rows.push(Bounds { link_id, code: super::unescape(code), lower, clicks, upper });
    }
    let Some(mut contenders) = contenders(rows, asked, floors, usable.complete, limit) else { return Ok(None) };
    // A contender on every list (or left out only of lists that hold every link of their day)
    // has its exact counts already; the others are summed over the range.
    let inexact: Vec<&Bounds> = contenders.iter().filter(|b| b.upper > b.lower).collect();
    if !inexact.is_empty() {
        let text = tsv(clickhouse, &exact_sql(plan, &inexact)).await?;
        let mut exact = std::collections::HashMap::new();
        for row in tsv_rows(&source, &text) {
            let [link_id, total, humans] = tsv_parse(&source, row?)?;
            exact.insert(link_id, (total, humans));
        }
        for bounds in contenders.iter_mut().filter(|b| b.upper > b.lower) {
            let (total, humans) = exact.get(&bounds.link_id).copied().unwrap_or((0, 0));
            (bounds.clicks, bounds.lower, bounds.upper) = (total, humans, humans);
        }
    }
    // As the plain query orders: human clicks, then clicks, then link id.
    contenders
        .sort_unstable_by(|a, b| b.lower.cmp(&a.lower).then(b.clicks.cmp(&a.clicks)).then(a.link_id.cmp(&b.link_id)));
    contenders.truncate(limit);
    let rows = contenders
        .into_iter()
        .map(|b| vec![Value::UInt(b.link_id), Value::Text(b.code), Value::UInt(b.clicks), Value::UInt(b.lower)])
        .collect();
    Ok(Some(Table { report: plan.report.name(), range: plan.range.clone(), columns: plan.columns.clone(), rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(link_id: u64, lower: u64, upper: u64) -> Bounds {
        Bounds { link_id, code: format!("c{link_id}"), lower, clicks: lower, upper }
    }

    #[test]
    fn contenders_are_the_links_whose_upper_bound_reaches_the_nth_lower_bound() {
        let rows = vec![b(1, 100, 110), b(2, 90, 95), b(3, 50, 91), b(4, 40, 89), b(5, 10, 30)];
        let picked = contenders(rows, 10, 20, false, 2).unwrap();
        assert_eq!(picked.iter().map(|b| b.link_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn the_bounds_prove_nothing_when_unlisted_links_could_reach_the_cut() {
        let rows = vec![b(1, 100, 110), b(2, 90, 95)];
        assert!(contenders(rows.clone(), 10, 90, false, 2).is_none(), "a link in no list may have 90");
        assert!(contenders(rows.clone(), 10, 89, false, 2).is_some());
        // Fewer rows than the limit: all there is only when the lists hold every link.
        assert!(contenders(rows.clone(), 10, 0, false, 3).is_none());
        assert_eq!(contenders(rows.clone(), 10, 0, true, 3).map(|r| r.len()), Some(2));
        assert!(contenders(rows.clone(), 2, 0, true, 3).is_none(), "more rows may follow");
        // All rows asked for came back and the last still reaches the cut: more may follow.
        assert!(contenders(rows.clone(), 2, 0, false, 2).is_none());
        assert!(contenders(vec![b(1, 100, 110), b(2, 90, 95), b(3, 0, 89)], 3, 0, false, 2).is_some());
    }

    #[test]
    fn a_list_is_current_only_while_its_day_totals_hold_and_all_its_rows_are_stored() {
        let state = DayState {
            day: jiff::civil::date(2026, 11, 20),
            clicks: 10,
            humans: 8,
            version: 5,
            listed: 3,
            rows: 3,
            listed_clicks: 10,
            listed_humans: 8,
            floor: 0,
        };
        assert!(state.is_current());
        assert!(!DayState { clicks: 11, ..state.clone() }.is_current());
        assert!(!DayState { humans: 9, ..state.clone() }.is_current());
        assert!(!DayState { rows: 2, ..state.clone() }.is_current());
        assert!(!DayState { version: 0, ..state.clone() }.is_current());
    }
}
