-- 0013_customer_ids_hourly.sql for a cluster: generated from clickhouse-schema/0013_customer_ids_hourly.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.customer_ids_hourly_local ON CLUSTER ${cluster}
(
    hour DateTime,
    customer UInt64,
    orders UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/customer_ids_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, customer);

CREATE TABLE IF NOT EXISTS ${database}.customer_ids_hourly ON CLUSTER ${cluster} AS ${database}.customer_ids_hourly_local
ENGINE = Distributed(${cluster}, ${database}, customer_ids_hourly_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.customer_ids_hourly_mv ON CLUSTER ${cluster} TO ${database}.customer_ids_hourly_local AS
SELECT toStartOfHour(ts, 'UTC') AS hour, cityHash64(customer_id) AS customer, count() AS orders
FROM ${database}.orders_local
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer;

INSERT INTO customer_ids_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, cityHash64(customer_id) AS customer, count()
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer;
