-- 0014_orders_daily.sql for a cluster: generated from clickhouse-schema/0014_orders_daily.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.orders_daily_local ON CLUSTER ${cluster}
(
    day Date,
    status String,
    currency String,
    events UInt64,
    total Int64,
    units UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/orders_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, status, currency);

CREATE TABLE IF NOT EXISTS ${database}.orders_daily ON CLUSTER ${cluster} AS ${database}.orders_daily_local
ENGINE = Distributed(${cluster}, ${database}, orders_daily_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.orders_daily_mv ON CLUSTER ${cluster} TO ${database}.orders_daily_local AS
SELECT
    toDate(ts, 'UTC') AS day,
    status,
    currency,
    count() AS events,
    sum(total) AS total,
    sum(toUInt64(arraySum(item_quantity))) AS units
FROM ${database}.orders_local
GROUP BY day, status, currency;

INSERT INTO orders_daily
SELECT toDate(ts, 'UTC') AS day, status, currency, count(), sum(total), sum(toUInt64(arraySum(item_quantity)))
FROM orders
GROUP BY day, status, currency;
