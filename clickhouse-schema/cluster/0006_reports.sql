-- 0006_reports.sql for a cluster: generated from clickhouse-schema/0006_reports.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.clicks_hourly_by_link_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    hour DateTime,
    clicks AggregateFunction(count),
    human_clicks AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqIf, UInt64, UInt8)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/clicks_hourly_by_link_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, hour);

CREATE TABLE IF NOT EXISTS ${database}.clicks_hourly_by_link ON CLUSTER ${cluster} AS ${database}.clicks_hourly_by_link_local
ENGINE = Distributed(${cluster}, ${database}, clicks_hourly_by_link_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.clicks_hourly_by_link_mv ON CLUSTER ${cluster} TO ${database}.clicks_hourly_by_link_local AS
SELECT
    link_id,
    toStartOfHour(ts, 'UTC') AS hour,
    countState() AS clicks,
    sumState(toUInt64(1 - is_bot)) AS human_clicks,
    uniqIfState(visitor_id, toUInt8(is_bot = 0)) AS visitors
FROM ${database}.clicks_local
GROUP BY link_id, hour;

INSERT INTO clicks_hourly_by_link
SELECT link_id, toStartOfHour(ts, 'UTC') AS hour, countState(), sumState(toUInt64(1 - is_bot)), uniqIfState(visitor_id, toUInt8(is_bot = 0))
FROM clicks
GROUP BY link_id, hour;

CREATE TABLE IF NOT EXISTS ${database}.clicks_hourly_by_dimension_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/clicks_hourly_by_dimension_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, dimension, hour, value);

CREATE TABLE IF NOT EXISTS ${database}.clicks_hourly_by_dimension ON CLUSTER ${cluster} AS ${database}.clicks_hourly_by_dimension_local
ENGINE = Distributed(${cluster}, ${database}, clicks_hourly_by_dimension_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.clicks_hourly_by_dimension_mv ON CLUSTER ${cluster} TO ${database}.clicks_hourly_by_dimension_local AS
SELECT
    link_id,
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

INSERT INTO clicks_hourly_by_dimension
SELECT link_id, pair.1 AS dimension, toStartOfHour(ts, 'UTC') AS hour, pair.2 AS value, count(), sum(toUInt64(1 - is_bot))
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/link_clicks_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, link_id, code);

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_hourly ON CLUSTER ${cluster} AS ${database}.link_clicks_hourly_local
ENGINE = Distributed(${cluster}, ${database}, link_clicks_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.link_clicks_hourly_mv ON CLUSTER ${cluster} TO ${database}.link_clicks_hourly_local AS
SELECT toStartOfHour(ts, 'UTC') AS hour, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
GROUP BY hour, link_id, code;

INSERT INTO link_clicks_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY hour, link_id, code;

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_daily_local ON CLUSTER ${cluster}
(
    day Date,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/link_clicks_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, link_id, code);

CREATE TABLE IF NOT EXISTS ${database}.link_clicks_daily ON CLUSTER ${cluster} AS ${database}.link_clicks_daily_local
ENGINE = Distributed(${cluster}, ${database}, link_clicks_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.link_clicks_daily_mv ON CLUSTER ${cluster} TO ${database}.link_clicks_daily_local AS
SELECT toDate(ts, 'UTC') AS day, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
GROUP BY day, link_id, code;

INSERT INTO link_clicks_daily
SELECT toDate(ts, 'UTC') AS day, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY day, link_id, code;

CREATE TABLE IF NOT EXISTS ${database}.orders_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    status String,
    currency String,
    events UInt64,
    total Int64,
    units UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/orders_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, status, currency);

CREATE TABLE IF NOT EXISTS ${database}.orders_hourly ON CLUSTER ${cluster} AS ${database}.orders_hourly_local
ENGINE = Distributed(${cluster}, ${database}, orders_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.orders_hourly_mv ON CLUSTER ${cluster} TO ${database}.orders_hourly_local AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    status,
    currency,
    count() AS events,
    sum(total) AS total,
    sum(toUInt64(arraySum(item_quantity))) AS units
FROM ${database}.orders_local
GROUP BY hour, status, currency;

INSERT INTO orders_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, status, currency, count(), sum(total), sum(toUInt64(arraySum(item_quantity)))
FROM orders
GROUP BY hour, status, currency;

CREATE TABLE IF NOT EXISTS ${database}.product_sales_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_sales_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, product_id, sku, currency);

CREATE TABLE IF NOT EXISTS ${database}.product_sales_hourly ON CLUSTER ${cluster} AS ${database}.product_sales_hourly_local
ENGINE = Distributed(${cluster}, ${database}, product_sales_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_sales_hourly_mv ON CLUSTER ${cluster} TO ${database}.product_sales_hourly_local AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_id, sku, currency;

INSERT INTO product_sales_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_id, sku, currency;

CREATE TABLE IF NOT EXISTS ${database}.product_sales_daily_local ON CLUSTER ${cluster}
(
    day Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_sales_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, product_id, sku, currency);

CREATE TABLE IF NOT EXISTS ${database}.product_sales_daily ON CLUSTER ${cluster} AS ${database}.product_sales_daily_local
ENGINE = Distributed(${cluster}, ${database}, product_sales_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_sales_daily_mv ON CLUSTER ${cluster} TO ${database}.product_sales_daily_local AS
SELECT
    toDate(ts, 'UTC') AS day,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_id, sku, currency;

INSERT INTO product_sales_daily
SELECT toDate(ts, 'UTC') AS day, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_id, sku, currency;

CREATE TABLE IF NOT EXISTS ${database}.customers_local ON CLUSTER ${cluster}
(
    customer_id String,
    currency String,
    first_order AggregateFunction(min, DateTime),
    last_order AggregateFunction(max, DateTime),
    orders AggregateFunction(count),
    spend AggregateFunction(sum, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/customers_local', '{replica}')
ORDER BY (customer_id, currency);

CREATE TABLE IF NOT EXISTS ${database}.customers ON CLUSTER ${cluster} AS ${database}.customers_local
ENGINE = Distributed(${cluster}, ${database}, customers_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.customers_mv ON CLUSTER ${cluster} TO ${database}.customers_local AS
SELECT customer_id, currency, minState(ts) AS first_order, maxState(ts) AS last_order, countState() AS orders, sumState(total) AS spend
FROM ${database}.orders_local
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer_id, currency;

INSERT INTO customers
SELECT customer_id, currency, minState(ts), maxState(ts), countState(), sumState(total)
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer_id, currency;

CREATE TABLE IF NOT EXISTS ${database}.customer_orders_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    customer_id String,
    orders UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/customer_orders_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, customer_id);

CREATE TABLE IF NOT EXISTS ${database}.customer_orders_hourly ON CLUSTER ${cluster} AS ${database}.customer_orders_hourly_local
ENGINE = Distributed(${cluster}, ${database}, customer_orders_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.customer_orders_hourly_mv ON CLUSTER ${cluster} TO ${database}.customer_orders_hourly_local AS
SELECT toStartOfHour(ts, 'UTC') AS hour, customer_id, count() AS orders
FROM ${database}.orders_local
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer_id;

INSERT INTO customer_orders_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, customer_id, count()
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer_id;

CREATE TABLE IF NOT EXISTS ${database}.order_status_local ON CLUSTER ${cluster}
(
    order_id String,
    last_status AggregateFunction(argMax, String, UInt64),
    updated AggregateFunction(max, DateTime),
    customer AggregateFunction(any, String),
    order_currency AggregateFunction(any, String),
    last_total AggregateFunction(argMax, Int64, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/order_status_local', '{replica}')
ORDER BY order_id;

CREATE TABLE IF NOT EXISTS ${database}.order_status ON CLUSTER ${cluster} AS ${database}.order_status_local
ENGINE = Distributed(${cluster}, ${database}, order_status_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.order_status_mv ON CLUSTER ${cluster} TO ${database}.order_status_local AS
SELECT
    order_id,
    argMaxState(status, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status)) AS last_status,
    maxState(ts) AS updated,
    anyState(customer_id) AS customer,
    anyState(currency) AS order_currency,
    argMaxState(total, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status)) AS last_total
FROM ${database}.orders_local
GROUP BY order_id;

INSERT INTO order_status
SELECT
    order_id,
    argMaxState(status, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status)),
    maxState(ts),
    anyState(customer_id),
    anyState(currency),
    argMaxState(total, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status))
FROM orders
GROUP BY order_id;

CREATE TABLE IF NOT EXISTS ${database}.conversions_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    link_code String,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/conversions_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, link_code, currency);

CREATE TABLE IF NOT EXISTS ${database}.conversions_hourly ON CLUSTER ${cluster} AS ${database}.conversions_hourly_local
ENGINE = Distributed(${cluster}, ${database}, conversions_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.conversions_hourly_mv ON CLUSTER ${cluster} TO ${database}.conversions_hourly_local AS
SELECT toStartOfHour(ts, 'UTC') AS hour, link_code, currency, count() AS orders, sum(total) AS revenue
FROM ${database}.orders_local
WHERE status = 'paid' AND link_code != ''
GROUP BY hour, link_code, currency;

INSERT INTO conversions_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, link_code, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY hour, link_code, currency;

CREATE TABLE IF NOT EXISTS ${database}.conversions_daily_local ON CLUSTER ${cluster}
(
    day Date,
    link_code String,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/conversions_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, link_code, currency);

CREATE TABLE IF NOT EXISTS ${database}.conversions_daily ON CLUSTER ${cluster} AS ${database}.conversions_daily_local
ENGINE = Distributed(${cluster}, ${database}, conversions_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.conversions_daily_mv ON CLUSTER ${cluster} TO ${database}.conversions_daily_local AS
SELECT toDate(ts, 'UTC') AS day, link_code, currency, count() AS orders, sum(total) AS revenue
FROM ${database}.orders_local
WHERE status = 'paid' AND link_code != ''
GROUP BY day, link_code, currency;

INSERT INTO conversions_daily
SELECT toDate(ts, 'UTC') AS day, link_code, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY day, link_code, currency;

-- min-version: 20.3
ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster}
    MODIFY COLUMN method LowCardinality(String),
    MODIFY COLUMN country LowCardinality(String),
    MODIFY COLUMN browser LowCardinality(String),
    MODIFY COLUMN os LowCardinality(String),
    MODIFY COLUMN device LowCardinality(String),
    MODIFY COLUMN channel LowCardinality(String);

-- min-version: 20.3
DROP TABLE IF EXISTS ${database}.clicks ON CLUSTER ${cluster};

-- min-version: 20.3
CREATE TABLE IF NOT EXISTS ${database}.clicks ON CLUSTER ${cluster} AS ${database}.clicks_local
ENGINE = Distributed(${cluster}, ${database}, clicks_local, kafka_partition);

-- min-version: 20.3
ALTER TABLE ${database}.orders_local ON CLUSTER ${cluster}
    MODIFY COLUMN status LowCardinality(String),
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN channel LowCardinality(String);

-- min-version: 20.3
DROP TABLE IF EXISTS ${database}.orders ON CLUSTER ${cluster};

-- min-version: 20.3
CREATE TABLE IF NOT EXISTS ${database}.orders ON CLUSTER ${cluster} AS ${database}.orders_local
ENGINE = Distributed(${cluster}, ${database}, orders_local, kafka_partition);
