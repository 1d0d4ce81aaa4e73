-- 0005_orders.sql for a cluster: generated from clickhouse-schema/0005_orders.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.orders_local ON CLUSTER ${cluster}
(
    event_id String,
    ts DateTime,
    received DateTime,
    order_id String,
    order_code String,
    customer_id String,
    status String,
    currency String,
    subtotal Int64,
    tax Int64,
    shipping Int64,
    discount Int64,
    total Int64,
    channel String,
    click_id UInt64,
    link_code String,
    item_product_id Array(String),
    item_sku Array(String),
    item_quantity Array(UInt32),
    item_unit_price Array(Int64),
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/orders_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (order_id, ts, event_id);

CREATE TABLE IF NOT EXISTS ${database}.orders ON CLUSTER ${cluster} AS ${database}.orders_local
ENGINE = Distributed(${cluster}, ${database}, orders_local, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.orders_offsets_mv ON CLUSTER ${cluster} TO ${database}.kafka_offsets_local AS
SELECT
    'orders' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM ${database}.orders_local
GROUP BY kafka_partition;
