-- Order events, the sum of their totals and units per status, currency and UTC day: the sales
-- report over UTC days reads its whole days from here (one row per day, status and currency)
-- and only the partial days at the ends from `orders_hourly` (docs/reports.md, "Speed").
CREATE TABLE IF NOT EXISTS orders_daily
(
    day Date,
    status String,
    currency String,
    events UInt64,
    total Int64,
    units UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, status, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS orders_daily_mv TO orders_daily AS
SELECT
    toDate(ts, 'UTC') AS day,
    status,
    currency,
    count() AS events,
    sum(total) AS total,
    sum(toUInt64(arraySum(item_quantity))) AS units
FROM orders
GROUP BY day, status, currency;

INSERT INTO orders_daily
SELECT toDate(ts, 'UTC') AS day, status, currency, count(), sum(total), sum(toUInt64(arraySum(item_quantity)))
FROM orders
GROUP BY day, status, currency;
