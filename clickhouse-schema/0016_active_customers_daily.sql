-- Active customers (a paid order in the day) and paid orders per UTC day before a cutoff,
-- written by `runnel rollup` under the version of the new-customers list it writes with them
-- (0011; docs/reports.md, "New customers"). Counting a day's distinct customers means hashing
-- every customer of the day again; over 90 days that was about half of the customers report's
-- time, for days whose answer no longer changes.
--
-- `day` is the UTC midnight the day starts at; `listed` is how many rows the whole list has.
-- The report uses these rows only while the new-customers list of the same version holds (no
-- paid order stored late before the cutoff) and all of them are stored. From this version on,
-- the paid order events before a cutoff are counted from `orders_daily` (whole UTC days; 0014)
-- rather than from `orders_hourly`: the same number from a twentieth of the rows.
CREATE TABLE IF NOT EXISTS active_customers_daily
(
    version UInt64,
    listed UInt32,
    day DateTime,
    active UInt64,
    paid_orders UInt64
)
ENGINE = MergeTree
PARTITION BY version
ORDER BY day;
