-- Raw order events, one row per event (an order has several: created, paid, shipped, …), with
-- the Kafka partition and offset each came from. Lines are parallel arrays (one element per
-- line item). Ordered by order so an order's history reads together.
CREATE TABLE IF NOT EXISTS orders
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (order_id, ts, event_id);

-- The orders pipeline's offset fence (see kafka_offsets in 0001).
CREATE MATERIALIZED VIEW IF NOT EXISTS orders_offsets_mv TO kafka_offsets AS
SELECT
    'orders' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM orders
GROUP BY kafka_partition;
