-- 0010_link_leaders.sql for a cluster: generated from clickhouse-schema/0010_link_leaders.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.link_leaders_daily_local ON CLUSTER ${cluster}
(
    day Date,
    version UInt64,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64,
    listed UInt32,
    floor_humans UInt64,
    day_clicks UInt64,
    day_humans UInt64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/link_leaders_daily_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, version, link_id);

CREATE TABLE IF NOT EXISTS ${database}.link_leaders_daily ON CLUSTER ${cluster} AS ${database}.link_leaders_daily_local
ENGINE = Distributed(${cluster}, ${database}, link_leaders_daily_local, rand());
