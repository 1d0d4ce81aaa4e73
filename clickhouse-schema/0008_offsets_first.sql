-- The offset fences' views, renamed so they sort before every other view of `clicks` and
-- `orders`. ClickHouse 18.16 writes an INSERT's raw rows first, then its views in name order,
-- and stops at the first view that fails. A failing report view sorted before the fence's view
-- left the raw rows stored but the fence unmoved, so the processor's retry stored them twice.
-- With the fences written first, the retry reads the fence, finds the rows stored and skips
-- them: the raw table stays exact, and the report tables after the failing view can be
-- refilled from it (docs/reliability.md). 18.16 cannot rename a view, so the new one is created
-- before the old one is dropped (both write the same maximum meanwhile).
CREATE MATERIALIZED VIEW IF NOT EXISTS _clicks_offsets_mv TO kafka_offsets AS
SELECT
    'clicks' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM clicks
GROUP BY kafka_partition;

DROP TABLE IF EXISTS clicks_offsets_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS _orders_offsets_mv TO kafka_offsets AS
SELECT
    'orders' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM orders
GROUP BY kafka_partition;

DROP TABLE IF EXISTS orders_offsets_mv;
