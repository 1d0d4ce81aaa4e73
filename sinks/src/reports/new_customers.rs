//! New customers per UTC hour before a cutoff (`new_customers_hourly`, migration 0011), so the
//! customers report need not merge every customer's first paid order on each call.
//!
//! The cutoff is the start of a UTC hour. [`refresh`] writes the whole list again under a new
//! version whenever the hour changed or an order was stored late for an hour before the cutoff;
//! the report uses the newest list while the paid order events before its cutoff are as many as
//! when it was made (an order stored late can make a customer new in an earlier hour, and always
//! adds a paid event before the cutoff), and finds the new customers after the cutoff among those
//! who paid since: the customers of one hour or so, however late in the day (with a cutoff at
//! midnight the report looked up every customer of the day so far, about 12 ms of its time by
//! evening on `bench/reports`' data).
//!
//! With each list it writes the active customers and paid orders of every UTC day before the
//! cutoff's day (`active_customers_daily`, migration 0016) under the same version: they change
//! on the same condition, a paid order stored late before the cutoff, so the same check covers
//! them.

use jiff::Timestamp;

use super::{ReportError, tsv, tsv_parse, tsv_rows};
use crate::clickhouse::ClickhouseConfig;

/// The newest list and whether it still holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    /// Its version.
    pub version: u64,
    /// Hours before this (Unix seconds, the start of a UTC hour) are listed.
    pub cutoff: i64,
    /// Paid order events before the cutoff when it was made.
    pub paid_before: u64,
    /// Rows it was made with.
    pub listed: u64,
    /// Rows of it stored.
    pub rows: u64,
    /// Paid order events before the cutoff now.
    pub paid_now: u64,
    /// Rows of its list of active customers per day (0: none was written with it).
    pub days_listed: u64,
    /// Rows of that list stored.
    pub days_rows: u64,
}

impl List {
    /// Whether it is whole and no paid order was stored since for an hour before its cutoff.
    pub fn is_current(&self) -> bool {
        self.rows == self.listed && self.paid_now == self.paid_before
    }

    /// Whether its active customers per day may be read: it is current, and that list was
    /// written with it and is whole.
    pub fn days_hold(&self) -> bool {
        self.is_current() && self.days_listed > 0 && self.days_rows == self.days_listed
    }

    /// The UTC midnight that begins the cutoff's day: days before it are in the list of days.
    pub fn days_end(&self) -> i64 {
        days_end(self.cutoff)
    }
}

/// The cutoff of a list made at `now`: the start of its UTC hour (Unix seconds).
pub fn cutoff_at(now: Timestamp) -> i64 {
    now.as_second() - now.as_second().rem_euclid(3_600)
}

/// The UTC midnight at or before `cutoff`.
fn days_end(cutoff: i64) -> i64 {
    cutoff - cutoff.rem_euclid(86_400)
}

/// The newest list: `version, cutoff, paid_before, listed, rows`.
pub fn newest_sql() -> String {
    "SELECT version, toUInt32(any(cutoff)), any(paid_before), any(listed), count() FROM new_customers_hourly \
     GROUP BY version ORDER BY version DESC LIMIT 1"
        .into()
}

/// What decides whether list `version` with `cutoff` holds: the paid order events before the
/// cutoff now, then the rows its list of days should have and has.
pub fn checks_sql(version: u64, cutoff: i64) -> String {
    format!(
        "SELECT ({paid}), toUInt64((SELECT any(listed) FROM active_customers_daily WHERE version = {version})), \
         (SELECT count() FROM active_customers_daily WHERE version = {version})",
        paid = paid_before_sql(cutoff),
    )
}

/// Reads [`newest_sql`], then [`checks_sql`]: `None` when there is no list. (Two short queries
/// take less time than one that finds the newest version in each of its subqueries.)
pub async fn newest(clickhouse: &ClickhouseConfig) -> Result<Option<List>, ReportError> {
    let text = tsv(clickhouse, &newest_sql()).await?;
    let Some(row) = tsv_rows::<5>("new_customers_hourly", &text).next() else { return Ok(None) };
    let [version, cutoff, paid_before, listed, rows] = tsv_parse::<u64, 5>("new_customers_hourly", row?)?;
    let cutoff = cutoff as i64;
    let text = tsv(clickhouse, &checks_sql(version, cutoff)).await?;
    let Some(row) = tsv_rows::<3>("active_customers_daily", &text).next() else { return Ok(None) };
    let [paid_now, days_listed, days_rows] = tsv_parse("active_customers_daily", row?)?;
    Ok(Some(List { version, cutoff, paid_before, listed, rows, paid_now, days_listed, days_rows }))
}

/// The newest list when it still holds.
pub async fn current(clickhouse: &ClickhouseConfig) -> Result<Option<List>, ReportError> {
    Ok(newest(clickhouse).await?.filter(List::is_current))
}

/// Paid order events before `cutoff` (the start of a UTC hour): the whole UTC days before it from
/// `orders_daily`, the hours of its day from `orders_hourly`.
pub fn paid_before_sql(cutoff: i64) -> String {
    let midnight = days_end(cutoff);
    format!(
        "SELECT (SELECT sum(events) FROM orders_daily WHERE status = 'paid' AND day < toDate(toDateTime({midnight}), 'UTC')) \
         + (SELECT sum(events) FROM orders_hourly WHERE status = 'paid' AND hour >= toDateTime({midnight}) AND hour < toDateTime({cutoff}))"
    )
}

/// The statement that stores a list: the new customers of every hour before `cutoff`.
pub fn list_sql(version: u64, cutoff: i64, paid_before: u64) -> String {
    format!(
        "INSERT INTO new_customers_hourly (version, cutoff, paid_before, listed, hour, new_customers) \
         SELECT toUInt64({version}), toDateTime({cutoff}), toUInt64({paid_before}), toUInt32(length(hours)), \
         counted.1, counted.2 FROM (\
         SELECT groupArray((hour, n)) AS hours FROM (\
         SELECT toStartOfHour(first_paid) AS hour, count() AS n FROM (\
         SELECT minMerge(first_order) AS first_paid FROM customer_firsts GROUP BY customer) \
         WHERE first_paid < toDateTime({cutoff}) GROUP BY hour)) ARRAY JOIN hours AS counted"
    )
}

/// The statement that stores the list of days written with list `version`: the active
/// customers and paid orders of every UTC day before `cutoff`'s day.
pub fn days_sql(version: u64, cutoff: i64) -> String {
    let cutoff = days_end(cutoff);
    format!(
        "INSERT INTO active_customers_daily (version, listed, day, active, paid_orders) \
         SELECT toUInt64({version}), toUInt32(length(days)), counted.1, counted.2, counted.3 FROM (\
         SELECT groupArray((day, active, paid)) AS days FROM (\
         SELECT toStartOfDay(hour, 'UTC') AS day, toUInt64(uniqExact(customer)) AS active, sum(orders) AS paid \
         FROM customer_ids_hourly WHERE hour < toDateTime({cutoff}) GROUP BY day)) ARRAY JOIN days AS counted"
    )
}

/// What one [`refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The newest list holds and has this hour's cutoff.
    Current,
    /// A new list was written.
    Listed,
    /// Paid orders were stored before the cutoff while listing: the list is not used, the next
    /// refresh lists again.
    Changing,
}

/// Writes a new list, and its list of days, with the start of the current UTC hour as its cutoff
/// unless the newest one holds and has it (and its days); keeps the two newest lists (old ones
/// are dropped as partitions).
pub async fn refresh(clickhouse: &ClickhouseConfig, now: Timestamp) -> Result<Refreshed, ReportError> {
    let cutoff = cutoff_at(now);
    if newest(clickhouse).await?.is_some_and(|list| list.days_hold() && list.cutoff == cutoff) {
        return Ok(Refreshed::Current);
    }
    let paid = |text: String| text.trim().parse::<u64>().unwrap_or(0);
    let before = paid(tsv(clickhouse, &paid_before_sql(cutoff)).await?);
    let version = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
    // On a cluster the client inserts with `insert_distributed_sync` (ClickhouseConfig): every
    // shard has its rows when the INSERT returns.
    for sql in [list_sql(version, cutoff, before), days_sql(version, cutoff)] {
        clickhouse.client().query(&sql).execute().await.map_err(|e| clickhouse.error(e))?;
    }
    let after = paid(tsv(clickhouse, &paid_before_sql(cutoff)).await?);
    // A list an hour: the older ones go, or every call's search for the newest would read more.
    for table in ["new_customers_hourly", "active_customers_daily"] {
        super::keep_newest_versions(clickhouse, table).await?;
    }
    Ok(if after == before { Refreshed::Listed } else { Refreshed::Changing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_holds_while_it_is_whole_and_no_paid_order_came_late() {
        let list = List {
            version: 1,
            cutoff: 86_400,
            paid_before: 10,
            listed: 24,
            rows: 24,
            paid_now: 10,
            days_listed: 1,
            days_rows: 1,
        };
        assert!(list.is_current() && list.days_hold());
        assert!(!List { paid_now: 11, ..list.clone() }.is_current());
        assert!(!List { rows: 23, ..list.clone() }.is_current());
        assert!(!List { rows: 23, ..list.clone() }.days_hold(), "days are read only with their list");
        assert!(!List { days_rows: 0, ..list.clone() }.days_hold(), "days not all stored");
        assert!(!List { days_listed: 0, days_rows: 0, ..list.clone() }.days_hold(), "a list written without days");
    }

    #[test]
    fn an_hourly_cutoff_lists_the_days_before_its_own_and_counts_paid_orders_to_the_hour() {
        // 2026-11-23T21:00:00Z: whole days up to the 22nd, then the 23rd's first 21 hours.
        let cutoff = 1_795_467_600;
        let midnight = 1_795_392_000;
        assert_eq!(cutoff_at("2026-11-23T21:59:59Z".parse().unwrap()), cutoff);
        assert_eq!(cutoff_at("2026-11-23T21:00:00Z".parse().unwrap()), cutoff);
        assert_eq!(days_end(cutoff), midnight);
        assert_eq!(days_end(midnight), midnight);
        assert!(days_sql(7, cutoff).contains(&format!("hour < toDateTime({midnight})")));
        let paid = paid_before_sql(cutoff);
        assert!(paid.contains(&format!("day < toDate(toDateTime({midnight}), 'UTC')")), "{paid}");
        assert!(paid.contains(&format!("hour >= toDateTime({midnight}) AND hour < toDateTime({cutoff})")), "{paid}");
    }
}
