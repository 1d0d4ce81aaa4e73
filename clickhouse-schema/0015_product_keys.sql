-- Top products grouped by one number instead of three strings. Each product, SKU and currency
-- gets a 64-bit key, `cityHash64(product_id, sku, currency)`; the keyed rollups below hold units
-- and revenue per key, and `product_keys` turns the few keys of a top list back into their
-- names. Grouping 140,000 rollup rows by the key takes about half the time grouping them by
-- the strings does (docs/reports.md, "Speed"). Two different products sharing a key would be
-- summed together: with 64 bits, a catalogue of a million products has about one chance in
-- 37 million of any such pair.
CREATE TABLE IF NOT EXISTS product_keys
(
    product_key UInt64,
    product_id String,
    sku String,
    currency String
)
ENGINE = ReplacingMergeTree
ORDER BY product_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS product_keys_mv TO product_keys AS
SELECT cityHash64(product_id, sku, currency) AS product_key, product_id, sku, currency
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku
WHERE status = 'paid'
GROUP BY product_id, sku, currency;

INSERT INTO product_keys
SELECT cityHash64(product_id, sku, currency) AS product_key, product_id, sku, currency
FROM product_sales_monthly
GROUP BY product_id, sku, currency;

-- Units and revenue of paid order lines per product key and UTC hour, day, week (from Monday)
-- and month: the same rows as product_sales_hourly, _daily, _weekly and _monthly.
CREATE TABLE IF NOT EXISTS product_key_sales_hourly
(
    hour DateTime,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, product_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_key_sales_hourly_mv TO product_key_sales_hourly AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_key;

INSERT INTO product_key_sales_hourly
SELECT hour, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_hourly
GROUP BY hour, product_key;

CREATE TABLE IF NOT EXISTS product_key_sales_daily
(
    day Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, product_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_key_sales_daily_mv TO product_key_sales_daily AS
SELECT
    toDate(ts, 'UTC') AS day,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_key;

INSERT INTO product_key_sales_daily
SELECT day, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_daily
GROUP BY day, product_key;

CREATE TABLE IF NOT EXISTS product_key_sales_weekly
(
    week Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(week)
ORDER BY (week, product_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_key_sales_weekly_mv TO product_key_sales_weekly AS
SELECT
    toMonday(toDate(ts, 'UTC')) AS week,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_key;

INSERT INTO product_key_sales_weekly
SELECT week, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_weekly
GROUP BY week, product_key;

CREATE TABLE IF NOT EXISTS product_key_sales_monthly
(
    month Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(month)
ORDER BY (month, product_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_key_sales_monthly_mv TO product_key_sales_monthly AS
SELECT
    toStartOfMonth(toDate(ts, 'UTC')) AS month,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_key;

INSERT INTO product_key_sales_monthly
SELECT month, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_monthly
GROUP BY month, product_key;

-- Insert deduplication on current servers (0009) for these tables, and for the tables views
-- write since 0009 that it missed: without a deduplication log, a retried INSERT (the same
-- rows and token after a failure part-way through the views) was stored in them a second time.
-- min-version: 24.8
ALTER TABLE product_keys MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_key_sales_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_key_sales_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_key_sales_weekly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_key_sales_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_sales_weekly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE customer_ids_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE orders_daily MODIFY SETTING non_replicated_deduplication_window = 1000;
