-- The pre-aggregated tables the reports read (docs/reports.md). Each is fed by a materialized
-- view on a raw table, so the INSERT that stores raw rows fills them too. Times are UTC hours
-- and UTC days: a report in another time zone reads whole UTC days from the daily table and
-- the partial days at its range's ends from the hourly one.
--
-- Each view is followed by an INSERT that fills its table from rows stored before the view
-- existed; run `runnel migrate` with the processors stopped so no row is counted by both.

-- Per link and hour: clicks, human clicks, unique human visitors (link time series).
CREATE TABLE IF NOT EXISTS clicks_hourly_by_link
(
    link_id UInt64,
    hour DateTime,
    clicks AggregateFunction(count),
    human_clicks AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqIf, UInt64, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_hourly_by_link_mv TO clicks_hourly_by_link AS
SELECT
    link_id,
    toStartOfHour(ts, 'UTC') AS hour,
    countState() AS clicks,
    sumState(toUInt64(1 - is_bot)) AS human_clicks,
    uniqIfState(visitor_id, toUInt8(is_bot = 0)) AS visitors
FROM clicks
GROUP BY link_id, hour;

INSERT INTO clicks_hourly_by_link
SELECT link_id, toStartOfHour(ts, 'UTC') AS hour, countState(), sumState(toUInt64(1 - is_bot)), uniqIfState(visitor_id, toUInt8(is_bot = 0))
FROM clicks
GROUP BY link_id, hour;

-- Per link, dimension (country, device, browser, os, referrer, channel), value and hour:
-- clicks and human clicks (link breakdowns).
CREATE TABLE IF NOT EXISTS clicks_hourly_by_dimension
(
    link_id UInt64,
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, dimension, hour, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_hourly_by_dimension_mv TO clicks_hourly_by_dimension AS
SELECT
    link_id,
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

INSERT INTO clicks_hourly_by_dimension
SELECT link_id, pair.1 AS dimension, toStartOfHour(ts, 'UTC') AS hour, pair.2 AS value, count(), sum(toUInt64(1 - is_bot))
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

-- Clicks per hour and per day of every link, ordered by time (top links, conversions).
CREATE TABLE IF NOT EXISTS link_clicks_hourly
(
    hour DateTime,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, link_id, code);

CREATE MATERIALIZED VIEW IF NOT EXISTS link_clicks_hourly_mv TO link_clicks_hourly AS
SELECT toStartOfHour(ts, 'UTC') AS hour, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
GROUP BY hour, link_id, code;

INSERT INTO link_clicks_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY hour, link_id, code;

CREATE TABLE IF NOT EXISTS link_clicks_daily
(
    day Date,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, link_id, code);

CREATE MATERIALIZED VIEW IF NOT EXISTS link_clicks_daily_mv TO link_clicks_daily AS
SELECT toDate(ts, 'UTC') AS day, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
GROUP BY day, link_id, code;

INSERT INTO link_clicks_daily
SELECT toDate(ts, 'UTC') AS day, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY day, link_id, code;

-- Order events per hour, status and currency: how many, the sum of their totals, units.
CREATE TABLE IF NOT EXISTS orders_hourly
(
    hour DateTime,
    status String,
    currency String,
    events UInt64,
    total Int64,
    units UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, status, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS orders_hourly_mv TO orders_hourly AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    status,
    currency,
    count() AS events,
    sum(total) AS total,
    sum(toUInt64(arraySum(item_quantity))) AS units
FROM orders
GROUP BY hour, status, currency;

INSERT INTO orders_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, status, currency, count(), sum(total), sum(toUInt64(arraySum(item_quantity)))
FROM orders
GROUP BY hour, status, currency;

-- Units and revenue of paid order lines per product, hour and day.
CREATE TABLE IF NOT EXISTS product_sales_hourly
(
    hour DateTime,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, product_id, sku, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_sales_hourly_mv TO product_sales_hourly AS
SELECT
    toStartOfHour(ts, 'UTC') AS hour,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_id, sku, currency;

INSERT INTO product_sales_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY hour, product_id, sku, currency;

CREATE TABLE IF NOT EXISTS product_sales_daily
(
    day Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, product_id, sku, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_sales_daily_mv TO product_sales_daily AS
SELECT
    toDate(ts, 'UTC') AS day,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_id, sku, currency;

INSERT INTO product_sales_daily
SELECT toDate(ts, 'UTC') AS day, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY day, product_id, sku, currency;

-- Per customer and currency: first and last paid order, paid orders, spend.
CREATE TABLE IF NOT EXISTS customers
(
    customer_id String,
    currency String,
    first_order AggregateFunction(min, DateTime),
    last_order AggregateFunction(max, DateTime),
    orders AggregateFunction(count),
    spend AggregateFunction(sum, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (customer_id, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS customers_mv TO customers AS
SELECT customer_id, currency, minState(ts) AS first_order, maxState(ts) AS last_order, countState() AS orders, sumState(total) AS spend
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer_id, currency;

INSERT INTO customers
SELECT customer_id, currency, minState(ts), maxState(ts), countState(), sumState(total)
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer_id, currency;

-- Paid orders per customer and hour (who bought in a range: new or returning customers).
CREATE TABLE IF NOT EXISTS customer_orders_hourly
(
    hour DateTime,
    customer_id String,
    orders UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, customer_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS customer_orders_hourly_mv TO customer_orders_hourly AS
SELECT toStartOfHour(ts, 'UTC') AS hour, customer_id, count() AS orders
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer_id;

INSERT INTO customer_orders_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, customer_id, count()
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer_id;

-- The latest status of each order: the newest event wins; within one second the later step of
-- the order's life (created < paid < shipped < delivered < cancelled < refunded).
CREATE TABLE IF NOT EXISTS order_status
(
    order_id String,
    last_status AggregateFunction(argMax, String, UInt64),
    updated AggregateFunction(max, DateTime),
    customer AggregateFunction(any, String),
    order_currency AggregateFunction(any, String),
    last_total AggregateFunction(argMax, Int64, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY order_id;

-- (Aliases differ from the source columns: 18.16 resolves a same-named alias inside the other
-- aggregates, and fails on views over subqueries when rows are pushed.)
CREATE MATERIALIZED VIEW IF NOT EXISTS order_status_mv TO order_status AS
SELECT
    order_id,
    argMaxState(status, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status)) AS last_status,
    maxState(ts) AS updated,
    anyState(customer_id) AS customer,
    anyState(currency) AS order_currency,
    argMaxState(total, toUInt64(ts) * 8 + indexOf(['created', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded'], status)) AS last_total
FROM orders
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

-- Paid orders and revenue attributed to a link (order events carrying its code), per hour and
-- day; read beside link_clicks_* for conversion by link.
CREATE TABLE IF NOT EXISTS conversions_hourly
(
    hour DateTime,
    link_code String,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, link_code, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_hourly_mv TO conversions_hourly AS
SELECT toStartOfHour(ts, 'UTC') AS hour, link_code, currency, count() AS orders, sum(total) AS revenue
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY hour, link_code, currency;

INSERT INTO conversions_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, link_code, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY hour, link_code, currency;

CREATE TABLE IF NOT EXISTS conversions_daily
(
    day Date,
    link_code String,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, link_code, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_daily_mv TO conversions_daily AS
SELECT toDate(ts, 'UTC') AS day, link_code, currency, count() AS orders, sum(total) AS revenue
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY day, link_code, currency;

INSERT INTO conversions_daily
SELECT toDate(ts, 'UTC') AS day, link_code, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code != ''
GROUP BY day, link_code, currency;

-- Current servers store the repetitive text columns as dictionaries: smaller and faster to
-- group by. 18.16 keeps plain String (LowCardinality was experimental there).
-- min-version: 20.3
ALTER TABLE clicks
    MODIFY COLUMN method LowCardinality(String),
    MODIFY COLUMN country LowCardinality(String),
    MODIFY COLUMN browser LowCardinality(String),
    MODIFY COLUMN os LowCardinality(String),
    MODIFY COLUMN device LowCardinality(String),
    MODIFY COLUMN channel LowCardinality(String);

-- min-version: 20.3
ALTER TABLE orders
    MODIFY COLUMN status LowCardinality(String),
    MODIFY COLUMN currency LowCardinality(String),
    MODIFY COLUMN channel LowCardinality(String);
