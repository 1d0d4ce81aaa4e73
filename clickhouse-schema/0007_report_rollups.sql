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
