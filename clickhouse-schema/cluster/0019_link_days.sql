-- 0019_link_days.sql for a cluster: generated from clickhouse-schema/0019_link_days.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.link_days_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    day Date,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64,
    visitors UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/link_days_local', '{replica}', version)
PARTITION BY toYYYYMM(day)
ORDER BY (link_id, day);

CREATE TABLE IF NOT EXISTS ${database}.link_days ON CLUSTER ${cluster} AS ${database}.link_days_local
ENGINE = Distributed(${cluster}, ${database}, link_days_local, rand());

CREATE TABLE IF NOT EXISTS ${database}.link_hours_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    hour DateTime,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64,
    visitors UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/link_hours_local', '{replica}', version)
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, hour)
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS ${database}.link_hours ON CLUSTER ${cluster} AS ${database}.link_hours_local
ENGINE = Distributed(${cluster}, ${database}, link_hours_local, rand());

CREATE TABLE IF NOT EXISTS ${database}.link_days_rolled_local ON CLUSTER ${cluster}
(
    day Date,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/link_days_rolled_local', '{replica}', version)
ORDER BY day;

CREATE TABLE IF NOT EXISTS ${database}.link_days_rolled ON CLUSTER ${cluster} AS ${database}.link_days_rolled_local
ENGINE = Distributed(${cluster}, ${database}, link_days_rolled_local, rand());
