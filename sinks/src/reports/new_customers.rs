//! New customers per UTC hour before a cutoff (`new_customers_hourly`, migration 0011), so the
//! customers report need not merge every customer's first paid order on each call.
//!
//! [`refresh`] writes the whole list again under a new version whenever the UTC day changed or
//! an order was stored late for an hour before the cutoff; the report uses the newest list while
//! the paid order events before its cutoff are as many as when it was made (an order stored late
//! can make a customer new in an earlier hour, and always adds a paid event before the cutoff),
//! and finds the new customers after the cutoff among those who paid since.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{ReportError, tsv, tsv_parse, tsv_rows};
use crate::clickhouse::ClickhouseConfig;

/// The newest list and whether it still holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List {
    /// Its version.
    pub version: u64,
    /// Hours before this (Unix seconds, a UTC midnight) are listed.
    pub cutoff: i64,
    /// Paid order events before the cutoff when it was made.
    pub paid_before: u64,
    /// Rows it was made with.
    pub listed: u64,
    /// Rows of it stored.
    pub rows: u64,
    /// Paid order events before the cutoff now.
    pub paid_now: u64,
}

impl List {
    /// Whether it is whole and no paid order was stored since for an hour before its cutoff.
    pub fn is_current(&self) -> bool {
        self.rows == self.listed && self.paid_now == self.paid_before
    }
}

/// The newest list with the paid order events before its cutoff now.
pub fn newest_sql() -> String {
    "SELECT version, toUInt32(cutoff), paid_before, listed, list_rows, \
     (SELECT sum(events) FROM orders_hourly WHERE status = 'paid' AND hour < (\
     SELECT max(cutoff) FROM new_customers_hourly WHERE version = (SELECT max(version) FROM new_customers_hourly))) \
     FROM (SELECT version, any(cutoff) AS cutoff, any(paid_before) AS paid_before, any(listed) AS listed, count() AS list_rows \
     FROM new_customers_hourly WHERE version = (SELECT max(version) FROM new_customers_hourly) GROUP BY version)"
        .into()
}

/// Reads [`newest_sql`]: `None` when there is no list.
pub async fn newest(clickhouse: &ClickhouseConfig) -> Result<Option<List>, ReportError> {
    let text = tsv(clickhouse, &newest_sql()).await?;
    let Some(row) = tsv_rows::<6>("new_customers_hourly", &text).next() else { return Ok(None) };
    let [version, cutoff, paid_before, listed, rows, paid_now] = tsv_parse("new_customers_hourly", row?)?;
    Ok(Some(List { version, cutoff: cutoff as i64, paid_before, listed, rows, paid_now }))
}

/// The newest list when it still holds.
pub async fn current(clickhouse: &ClickhouseConfig) -> Result<Option<List>, ReportError> {
    Ok(newest(clickhouse).await?.filter(List::is_current))
}

/// Paid order events before `cutoff`.
pub fn paid_before_sql(cutoff: i64) -> String {
    format!("SELECT sum(events) FROM orders_hourly WHERE status = 'paid' AND hour < toDateTime({cutoff})")
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

/// What one [`refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The newest list holds and has today's cutoff.
    Current,
    /// A new list was written.
    Listed,
    /// Paid orders were stored before the cutoff while listing: the list is not used, the next
    /// refresh lists again.
    Changing,
}

/// Writes a new list with today's (UTC) midnight as its cutoff unless the newest one holds
/// and has it; keeps the two newest lists (on a single server: old ones are dropped as
/// partitions).
pub async fn refresh(clickhouse: &ClickhouseConfig, now: Timestamp) -> Result<Refreshed, ReportError> {
    let today = now.to_zoned(TimeZone::UTC).date();
    let cutoff = today.to_zoned(TimeZone::UTC).map(|z| z.timestamp().as_second()).unwrap_or(0);
    if newest(clickhouse).await?.is_some_and(|list| list.is_current() && list.cutoff == cutoff) {
        return Ok(Refreshed::Current);
    }
    let paid = |text: String| text.trim().parse::<u64>().unwrap_or(0);
    let before = paid(tsv(clickhouse, &paid_before_sql(cutoff)).await?);
    let version = u64::try_from(Timestamp::now().as_microsecond()).unwrap_or(0);
    let mut insert = clickhouse.client().query(&list_sql(version, cutoff, before));
    if clickhouse.cluster_name().is_some() {
        insert = insert.with_setting("insert_distributed_sync", "1");
    }
    insert.execute().await.map_err(|e| clickhouse.error(e))?;
    let after = paid(tsv(clickhouse, &paid_before_sql(cutoff)).await?);
    if clickhouse.cluster_name().is_none() {
        let versions =
            tsv(clickhouse, "SELECT DISTINCT version FROM new_customers_hourly ORDER BY version DESC").await?;
        for old in versions.lines().filter_map(|l| l.parse::<u64>().ok()).skip(2) {
            clickhouse
                .client()
                .query(&format!("ALTER TABLE new_customers_hourly DROP PARTITION {old}"))
                .execute()
                .await
                .map_err(|e| clickhouse.error(e))?;
        }
    }
    Ok(if after == before { Refreshed::Listed } else { Refreshed::Changing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_holds_while_it_is_whole_and_no_paid_order_came_late() {
        let list = List { version: 1, cutoff: 86_400, paid_before: 10, listed: 24, rows: 24, paid_now: 10 };
        assert!(list.is_current());
        assert!(!List { paid_now: 11, ..list.clone() }.is_current());
        assert!(!List { rows: 23, ..list.clone() }.is_current());
    }
}
