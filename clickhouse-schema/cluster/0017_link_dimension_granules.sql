-- 0017_link_dimension_granules.sql for a cluster: generated from clickhouse-schema/0017_link_dimension_granules.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.link_dimension_clicks_hourly_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/${database}/link_dimension_clicks_hourly_local', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, dimension, hour, value)
SETTINGS index_granularity = 1024;

CREATE TABLE IF NOT EXISTS ${database}.link_dimension_clicks_hourly ON CLUSTER ${cluster} AS ${database}.link_dimension_clicks_hourly_local
ENGINE = Distributed(${cluster}, ${database}, link_dimension_clicks_hourly_local, rand());

DROP TABLE IF EXISTS ${database}.clicks_hourly_by_dimension_mv ON CLUSTER ${cluster};

INSERT INTO link_dimension_clicks_hourly
SELECT link_id, dimension, hour, value, clicks, human_clicks
FROM clicks_hourly_by_dimension;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.link_dimension_clicks_hourly_mv ON CLUSTER ${cluster} TO ${database}.link_dimension_clicks_hourly_local AS
SELECT
    link_id,
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM ${database}.clicks_local
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

DROP TABLE IF EXISTS ${database}.clicks_hourly_by_dimension ON CLUSTER ${cluster};

DROP TABLE IF EXISTS ${database}.clicks_hourly_by_dimension_local ON CLUSTER ${cluster};

-- min-version: 24.8
ALTER TABLE ${database}.link_dimension_clicks_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;
