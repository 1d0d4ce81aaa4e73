-- 0011_new_customers.sql for a cluster: generated from clickhouse-schema/0011_new_customers.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.new_customers_hourly_local ON CLUSTER ${cluster}
(
    version UInt64,
    cutoff DateTime,
    paid_before UInt64,
    listed UInt32,
    hour DateTime,
    new_customers UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/new_customers_hourly_local', '{replica}')
PARTITION BY version
ORDER BY hour;

CREATE TABLE IF NOT EXISTS ${database}.new_customers_hourly ON CLUSTER ${cluster} AS ${database}.new_customers_hourly_local
ENGINE = Distributed(${cluster}, ${database}, new_customers_hourly_local, rand());
