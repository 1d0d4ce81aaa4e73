-- 0015_product_keys.sql for a cluster: generated from clickhouse-schema/0015_product_keys.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.product_keys_local ON CLUSTER ${cluster}
(
    product_key UInt64,
    product_id String,
    sku String,
    currency String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/product_keys_local', '{replica}')
ORDER BY product_key;

CREATE TABLE IF NOT EXISTS ${database}.product_keys ON CLUSTER ${cluster} AS ${database}.product_keys_local
ENGINE = Distributed(${cluster}, ${database}, product_keys_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_keys_mv ON CLUSTER ${cluster} TO ${database}.product_keys_local AS
SELECT cityHash64(product_id, sku, currency) AS product_key, product_id, sku, currency
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku
WHERE status = 'paid'
GROUP BY product_id, sku, currency;

INSERT INTO product_keys
SELECT cityHash64(product_id, sku, currency) AS product_key, product_id, sku, currency
FROM product_sales_monthly
GROUP BY product_id, sku, currency;

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_key_sales_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, product_key);

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_hourly ON CLUSTER ${cluster} AS ${database}.product_key_sales_hourly_local
ENGINE = Distributed(${cluster}, ${database}, product_key_sales_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_key_sales_hourly_mv ON CLUSTER ${cluster} TO ${database}.product_key_sales_hourly_local AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_key;

INSERT INTO product_key_sales_hourly
SELECT hour, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_hourly
GROUP BY hour, product_key;

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_daily_local ON CLUSTER ${cluster}
(
    day Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_key_sales_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, product_key);

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_daily ON CLUSTER ${cluster} AS ${database}.product_key_sales_daily_local
ENGINE = Distributed(${cluster}, ${database}, product_key_sales_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_key_sales_daily_mv ON CLUSTER ${cluster} TO ${database}.product_key_sales_daily_local AS
SELECT
    toDate(ts, 'UTC') AS day,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_key;

INSERT INTO product_key_sales_daily
SELECT day, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_daily
GROUP BY day, product_key;

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_weekly_local ON CLUSTER ${cluster}
(
    week Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_key_sales_weekly_local', '{replica}')
PARTITION BY toYYYYMM(week)
ORDER BY (week, product_key);

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_weekly ON CLUSTER ${cluster} AS ${database}.product_key_sales_weekly_local
ENGINE = Distributed(${cluster}, ${database}, product_key_sales_weekly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_key_sales_weekly_mv ON CLUSTER ${cluster} TO ${database}.product_key_sales_weekly_local AS
SELECT
    toMonday(toDate(ts, 'UTC')) AS week,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_key;

INSERT INTO product_key_sales_weekly
SELECT week, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_weekly
GROUP BY week, product_key;

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_monthly_local ON CLUSTER ${cluster}
(
    month Date,
    product_key UInt64,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_key_sales_monthly_local', '{replica}')
PARTITION BY toYear(month)
ORDER BY (month, product_key);

CREATE TABLE IF NOT EXISTS ${database}.product_key_sales_monthly ON CLUSTER ${cluster} AS ${database}.product_key_sales_monthly_local
ENGINE = Distributed(${cluster}, ${database}, product_key_sales_monthly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_key_sales_monthly_mv ON CLUSTER ${cluster} TO ${database}.product_key_sales_monthly_local AS
SELECT
    toStartOfMonth(toDate(ts, 'UTC')) AS month,
    cityHash64(product_id, sku, currency) AS product_key,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_key;

INSERT INTO product_key_sales_monthly
SELECT month, cityHash64(product_id, sku, currency) AS product_key, sum(units), sum(revenue)
FROM product_sales_monthly
GROUP BY month, product_key;

-- min-version: 24.8
ALTER TABLE ${database}.product_keys_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_key_sales_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_key_sales_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_key_sales_weekly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_key_sales_monthly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_sales_weekly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.customer_ids_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.orders_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;
