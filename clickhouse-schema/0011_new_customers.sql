-- New customers per UTC hour (each customer counted in the hour of their first paid order), for
-- every hour before a cutoff (the UTC midnight the rollup ran after), written by `runnel
-- rollup` (docs/reports.md, "New customers"). Which customers are new is only known by merging
-- every customer's first order, so a view cannot keep it.
--
-- Each rollup writes one whole list as one INSERT under a new `version`; its rows carry the
-- cutoff, the paid order events before the cutoff at the time (from `orders_hourly`) and the
-- number of rows of the list. The customers report uses the newest list only while the paid
-- order events before its cutoff are still that many: an order stored late for an earlier hour
-- can change who was new, so it sends the report back to merging every customer until the next
-- rollup.
CREATE TABLE IF NOT EXISTS new_customers_hourly
(
    version UInt64,
    cutoff DateTime,
    paid_before UInt64,
    listed UInt32,
    hour DateTime,
    new_customers UInt64
)
ENGINE = MergeTree
PARTITION BY version
ORDER BY hour;
