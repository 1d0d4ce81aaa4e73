-- Units and revenue of paid order lines per product and UTC week (from Monday): top products
-- read the whole weeks of a range's partial months from here instead of one row per product
-- and day (docs/reports.md, "Speed").
CREATE TABLE IF NOT EXISTS product_sales_weekly
(
    week Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(week)
ORDER BY (week, product_id, sku, currency);

CREATE MATERIALIZED VIEW IF NOT EXISTS product_sales_weekly_mv TO product_sales_weekly AS
SELECT
    toMonday(toDate(ts, 'UTC')) AS week,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_id, sku, currency;

INSERT INTO product_sales_weekly
SELECT toMonday(toDate(ts, 'UTC')) AS week, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_id, sku, currency;
