-- Monthly rollups for the top lists over long ranges (docs/reports.md, "Top lists"): the whole
-- UTC months of a range read one row per link (product) and month instead of one per day.
CREATE TABLE IF NOT EXISTS link_clicks_monthly
(
    month Date,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(month)
ORDER BY (month, link_id, code);

CREATE MATERIALIZED VIEW IF NOT EXISTS link_clicks_monthly_mv TO link_clicks_monthly AS
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, link_id, code, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
GROUP BY month, link_id, code;

INSERT INTO link_clicks_monthly
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, link_id, code, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY month, link_id, code;

CREATE TABLE IF NOT EXISTS product_sales_monthly
(
    month Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(month)
ORDER BY (month, product_id, sku, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_sales_monthly_mv TO product_sales_monthly AS
SELECT
    toStartOfMonth(toDate(ts, 'UTC')) AS month,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_id, sku, currency;

INSERT INTO product_sales_monthly
SELECT toStartOfMonth(toDate(ts, 'UTC')) AS month, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY month, product_id, sku, currency;

-- Each customer's first paid order, keyed by a 64-bit hash of the customer id: the customers
-- report merges one small row per customer (new customers per bucket) without a join.
CREATE TABLE IF NOT EXISTS customer_firsts
(
    customer UInt64,
    first_order AggregateFunction(min, DateTime)
)
ENGINE = AggregatingMergeTree
ORDER BY customer;

CREATE MATERIALIZED VIEW IF NOT EXISTS customer_firsts_mv TO customer_firsts AS
SELECT cityHash64(customer_id) AS customer, minState(ts) AS first_order
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer;

INSERT INTO customer_firsts
SELECT cityHash64(customer_id) AS customer, minState(ts)
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY customer;

-- Clicks per link code and day, ordered by code: conversions read the clicks of their top
-- attributed codes only (order events carry the code, not the link id).
CREATE TABLE IF NOT EXISTS link_code_clicks_daily
(
    code String,
    day Date,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (code, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS link_code_clicks_daily_mv TO link_code_clicks_daily AS
SELECT code, toDate(ts, 'UTC') AS day, count() AS clicks, sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
GROUP BY code, day;

INSERT INTO link_code_clicks_daily
SELECT code, toDate(ts, 'UTC') AS day, count(), sum(toUInt64(1 - is_bot))
FROM clicks
GROUP BY code, day;

-- Clicks per dimension value and hour over all links (the business dashboard's countries,
-- devices, channels): a few rows per hour instead of one per link.
CREATE TABLE IF NOT EXISTS dimension_clicks_hourly
(
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (dimension, hour, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS dimension_clicks_hourly_mv TO dimension_clicks_hourly AS
SELECT
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY dimension, hour, value;

INSERT INTO dimension_clicks_hourly
SELECT pair.1 AS dimension, toStartOfHour(ts, 'UTC') AS hour, pair.2 AS value, count(), sum(toUInt64(1 - is_bot))
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY dimension, hour, value;

-- Attribution by click id: each click's link, keyed by the click's event id, and the paid
-- orders that name a click but no link code. Conversions join the two when they report, so an
-- order is attributed even when its click is stored after it.
CREATE TABLE IF NOT EXISTS click_links
(
    event_id UInt64,
    ts DateTime,
    link_id UInt64,
    code String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY event_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS click_links_mv TO click_links AS
SELECT event_id, ts, link_id, code
FROM clicks;

INSERT INTO click_links
SELECT event_id, ts, link_id, code
FROM clicks;

CREATE TABLE IF NOT EXISTS click_conversions_hourly
(
    hour DateTime,
    click_id UInt64,
    currency String,
    orders UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, click_id, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS click_conversions_hourly_mv TO click_conversions_hourly AS
SELECT toStartOfHour(ts, 'UTC') AS hour, click_id, currency, count() AS orders, sum(total) AS revenue
FROM orders
WHERE status = 'paid' AND link_code = '' AND click_id != 0
GROUP BY hour, click_id, currency;

INSERT INTO click_conversions_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, click_id, currency, count(), sum(total)
FROM orders
WHERE status = 'paid' AND link_code = '' AND click_id != 0
GROUP BY hour, click_id, currency;
