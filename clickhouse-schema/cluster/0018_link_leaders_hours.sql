-- 0018_link_leaders_hours.sql for a cluster: generated from clickhouse-schema/0018_link_leaders_hours.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.link_leaders_hours_local ON CLUSTER ${cluster}
(
    version UInt64,
    day Date,
    hours UInt8,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64,
    listed UInt32,
    floor_humans UInt64,
    day_clicks UInt64,
    day_humans UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/link_leaders_hours_local', '{replica}')
PARTITION BY version
ORDER BY link_id;

CREATE TABLE IF NOT EXISTS ${database}.link_leaders_hours ON CLUSTER ${cluster} AS ${database}.link_leaders_hours_local
ENGINE = Distributed(${cluster}, ${database}, link_leaders_hours_local, rand());
