-- 0007_report_rollups.sql for a cluster: generated from clickhouse-schema/0007_report_rollups.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_monthly_local ON CLUSTER ${cluster}
(
    month Date,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/link_clicks_monthly_local', '{replica}')
PARTITION BY toYear(month)
ORDER BY (month, link_id, code);

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_monthly ON CLUSTER ${cluster} AS ${database}.link_clicks_monthly_local
ENGINE = Distributed(${cluster}, ${database}, link_clicks_monthly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.link_clicks_monthly_mv ON CLUSTER ${cluster} TO ${database}.link_clicks_monthly_local AS
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
GROUP BY month, link_id, code;

INSERT INTO link_clicks_monthly
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY month, link_id, code;

CREATE TABLE IF NOT EXISTS ${database}.product_sales_monthly_local ON CLUSTER ${cluster}
(
    month Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_sales_monthly_local', '{replica}')
PARTITION BY toYear(month)
ORDER BY (month, product_id, sku, currency);

CREATE TABLE IF NOT EXISTS ${database}.product_sales_monthly ON CLUSTER ${cluster} AS ${database}.product_sales_monthly_local
ENGINE = Distributed(${cluster}, ${database}, product_sales_monthly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_sales_monthly_mv ON CLUSTER ${cluster} TO ${database}.product_sales_monthly_local AS
SELECT
    toStartOfMonth(toDate(ts, 'UTC')) AS month,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_id, sku, currency;

INSERT INTO product_sales_monthly
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_id, sku, currency;

CREATE TABLE IF NOT EXISTS ${database}.customer_firsts_local ON CLUSTER ${cluster}
(
    customer UInt64,
    first_order AggregateFunction(min, DateTime)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/customer_firsts_local', '{replica}')
ORDER BY customer;

CREATE TABLE IF NOT EXISTS ${database}.customer_firsts ON CLUSTER ${cluster} AS ${database}.customer_firsts_local
ENGINE = Distributed(${cluster}, ${database}, customer_firsts_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.customer_firsts_mv ON CLUSTER ${cluster} TO ${database}.customer_firsts_local AS
SELECT cityHash64(customer_id) AS customer, minState(ts) AS first_order
FROM ${database}.orders_local
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer;

INSERT INTO customer_firsts
SELECT cityHash64(customer_id) AS customer, minState(ts)
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer;

CREATE TABLE IF NOT EXISTS ${database}.link_code_clicks_daily_local ON CLUSTER ${cluster}
(
    code String,
    day Date,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/link_code_clicks_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (code, day);

CREATE TABLE IF NOT EXISTS ${database}.link_code_clicks_daily ON CLUSTER ${cluster} AS ${database}.link_code_clicks_daily_local
ENGINE = Distributed(${cluster}, ${database}, link_code_clicks_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.link_code_clicks_daily_mv ON CLUSTER ${cluster} TO ${database}.link_code_clicks_daily_local AS
SELECT code, toDate(ts, 'UTC') AS day, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
GROUP BY code, day;

INSERT INTO link_code_clicks_daily
SELECT code, toDate(ts, 'UTC') AS day, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY code, day;

CREATE TABLE IF NOT EXISTS ${database}.dimension_clicks_hourly_local ON CLUSTER ${cluster}
(
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/dimension_clicks_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (dimension, hour, value);

CREATE TABLE IF NOT EXISTS ${database}.dimension_clicks_hourly ON CLUSTER ${cluster} AS ${database}.dimension_clicks_hourly_local
ENGINE = Distributed(${cluster}, ${database}, dimension_clicks_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.dimension_clicks_hourly_mv ON CLUSTER ${cluster} TO ${database}.dimension_clicks_hourly_local AS
SELECT
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY dimension, hour, value;

INSERT INTO dimension_clicks_hourly
SELECT pair.1 AS dimension, toStartOfHour(ts, 'UTC') AS hour, pair.2 AS value, count(), sum(toUInt64(1 - is_bot))
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY dimension, hour, value;

CREATE TABLE IF NOT EXISTS ${database}.click_links_local ON CLUSTER ${cluster}
(
    event_id UInt64,
    ts DateTime,
    link_id UInt64,
    code String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/click_links_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE TABLE IF NOT EXISTS ${database}.click_links ON CLUSTER ${cluster} AS ${database}.click_links_local
ENGINE = Distributed(${cluster}, ${database}, click_links_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.click_links_mv ON CLUSTER ${cluster} TO ${database}.click_links_local AS
SELECT event_id, ts, link_id, code
FROM ${database}.clicks_local;

INSERT INTO click_links
SELECT event_id, ts, link_id, code
FROM clicks;

CREATE TABLE IF NOT EXISTS ${database}.click_conversions_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    click_id UInt64,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/click_conversions_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, click_id, currency);

CREATE TABLE IF NOT EXISTS ${database}.click_conversions_hourly ON CLUSTER ${cluster} AS ${database}.click_conversions_hourly_local
ENGINE = Distributed(${cluster}, ${database}, click_conversions_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.click_conversions_hourly_mv ON CLUSTER ${cluster} TO ${database}.click_conversions_hourly_local AS
SELECT toStartOfHour(ts, 'UTC') AS hour, click_id, currency, count() AS orders, sum(total) AS revenue
FROM ${database}.orders_local
WHERE status = 'paid' AND link_code = '' AND click_id != 0
GROUP BY hour, click_id, currency;

INSERT INTO click_conversions_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, click_id, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code = '' AND click_id != 0
GROUP BY hour, click_id, currency;
