//! Daily leaders: each closed UTC day's leading links by human clicks (`link_leaders_daily`,
//! migration 0010), and the current day's closed hours' (`link_leaders_hours`, 0018). With them
//! the top-links report over a long range reads about a thousand rows per listed day instead of
//! one row per link and day, and still answers exactly.
//!
//! Why the answer stays exact: on a listed span (a day, or a day's first hours) no link left out
//! of the list had more human clicks than the list's floor. Over a range, a link's human clicks
//! are at least its listed counts plus its exact counts on the parts of the range read whole
//! (hours at the ends, the hours of a day after its listed first hours, days not listed): its
//! lower bound. They are at most that plus the floors of the lists it is missing from: its upper
//! bound. A link whose upper bound is below the N-th highest lower bound cannot be among the top
//! N; the few others are summed exactly from `clicks_hourly_by_link` and ranked as the plain
//! query ranks them. When the bounds prove nothing (no listed day, or clicks spread so evenly
//! that the floors add up past the leaders), the report runs its plain query over every link.
//!
//! A list is used only while its span's totals (from `dimension_clicks_hourly`) are still those
//! it was made from, so a click stored late for a listed span sends the report back to reading
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

/// What a list covers: a UTC day's first `hours` hours, the whole day at 24.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// The UTC day.
    pub day: Date,
    /// Its first hours (1 to 24).
    pub hours: u8,
}

impl Span {
    /// The whole of `day`.
    pub fn day(day: Date) -> Self {
        Self { day, hours: 24 }
    }

    /// The first `hours` hours of `day`.
    pub fn first_hours(day: Date, hours: u8) -> Self {
        Self { day, hours: hours.min(24) }
    }

    /// Whether it is the whole day.
    pub fn is_whole_day(&self) -> bool {
        self.hours >= 24
    }

    /// Its first second.
    pub fn start(&self) -> i64 {
        midnight(self.day)
    }

    /// The second after it.
    pub fn end(&self) -> i64 {
        midnight(self.day) + 3600 * i64::from(self.hours)
    }

    /// The rest of its day: `[end, next midnight)`, empty for a whole day.
    pub fn rest(&self) -> (i64, i64) {
        (self.end(), midnight(self.day) + 86_400)
    }

    /// The table its lists go to.
    pub fn table(&self) -> &'static str {
        if self.is_whole_day() { "link_leaders_daily" } else { "link_leaders_hours" }
    }

    /// `FROM … WHERE …` of the per-link rows its lists are made from: the day's rows of
    /// `link_clicks_daily`, or the hours' rows of `link_clicks_hourly`.
    fn source_sql(&self) -> String {
        if self.is_whole_day() {
            format!("FROM link_clicks_daily WHERE day = toDate('{}')", self.day)
        } else {
            format!(
                "FROM link_clicks_hourly WHERE hour >= toDateTime({}) AND hour < toDateTime({})",
                self.start(),
                self.end()
            )
        }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_whole_day() {
            write!(f, "{}", self.day)
        } else {
            write!(f, "{} 00:00-{:02}:00", self.day, self.hours)
        }
    }
}

/// The newest list of a span, and the span's totals now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListState {
    /// What it covers.
    pub span: Span,
    /// Its version.
    pub version: u64,
    /// Rows it was made with.
    pub listed: u64,
    /// Rows of it stored.
    pub rows: u64,
    /// The span's clicks when it was listed.
    pub listed_clicks: u64,
    /// The span's human clicks when it was listed.
    pub listed_humans: u64,
    /// No link left out of the list had more human clicks than this.
    pub floor: u64,
    /// The span's clicks now.
    pub clicks: u64,
    /// The span's human clicks now.
    pub humans: u64,
}

impl ListState {
    /// Whether the list is whole and its span's totals are still the ones it was made from.
    pub fn is_current(&self) -> bool {
        self.version != 0
            && self.rows == self.listed
            && self.listed_clicks == self.clicks
            && self.listed_humans == self.humans
    }
}

/// A UTC day's totals now and its newest lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayState {
    /// The UTC day.
    pub day: Date,
    /// Its clicks now.
    pub clicks: u64,
    /// Its human clicks now.
    pub humans: u64,
    /// Its newest list of the whole day.
    pub whole: Option<ListState>,
    /// Its newest list of its first hours (the current day's closed hours).
    pub first_hours: Option<ListState>,
}

impl DayState {
    /// Whether its newest list of the whole day is current.
    pub fn is_current(&self) -> bool {
        self.whole.as_ref().is_some_and(ListState::is_current)
    }

    /// The list a report reads for the day: the whole day's if current, else its first hours'
    /// if current (the rest of the day is then read hour by hour).
    pub fn usable(&self) -> Option<&ListState> {
        [&self.whole, &self.first_hours].into_iter().flatten().find(|list| list.is_current())
    }
}

pub(crate) fn midnight(day: Date) -> i64 {
    day.to_zoned(TimeZone::UTC).map(|z| z.timestamp().as_second()).unwrap_or(0)
}

/// Clicks and human clicks of every UTC hour in `[first, end)` that has clicks (hours as Unix
/// seconds): the days' totals, and the first hours' of a list of a day's first hours.
pub fn day_totals_sql(first: Date, end: Date) -> String {
    format!(
        "SELECT toUInt32(hour) AS h, sum(clicks), sum(human_clicks) FROM dimension_clicks_hourly \
         WHERE dimension = 'channel' AND hour >= toDateTime({}) AND hour < toDateTime({}) GROUP BY h",
        midnight(first),
        midnight(end),
    )
}

/// Every list of whole days in `[first, end)` (`link_leaders_daily`): day, hours (24), version,
/// rows meant, rows stored, the day's clicks and human clicks then, floor.
pub fn lists_sql(first: Date, end: Date) -> String {
    spans_lists_sql(Span::day(first), first, end)
}

/// [`lists_sql`] of the lists of first hours (`link_leaders_hours`). (The two queries run side by
/// side take less time on 18.16 than one `UNION ALL` of both.)
pub fn hours_lists_sql(first: Date, end: Date) -> String {
    spans_lists_sql(Span::first_hours(first, 1), first, end)
}

/// The lists of `[first, end)` in the table of spans like `kind`.
fn spans_lists_sql(kind: Span, first: Date, end: Date) -> String {
    let hours = if kind.is_whole_day() { "toUInt8(24)" } else { "hours" };
    format!(
        "SELECT day, {hours} AS hours, version, any(listed), count(), any(day_clicks), any(day_humans), any(floor_humans) \
         FROM {table} WHERE day >= toDate('{first}') AND day < toDate('{end}') GROUP BY day, hours, version",
        table = kind.table(),
    )
}

/// The rows of [`day_totals_sql`]: clicks and human clicks by hour (Unix seconds).
pub(crate) fn hour_totals(text: &str) -> Result<std::collections::BTreeMap<i64, (u64, u64)>, ReportError> {
    const SOURCE: &str = "dimension_clicks_hourly";
    let mut hours = std::collections::BTreeMap::new();
    for row in tsv_rows(SOURCE, text) {
        let [hour, clicks, humans] = row?;
        let ([hour], [clicks, humans]) =
            (tsv_parse::<i64, 1>(SOURCE, [hour])?, tsv_parse::<u64, 2>(SOURCE, [clicks, humans])?);
        hours.insert(hour, (clicks, humans));
    }
    Ok(hours)
}

/// The state of every day in `[first, end)` that has clicks, in order.
pub async fn day_states(clickhouse: &ClickhouseConfig, first: Date, end: Date) -> Result<Vec<DayState>, ReportError> {
    let sql = [day_totals_sql(first, end), lists_sql(first, end), hours_lists_sql(first, end)];
    let (totals, days, hours) =
        tokio::try_join!(tsv(clickhouse, &sql[0]), tsv(clickhouse, &sql[1]), tsv(clickhouse, &sql[2]))?;
    let lists = days + &hours;
    const SOURCE: &str = "link_leaders_daily";
    let hours = hour_totals(&totals)?;
    let sum = |(start, end): (i64, i64)| {
        hours.range(start..end).fold((0, 0), |(c, h), (_, (clicks, humans))| (c + clicks, h + humans))
    };
    let mut states = std::collections::BTreeMap::new();
    for hour in hours.keys() {
        let Ok(day) = Timestamp::from_second(*hour).map(|t| t.to_zoned(TimeZone::UTC).date()) else { continue };
        states.entry(day).or_insert_with(|| {
            let (clicks, humans) = sum((Span::day(day).start(), Span::day(day).end()));
            DayState { day, clicks, humans, whole: None, first_hours: None }
        });
    }
    // Versions are microseconds: one shared by two lists of a table (two refreshes in the same
    // instant) would let the report read one list as the other, so neither is used.
    let mut spans_of_version: std::collections::HashMap<(bool, u64), Vec<Span>> = std::collections::HashMap::new();
    let mut newest: std::collections::BTreeMap<(Date, bool), ListState> = std::collections::BTreeMap::new();
    for row in tsv_rows(SOURCE, &lists) {
        let [day, hours, version, listed, rows, clicks, humans, floor] = row?;
        let [day] = tsv_parse::<Date, 1>(SOURCE, [day])?;
        let [hours] = tsv_parse::<u8, 1>(SOURCE, [hours])?;
        let [version, listed, rows, listed_clicks, listed_humans, floor] =
            tsv_parse(SOURCE, [version, listed, rows, clicks, humans, floor])?;
        let span = Span::first_hours(day, hours);
        spans_of_version.entry((span.is_whole_day(), version)).or_default().push(span);
        let key = (day, span.is_whole_day());
        if newest.get(&key).is_none_or(|n| n.version < version) {
            let (clicks, humans) = sum((span.start(), span.end()));
            let list = ListState { span, version, listed, rows, listed_clicks, listed_humans, floor, clicks, humans };
            newest.insert(key, list);
        }
    }
    for ((day, whole), list) in newest {
        if spans_of_version.get(&(whole, list.version)).is_some_and(|spans| spans.len() > 1) {
            continue;
        }
        if let Some(state) = states.get_mut(&day) {
            *(if whole { &mut state.whole } else { &mut state.first_hours }) = Some(list);
        }
    }
    Ok(states.into_values().collect())
}

/// The span's clicks and human clicks as the table its lists are made from holds them.
pub fn span_totals_sql(span: Span) -> String {
    format!("SELECT sum(clicks), sum(human_clicks) {}", span.source_sql())
}

/// How many links the span's list will hold, and the human clicks of the last one.
pub fn list_size_sql(span: Span) -> String {
    format!(
        "SELECT count(), min(h) FROM (SELECT link_id, sum(human_clicks) AS h {} \
         GROUP BY link_id ORDER BY h DESC, link_id LIMIT {LEADERS_PER_DAY})",
        span.source_sql()
    )
}

/// The statement that stores a span's list.
pub fn list_sql(span: Span, version: u64, listed: u64, floor: u64, (clicks, humans): (u64, u64)) -> String {
    let (hours_column, hours) =
        if span.is_whole_day() { ("", String::new()) } else { ("hours, ", format!("toUInt8({}), ", span.hours)) };
    format!(
        "INSERT INTO {table} \
         (day, {hours_column}version, link_id, code, clicks, human_clicks, listed, floor_humans, day_clicks, day_humans) \
         SELECT toDate('{day}'), {hours}toUInt64({version}), link_id, any(code), sum(clicks) AS c, sum(human_clicks) AS h, \
         toUInt32({listed}), toUInt64({floor}), toUInt64({clicks}), toUInt64({humans}) \
         {source} GROUP BY link_id ORDER BY h DESC, link_id LIMIT {LEADERS_PER_DAY}",
        table = span.table(),
        day = span.day,
        source = span.source_sql(),
    )
}

/// What one [`refresh`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Days with clicks in the window (before today).
    pub days: usize,
    /// Days whose newest list was current already.
    pub current: usize,
    /// Days listed now.
    pub listed: Vec<Date>,
    /// Days that took clicks while they were being listed (listed again next time).
    pub changing: Vec<Date>,
    /// Today's closed hours, listed now, and the links on the list.
    pub first_hours: Option<(Span, u64)>,
}

/// How long after an hour ends [`refresh`] waits before listing it with the day's first hours:
/// clicks of its last seconds are still on their way (the processors' batches, consumer lag),
/// and each would make the list out of date until the next refresh.
pub const HOUR_SETTLING_SECS: i64 = 120;

/// The span of today that [`refresh`] lists at `now`: the UTC day's hours that ended at least
/// [`HOUR_SETTLING_SECS`] before `now`; `None` in the day's first hour.
pub fn closed_hours_at(now: Timestamp) -> Option<Span> {
    let settled = now.as_second() - HOUR_SETTLING_SECS;
    let today = now.to_zoned(TimeZone::UTC).date();
    let hours = (settled - midnight(today)).div_euclid(3600);
    u8::try_from(hours).ok().filter(|h| (1..24).contains(h)).map(|h| Span::first_hours(today, h))
}

/// Lists every UTC day of the `days` before today (`now`'s UTC day) whose newest list is
/// missing or out of date, and today's closed hours ([`closed_hours_at`]) unless their newest
/// list is current; keeps the two newest lists of first hours (older ones are dropped as
/// partitions). `progress` hears of each day listed.
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
    let tomorrow = today.tomorrow().map_err(|e| ReportError::invalid("days", e.to_string()))?;
    let states = day_states(clickhouse, first, tomorrow).await?;
    let mut done = Refreshed { days: states.iter().filter(|s| s.day < today).count(), ..Refreshed::default() };
    for state in states {
        let (span, newest) = if state.day < today {
            (Span::day(state.day), &state.whole)
        } else if let Some(span) = closed_hours_at(now) {
            (span, &state.first_hours)
        } else {
            continue;
        };
        if newest.as_ref().is_some_and(|list| list.span == span && list.is_current()) {
            done.current += usize::from(span.is_whole_day());
            continue;
        }
        let before = totals(clickhouse, &span_totals_sql(span)).await?;
        if before.0 == 0 {
            // Today's clicks all came after its closed hours: nothing to list.
            continue;
        }
        let size = totals(clickhouse, &list_size_sql(span)).await?;
        let (listed, floor) = (size.0, if size.0 < u64::from(LEADERS_PER_DAY) { 0 } else { size.1 });
        let version = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
        // On a cluster the client inserts with `insert_distributed_sync` (ClickhouseConfig): every
        // shard has its rows when the INSERT returns (the report checks the count).
        let insert = clickhouse.client().query(&list_sql(span, version, listed, floor, before));
        insert.execute().await.map_err(|e| clickhouse.error(e))?;
        // Clicks stored for the span meanwhile: the list keeps the totals from before them, so
        // no report uses it; the next refresh lists the span again.
        if totals(clickhouse, &span_totals_sql(span)).await? != before {
            done.changing.push(state.day);
        } else if span.is_whole_day() {
            progress(state.day, listed);
            done.listed.push(state.day);
        } else {
            done.first_hours = Some((span, listed));
        }
        if !span.is_whole_day() {
            // A list an hour: the older ones go, or every report's search for the newest would
            // read more.
            super::keep_newest_versions(clickhouse, span.table()).await?;
        }
    }
    Ok(done)
}

pub(crate) async fn totals(clickhouse: &ClickhouseConfig, sql: &str) -> Result<(u64, u64), ReportError> {
    let text = tsv(clickhouse, sql).await?;
    let mut fields = text.trim().split('\t').map(|f| f.parse::<u64>());
    match (fields.next(), fields.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => Err(crate::SinkError::Corrupt { key: sql.into(), reason: format!("unreadable answer `{}`", text.trim()) }
            .into()),
    }
}

/// A list a report reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// What it covers.
    pub span: Span,
    /// Its version.
    pub version: u64,
    /// No link left out of it had more human clicks than this.
    pub floor: u64,
}

/// The lists a range can use: of its whole UTC days, the current list of each, of the whole day
/// or of its first hours.
#[derive(Clone, Debug, Default)]
pub struct Usable {
    /// The lists.
    pub lists: Vec<Listed>,
    /// The whole UTC days with clicks and no current list (read whole).
    pub unlisted: Vec<Date>,
    /// Whether every list holds every link of its span (fewer than [`LEADERS_PER_DAY`]).
    pub complete: bool,
}

impl Usable {
    /// Sorts the days of `states` into listed and unlisted.
    pub fn from_states(states: &[DayState]) -> Self {
        let mut usable = Self { complete: true, ..Self::default() };
        for state in states {
            match state.usable() {
                Some(list) => {
                    usable.complete &= list.listed < u64::from(LEADERS_PER_DAY);
                    usable.lists.push(Listed { span: list.span, version: list.version, floor: list.floor });
                }
                None => usable.unlisted.push(state.day),
            }
        }
        usable
    }

    /// The most human clicks a link left out of every list can have on the listed spans.
    pub fn floors(&self) -> u64 {
        self.lists.iter().map(|list| list.floor).sum()
    }
}

/// Links with their bounds, highest upper bound first: `link_id, code, human clicks, clicks,
/// floors of the lists it is on` (the counts of the lists and of the parts read whole); at most
/// `rows` of them. The parts read whole are the hours at the ends of the range, the rest of each
/// day listed by its first hours, and the unlisted days.
pub fn bounds_sql(plan: &Plan, usable: &Usable, rows: usize) -> String {
    let mut split = plan.range.split();
    let mut parts = Vec::new();
    for whole in [true, false] {
        let lists: Vec<&Listed> = usable.lists.iter().filter(|l| l.span.is_whole_day() == whole).collect();
        let (Some(first), Some(last)) = (lists.first(), lists.last()) else { continue };
        let versions: Vec<String> = lists.iter().map(|l| l.version.to_string()).collect();
        parts.push(format!(
            "SELECT link_id, code, human_clicks AS h, clicks AS c, floor_humans AS f FROM {} \
             WHERE day >= toDate('{}') AND day <= toDate('{}') AND version IN ({})",
            first.span.table(),
            first.span.day,
            last.span.day,
            versions.join(", ")
        ));
    }
    split.hours.extend(usable.lists.iter().filter(|l| !l.span.is_whole_day()).map(|l| l.span.rest()));
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
    fn a_list_is_current_only_while_its_span_totals_hold_and_all_its_rows_are_stored() {
        let day = jiff::civil::date(2026, 11, 20);
        let list = ListState {
            span: Span::day(day),
            version: 5,
            listed: 3,
            rows: 3,
            listed_clicks: 10,
            listed_humans: 8,
            floor: 0,
            clicks: 10,
            humans: 8,
        };
        assert!(list.is_current());
        assert!(!ListState { clicks: 11, ..list.clone() }.is_current());
        assert!(!ListState { humans: 9, ..list.clone() }.is_current());
        assert!(!ListState { rows: 2, ..list.clone() }.is_current());
        assert!(!ListState { version: 0, ..list.clone() }.is_current());
    }

    #[test]
    fn a_day_is_read_from_its_whole_list_else_from_its_first_hours_list() {
        let day = jiff::civil::date(2026, 11, 20);
        let list = |span, version, clicks| ListState {
            span,
            version,
            listed: 1,
            rows: 1,
            listed_clicks: 10,
            listed_humans: 8,
            floor: 2,
            clicks,
            humans: 8,
        };
        let first_hours = list(Span::first_hours(day, 23), 4, 10);
        let state = |whole| DayState { day, clicks: 12, humans: 9, whole, first_hours: Some(first_hours.clone()) };
        assert_eq!(state(Some(list(Span::day(day), 5, 10))).usable().map(|l| l.version), Some(5));
        assert_eq!(
            state(Some(list(Span::day(day), 5, 12))).usable().map(|l| l.version),
            Some(4),
            "whole list out of date"
        );
        assert_eq!(state(None).usable().map(|l| l.span), Some(Span::first_hours(day, 23)));
        assert!(!state(None).is_current(), "no whole-day list: the rollup lists the day");
        let mut stale = state(None);
        stale.first_hours.as_mut().unwrap().clicks = 11;
        assert_eq!(stale.usable(), None, "a click stored late for the listed hours");
    }

    #[test]
    fn spans_and_the_closed_hours_of_today() {
        let day = jiff::civil::date(2026, 11, 20);
        let midnight = 1_795_132_800; // 2026-11-20T00:00:00Z
        assert_eq!((Span::day(day).start(), Span::day(day).end()), (midnight, midnight + 86_400));
        let nine = Span::first_hours(day, 9);
        assert_eq!((nine.end(), nine.rest()), (midnight + 9 * 3600, (midnight + 9 * 3600, midnight + 86_400)));
        assert_eq!((nine.table(), Span::day(day).table()), ("link_leaders_hours", "link_leaders_daily"));
        assert_eq!(nine.to_string(), "2026-11-20 00:00-09:00");
        let at = |time: &str| closed_hours_at(format!("2026-11-20T{time}Z").parse().unwrap());
        assert_eq!(at("09:30:00"), Some(nine));
        assert_eq!(at("09:01:59"), Some(Span::first_hours(day, 8)), "the 9th hour is still settling");
        assert_eq!(at("09:02:00"), Some(nine));
        assert_eq!(at("00:59:00"), None);
        assert_eq!(at("01:01:00"), None, "hour 0 still settling");
        assert_eq!(at("23:59:59"), Some(Span::first_hours(day, 23)));
        assert!(
            span_totals_sql(nine)
                .contains(&format!("hour >= toDateTime({midnight}) AND hour < toDateTime({})", midnight + 9 * 3600))
        );
        assert!(list_sql(nine, 7, 3, 0, (10, 8)).starts_with("INSERT INTO link_leaders_hours (day, hours, version,"));
        assert!(
            list_sql(Span::day(day), 7, 3, 0, (10, 8))
                .contains("FROM link_clicks_daily WHERE day = toDate('2026-11-20')")
        );
    }
}
