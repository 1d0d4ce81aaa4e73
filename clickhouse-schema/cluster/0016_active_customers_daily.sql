-- 0016_active_customers_daily.sql for a cluster: generated from clickhouse-schema/0016_active_customers_daily.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.active_customers_daily_local ON CLUSTER ${cluster}
(
    version UInt64,
    listed UInt32,
    day DateTime,
    active UInt64,
    paid_orders UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/active_customers_daily_local', '{replica}')
PARTITION BY version
ORDER BY day;

CREATE TABLE IF NOT EXISTS ${database}.active_customers_daily ON CLUSTER ${cluster} AS ${database}.active_customers_daily_local
ENGINE = Distributed(${cluster}, ${database}, active_customers_daily_local, rand());
