//! Report time ranges: whole local days in a time zone, turned into UTC instants and split into
//! the partial UTC days at the ends (read from hourly tables) and the whole UTC days between
//! (read from daily tables).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::ReportError;

/// The longest range a report covers.
pub const MAX_DAYS: i64 = 3660;

/// A resolved range: `from..=to` local days in `tz`, as UTC seconds `start..end`.
#[derive(Clone, Debug)]
pub struct Range {
    /// First local day.
    pub from: Date,
    /// Last local day (inclusive).
    pub to: Date,
    /// The time zone's IANA name.
    pub tz_name: String,
    /// The time zone.
    pub tz: TimeZone,
    /// Start, Unix seconds, on an hour boundary.
    pub start: i64,
    /// End (exclusive), Unix seconds, on an hour boundary.
    pub end: i64,
}

/// Where a range's rows are read: hour slices and whole UTC days (`[first, last)` midnights).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `[start, end)` slices of UTC hours.
    pub hours: Vec<(i64, i64)>,
    /// `[first, end)` UTC midnights of the whole days, when there are any.
    pub days: Option<(i64, i64)>,
}

fn parse_date(param: &'static str, text: &str) -> Result<Date, ReportError> {
    text.parse::<Date>().map_err(|_| ReportError::invalid(param, format!("`{text}` is not a date like 2026-11-22")))
}

fn day_start(date: Date, tz: &TimeZone, param: &'static str) -> Result<i64, ReportError> {
    let zoned = date.to_zoned(tz.clone()).map_err(|e| ReportError::invalid(param, e.to_string()))?;
    let seconds = zoned.timestamp().as_second();
    // Zones with half-hour offsets are read on the UTC hour boundary before local midnight.
    Ok(seconds - seconds.rem_euclid(3600))
}

impl Range {
    /// `from` and `to` are `YYYY-MM-DD` (default: the 30 days up to today), `tz` an IANA name
    /// (default `UTC`).
    pub fn resolve(
        from: Option<&str>,
        to: Option<&str>,
        tz: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, ReportError> {
        let tz_name = tz.filter(|t| !t.is_empty()).unwrap_or("UTC").to_string();
        let unknown = || {
            ReportError::invalid("tz", format!("unknown time zone `{tz_name}`; use an IANA name such as Europe/Berlin"))
        };
        // The name goes into SQL: only what IANA names are made of.
        if !tz_name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c)) {
            return Err(unknown());
        }
        let zone = TimeZone::get(&tz_name).map_err(|_| unknown())?;
        let today = now.to_zoned(zone.clone()).date();
        let to = match to.filter(|t| !t.is_empty()) {
            Some(text) => parse_date("to", text)?,
            None => today,
        };
        let from = match from.filter(|t| !t.is_empty()) {
            Some(text) => parse_date("from", text)?,
            None => {
                to.checked_sub(jiff::Span::new().days(29)).map_err(|e| ReportError::invalid("to", e.to_string()))?
            }
        };
        if from > to {
            return Err(ReportError::invalid("from", format!("{from} is after to ({to})")));
        }
        let start = day_start(from, &zone, "from")?;
        let next = to.tomorrow().map_err(|e| ReportError::invalid("to", e.to_string()))?;
        let end = day_start(next, &zone, "to")?;
        if (end - start) / 86_400 > MAX_DAYS {
            return Err(ReportError::invalid("from", format!("the range {from}..{to} is longer than {MAX_DAYS} days")));
        }
        Ok(Self { from, to, tz_name, tz: zone, start, end })
    }

    /// The hour slices at the ends and the whole UTC days between.
    pub fn split(&self) -> Split {
        let first_midnight = self.start + (86_400 - self.start.rem_euclid(86_400)) % 86_400;
        let last_midnight = self.end - self.end.rem_euclid(86_400);
        if first_midnight >= last_midnight {
            return Split { hours: vec![(self.start, self.end)], days: None };
        }
        let hours =
            [(self.start, first_midnight), (last_midnight, self.end)].into_iter().filter(|(a, b)| a < b).collect();
        Split { hours, days: Some((first_midnight, last_midnight)) }
    }

    /// Whether the range's local days are UTC days throughout (its zone is at offset 0 from
    /// start to end), so buckets of days, weeks or months may be summed from daily tables.
    pub fn days_are_utc_days(&self) -> bool {
        let (Ok(start), Ok(end)) = (Timestamp::from_second(self.start), Timestamp::from_second(self.end)) else {
            return false;
        };
        self.tz.to_offset(start) == jiff::tz::Offset::UTC
            && self.tz.following(start).take_while(|t| t.timestamp() < end).all(|t| t.offset() == jiff::tz::Offset::UTC)
    }

    /// `column` (DateTime, UTC hours) within the range, as SQL.
    pub fn hours_sql(&self, column: &str) -> String {
        format!("{column} >= toDateTime({}) AND {column} < toDateTime({})", self.start, self.end)
    }

    /// `column` (DateTime) within the hour slices of the split, as SQL (`0` when none).
    pub fn split_hours_sql(&self, split: &Split, column: &str) -> String {
        if split.hours.is_empty() {
            return "0".into();
        }
        let parts: Vec<String> = split
            .hours
            .iter()
            .map(|(a, b)| format!("({column} >= toDateTime({a}) AND {column} < toDateTime({b}))"))
            .collect();
        parts.join(" OR ")
    }

    /// `column` (Date, UTC days) within the whole days of the split, as SQL (`0` when none).
    pub fn split_days_sql(&self, split: &Split, column: &str) -> String {
        match split.days {
            Some((a, b)) => format!("{column} >= toDate('{}') AND {column} < toDate('{}')", utc_date(a), utc_date(b)),
            None => "0".into(),
        }
    }

    /// `columns` of the range as one subquery: the partial UTC days at its ends from `hourly`
    /// (column `hour`), the whole UTC days between from `daily` (column `day`).
    pub fn hours_and_days_sql(&self, columns: &str, hourly: &str, daily: &str) -> String {
        self.hours_and_days_where_sql(columns, hourly, daily, "1")
    }

    /// [`Range::hours_and_days_sql`] of the rows matching `filter` only.
    pub fn hours_and_days_where_sql(&self, columns: &str, hourly: &str, daily: &str, filter: &str) -> String {
        let split = self.split();
        format!(
            "(SELECT {columns} FROM {hourly} WHERE ({}) AND {filter} UNION ALL SELECT {columns} FROM {daily} WHERE ({}) AND {filter})",
            self.split_hours_sql(&split, "hour"),
            self.split_days_sql(&split, "day"),
        )
    }

    /// [`Range::hours_and_days_where_sql`] with the whole UTC months among the whole days read
    /// from `monthly` (column `month`, the month's first day): a long range of a top list reads
    /// about one row per key and month instead of one per key and day.
    pub fn hours_days_months_where_sql(
        &self,
        columns: &str,
        [hourly, daily, monthly]: [&str; 3],
        filter: &str,
    ) -> String {
        self.rollups_where_sql(columns, hourly, daily, None, monthly, filter)
    }

    /// [`Range::hours_days_months_where_sql`] that also reads the whole weeks (Monday to Sunday,
    /// UTC) of the stretches outside whole months from `weekly` (column `week`, the Monday):
    /// at most six days at each end of a stretch are read day by day.
    pub fn hours_days_weeks_months_where_sql(
        &self,
        columns: &str,
        [hourly, daily, weekly, monthly]: [&str; 4],
        filter: &str,
    ) -> String {
        self.rollups_where_sql(columns, hourly, daily, Some(weekly), monthly, filter)
    }

    fn rollups_where_sql(
        &self,
        columns: &str,
        hourly: &str,
        daily: &str,
        weekly: Option<&str>,
        monthly: &str,
        filter: &str,
    ) -> String {
        let split = self.split();
        let hours = self.split_hours_sql(&split, "hour");
        let whole_days = split.days.and_then(|(first, last)| {
            let date = |s| Timestamp::from_second(s).ok().map(|t| t.to_zoned(TimeZone::UTC).date());
            Some((date(first)?, date(last)?))
        });
        let Some((first, last)) = whole_days else {
            return self.hours_and_days_where_sql(columns, hourly, daily, filter);
        };
        let (days, weeks, months) = calendar_split(first, last, weekly.is_some());
        if weeks.is_empty() && months.is_none() {
            return self.hours_and_days_where_sql(columns, hourly, daily, filter);
        }
        let within = |column: &str, spans: &[(Date, Date)]| {
            let parts: Vec<String> = spans
                .iter()
                .map(|(a, b)| format!("({column} >= toDate('{a}') AND {column} < toDate('{b}'))"))
                .collect();
            if parts.is_empty() { "0".to_string() } else { parts.join(" OR ") }
        };
        let mut sql = format!(
            "(SELECT {columns} FROM {hourly} WHERE ({hours}) AND {filter} \
             UNION ALL SELECT {columns} FROM {daily} WHERE ({}) AND {filter}",
            within("day", &days)
        );
        if let (Some(weekly), false) = (weekly, weeks.is_empty()) {
            sql.push_str(&format!(
                " UNION ALL SELECT {columns} FROM {weekly} WHERE ({}) AND {filter}",
                within("week", &weeks)
            ));
        }
        if let Some((a, b)) = months {
            sql.push_str(&format!(
                " UNION ALL SELECT {columns} FROM {monthly} WHERE month >= toDate('{a}') AND month < toDate('{b}') AND {filter}"
            ));
        }
        sql.push(')');
        sql
    }

    /// The bucket start, Unix seconds, of `column` (UTC hours) for `interval`, as SQL.
    pub fn bucket_sql(&self, interval: Interval, column: &str) -> String {
        let tz = &self.tz_name;
        match interval {
            Interval::Hour => format!("toUInt32({column})"),
            Interval::Day => format!("toUInt32(toStartOfDay({column}, '{tz}'))"),
            Interval::Week => format!("toUInt32(toDateTime(toMonday({column}, '{tz}'), '{tz}'))"),
            Interval::Month => format!("toUInt32(toDateTime(toStartOfMonth({column}, '{tz}'), '{tz}'))"),
        }
    }

    /// Every bucket start of the range for `interval`, in order (series are filled with zeros).
    pub fn buckets(&self, interval: Interval) -> Vec<i64> {
        if interval == Interval::Hour {
            return (self.start..self.end).step_by(3600).collect();
        }
        let mut starts = Vec::new();
        let mut day = match interval {
            Interval::Week => self
                .from
                .checked_sub(jiff::Span::new().days(i64::from(self.from.weekday().to_monday_zero_offset())))
                .unwrap_or(self.from),
            Interval::Month => self.from.first_of_month(),
            _ => self.from,
        };
        while day <= self.to {
            if let Ok(start) = day_start(day, &self.tz, "from") {
                starts.push(start);
            }
            let next = match interval {
                Interval::Week => day.checked_add(jiff::Span::new().days(7)),
                Interval::Month => day.checked_add(jiff::Span::new().months(1)),
                _ => day.tomorrow(),
            };
            match next {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        starts
    }

    /// Unix seconds as RFC 3339 in the range's time zone.
    pub fn format_time(&self, seconds: i64) -> String {
        match Timestamp::from_second(seconds) {
            Ok(ts) => ts.to_zoned(self.tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            Err(_) => seconds.to_string(),
        }
    }
}

/// `[first, last)` spans of days.
type Spans = Vec<(Date, Date)>;

/// The UTC days `[first, last)` as spans of days, of whole weeks (from Monday, when `weeks`)
/// and of whole months: the months inside, then the weeks inside what is left on either side.
fn calendar_split(first: Date, last: Date, weeks: bool) -> (Spans, Spans, Option<(Date, Date)>) {
    let add = |date: Date, days: i64| date.checked_add(jiff::Span::new().days(days)).unwrap_or(date);
    let months_from = if first.day() == 1 { first } else { first.last_of_month().tomorrow().unwrap_or(last) };
    let months_to = last.first_of_month();
    let (stretches, months) = if months_from < months_to {
        (vec![(first, months_from), (months_to, last)], Some((months_from, months_to)))
    } else {
        (vec![(first, last)], None)
    };
    let (mut days, mut whole_weeks) = (Vec::new(), Vec::new());
    for (a, b) in stretches.into_iter().filter(|(a, b)| a < b) {
        let monday = add(a, (7 - i64::from(a.weekday().to_monday_zero_offset())) % 7);
        let whole = if weeks && monday < b { (b - monday).get_days() / 7 } else { 0 };
        if whole == 0 {
            days.push((a, b));
            continue;
        }
        let weeks_to = add(monday, i64::from(whole) * 7);
        days.extend([(a, monday), (weeks_to, b)].into_iter().filter(|(x, y)| x < y));
        whole_weeks.push((monday, weeks_to));
    }
    (days, whole_weeks, months)
}

pub(crate) fn utc_date(seconds: i64) -> String {
    Timestamp::from_second(seconds).map(|ts| ts.to_zoned(TimeZone::UTC).date().to_string()).unwrap_or_default()
}

/// Buckets of a time series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// Hours.
    Hour,
    /// Local days.
    Day,
    /// Local weeks, from Monday.
    Week,
    /// Local months.
    Month,
}

impl Interval {
    /// Parses `hour`, `day`, `week` or `month`, allowing only `allowed`.
    pub fn parse(text: Option<&str>, default: Self, allowed: &[Self]) -> Result<Self, ReportError> {
        let parsed = match text.filter(|t| !t.is_empty()) {
            None => return Ok(default),
            Some("hour") => Self::Hour,
            Some("day") => Self::Day,
            Some("week") => Self::Week,
            Some("month") => Self::Month,
            Some(other) => {
                return Err(ReportError::invalid("interval", format!("`{other}` is not one of {}", names(allowed))));
            }
        };
        if !allowed.contains(&parsed) {
            return Err(ReportError::invalid(
                "interval",
                format!("`{}` is not one of {}", parsed.name(), names(allowed)),
            ));
        }
        Ok(parsed)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

fn names(allowed: &[Interval]) -> String {
    allowed.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T10:30:00Z".parse().unwrap()
    }

    #[test]
    fn defaults_are_the_last_thirty_days_in_utc() {
        let range = Range::resolve(None, None, None, now()).unwrap();
        assert_eq!(range.from.to_string(), "2026-10-24");
        assert_eq!(range.to.to_string(), "2026-11-22");
        assert_eq!(range.end - range.start, 30 * 86_400);
        assert_eq!(range.split(), Split { hours: vec![], days: Some((range.start, range.end)) });
    }

    #[test]
    fn a_zone_east_of_utc_reads_partial_days_from_hours() {
        let range = Range::resolve(Some("2026-11-20"), Some("2026-11-21"), Some("Asia/Tokyo"), now()).unwrap();
        // Tokyo midnight is 15:00 UTC the day before.
        assert_eq!(range.format_time(range.start), "2026-11-20T00:00:00+09:00");
        let split = range.split();
        let midnight_20 = range.start + 9 * 3600;
        assert_eq!(split.hours, vec![(range.start, midnight_20), (midnight_20 + 86_400, range.end)]);
        assert_eq!(split.days, Some((midnight_20, midnight_20 + 86_400)));
        assert_eq!(range.split_days_sql(&split, "day"), "day >= toDate('2026-11-20') AND day < toDate('2026-11-21')");
    }

    #[test]
    fn days_are_utc_days_only_where_the_zone_stays_at_offset_zero() {
        let days = |from, to, tz| Range::resolve(Some(from), Some(to), Some(tz), now()).unwrap().days_are_utc_days();
        assert!(days("2026-08-01", "2026-11-21", "UTC"));
        assert!(!days("2026-11-20", "2026-11-21", "Asia/Tokyo"));
        // London is at offset 0 in winter only.
        assert!(days("2026-11-01", "2026-11-21", "Europe/London"));
        assert!(!days("2026-03-01", "2026-03-31", "Europe/London"), "summer time starts on the 29th");
        assert!(!days("2026-07-01", "2026-07-02", "Europe/London"));
    }

    #[test]
    fn one_partial_day_is_all_hours() {
        let range = Range::resolve(Some("2026-11-20"), Some("2026-11-20"), Some("America/New_York"), now()).unwrap();
        assert_eq!(range.split(), Split { hours: vec![(range.start, range.end)], days: None });
        assert_eq!(range.split_days_sql(&range.split(), "day"), "0");
    }

    #[test]
    fn whole_months_are_read_from_the_monthly_table() {
        let tables = ["h", "d", "m"];
        let range = Range::resolve(Some("2026-08-25"), Some("2026-11-22"), None, now()).unwrap();
        let sql = range.hours_days_months_where_sql("x", tables, "k = 1");
        assert!(sql.contains("FROM h WHERE (0) AND k = 1"), "{sql}");
        assert!(
            sql.contains("(day >= toDate('2026-08-25') AND day < toDate('2026-09-01')) OR (day >= toDate('2026-11-01') AND day < toDate('2026-11-23'))"),
            "{sql}"
        );
        assert!(
            sql.contains("FROM m WHERE month >= toDate('2026-09-01') AND month < toDate('2026-11-01') AND k = 1"),
            "{sql}"
        );
        // A range starting on the 1st reads its first month whole.
        let range = Range::resolve(Some("2026-09-01"), Some("2026-10-31"), None, now()).unwrap();
        let sql = range.hours_days_months_where_sql("x", tables, "1");
        assert!(sql.contains("month >= toDate('2026-09-01') AND month < toDate('2026-11-01')"), "{sql}");
        // Within one month (or in Tokyo, where the UTC days start mid-month too): days only.
        let range = Range::resolve(Some("2026-11-01"), Some("2026-11-22"), None, now()).unwrap();
        assert_eq!(
            range.hours_days_months_where_sql("x", tables, "1"),
            range.hours_and_days_where_sql("x", "h", "d", "1")
        );
        let range = Range::resolve(Some("2026-09-01"), Some("2026-09-30"), Some("Asia/Tokyo"), now()).unwrap();
        assert!(!range.hours_days_months_where_sql("x", tables, "1").contains("FROM m"));
    }

    #[test]
    fn stretches_outside_whole_months_read_whole_weeks() {
        let d = |text: &str| text.parse::<Date>().unwrap();
        // 2026-08-25 (Tue) .. 2026-11-23: Sep and Oct whole; Aug 31 is a Monday but its week ends
        // in September; Nov 2, 9 and 16 start whole weeks.
        let (days, weeks, months) = calendar_split(d("2026-08-25"), d("2026-11-23"), true);
        assert_eq!(months, Some((d("2026-09-01"), d("2026-11-01"))));
        assert_eq!(weeks, vec![(d("2026-11-02"), d("2026-11-23"))]);
        assert_eq!(days, vec![(d("2026-08-25"), d("2026-09-01")), (d("2026-11-01"), d("2026-11-02"))]);
        // Inside one month: the whole weeks, and the days at both ends.
        let (days, weeks, months) = calendar_split(d("2026-11-03"), d("2026-11-30"), true);
        assert_eq!((weeks, months), (vec![(d("2026-11-09"), d("2026-11-30"))], None));
        assert_eq!(days, vec![(d("2026-11-03"), d("2026-11-09"))]);
        // Less than a week: days only.
        let (days, weeks, _) = calendar_split(d("2026-11-10"), d("2026-11-13"), true);
        assert_eq!((days, weeks), (vec![(d("2026-11-10"), d("2026-11-13"))], vec![]));
        // Every day is read exactly once.
        for (first, last) in [("2026-01-01", "2026-12-31"), ("2026-02-03", "2026-05-17"), ("2026-11-01", "2026-11-08")]
        {
            let (days, weeks, months) = calendar_split(d(first), d(last), true);
            let span = |(a, b): &(Date, Date)| (*b - *a).get_days();
            let month_days: i32 = months.iter().map(span).sum();
            let total: i32 = days.iter().map(span).sum::<i32>() + weeks.iter().map(span).sum::<i32>() + month_days;
            assert_eq!(total, (d(last) - d(first)).get_days(), "{first}..{last}");
            assert!(weeks.iter().all(|(a, b)| a.weekday() == jiff::civil::Weekday::Monday && span(&(*a, *b)) % 7 == 0));
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let error = Range::resolve(Some("2026-13-01"), None, None, now()).unwrap_err();
        assert_eq!(error.param(), Some("from"));
        let error = Range::resolve(None, Some("yesterday"), None, now()).unwrap_err();
        assert_eq!(error.param(), Some("to"));
        let error = Range::resolve(None, None, Some("Mars/Olympus"), now()).unwrap_err();
        assert_eq!(error.param(), Some("tz"));
        let error = Range::resolve(None, None, Some("UTC'; DROP TABLE clicks"), now()).unwrap_err();
        assert_eq!(error.param(), Some("tz"));
        let error = Range::resolve(Some("2026-11-22"), Some("2026-11-01"), None, now()).unwrap_err();
        assert!(error.to_string().contains("after"), "{error}");
        let error = Range::resolve(Some("2000-01-01"), None, None, now()).unwrap_err();
        assert!(error.to_string().contains("3660"), "{error}");
        let error = Interval::parse(Some("minute"), Interval::Day, &[Interval::Day]).unwrap_err();
        assert_eq!(error.param(), Some("interval"));
        let error = Interval::parse(Some("hour"), Interval::Day, &[Interval::Day, Interval::Week]).unwrap_err();
        assert!(error.to_string().contains("day, week"), "{error}");
    }

    #[test]
    fn buckets_cover_the_range_in_local_time() {
        let range = Range::resolve(Some("2026-11-01"), Some("2026-11-03"), Some("Europe/Berlin"), now()).unwrap();
        let days: Vec<String> = range.buckets(Interval::Day).into_iter().map(|s| range.format_time(s)).collect();
        assert_eq!(days, ["2026-11-01T00:00:00+01:00", "2026-11-02T00:00:00+01:00", "2026-11-03T00:00:00+01:00"]);
        assert_eq!(range.buckets(Interval::Hour).len(), 72);
        let weeks: Vec<String> = range.buckets(Interval::Week).into_iter().map(|s| range.format_time(s)).collect();
        assert_eq!(weeks, ["2026-10-26T00:00:00+01:00", "2026-11-02T00:00:00+01:00"]);
        let months: Vec<String> = range.buckets(Interval::Month).into_iter().map(|s| range.format_time(s)).collect();
        assert_eq!(months, ["2026-11-01T00:00:00+01:00"]);
    }
}
