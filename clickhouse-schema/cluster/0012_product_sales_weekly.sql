-- 0012_product_sales_weekly.sql for a cluster: generated from clickhouse-schema/0012_product_sales_weekly.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.product_sales_weekly_local ON CLUSTER ${cluster}
(
    week Date,
    product_id String,
    sku String,
    currency String,
    units UInt64,
    revenue Int64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/product_sales_weekly_local', '{replica}')
PARTITION BY toYYYYMM(week)
ORDER BY (week, product_id, sku, currency);

CREATE TABLE IF NOT EXISTS ${database}.product_sales_weekly ON CLUSTER ${cluster} AS ${database}.product_sales_weekly_local
ENGINE = Distributed(${cluster}, ${database}, product_sales_weekly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.product_sales_weekly_mv ON CLUSTER ${cluster} TO ${database}.product_sales_weekly_local AS
SELECT
    toMonday(toDate(ts, 'UTC')) AS week,
    product_id,
    sku,
    currency,
    sum(toUInt64(quantity)) AS units,
    sum(quantity * unit_price) AS revenue
FROM ${database}.orders_local
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_id, sku, currency;

INSERT INTO product_sales_weekly
SELECT toMonday(toDate(ts, 'UTC')) AS week, product_id, sku, currency, sum(toUInt64(quantity)), sum(quantity * unit_price)
FROM orders
ARRAY JOIN item_product_id AS product_id, item_sku AS sku, item_quantity AS quantity, item_unit_price AS unit_price
WHERE status = 'paid'
GROUP BY week, product_id, sku, currency;
