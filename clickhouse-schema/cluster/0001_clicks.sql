-- 0001_clicks.sql for a cluster: generated from clickhouse-schema/0001_clicks.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.clicks_local ON CLUSTER ${cluster}
(
    event_id UInt64,
    ts DateTime,
    link_id UInt64,
    code String,
    method String,
    user_agent String,
    referrer String,
    accept_language String,
    ip String,
    visitor_id UInt64,
    is_bot UInt8,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/clicks_local', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (link_id, ts, event_id);

CREATE TABLE IF NOT EXISTS ${database}.clicks ON CLUSTER ${cluster} AS ${database}.clicks_local
ENGINE = Distributed(${cluster}, ${database}, clicks_local, kafka_partition);

CREATE TABLE IF NOT EXISTS ${database}.clicks_daily_by_link_local ON CLUSTER ${cluster}
(
    day Date,
    link_id UInt64,
    clicks AggregateFunction(count),
    human_clicks AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/clicks_daily_by_link_local', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (link_id, day);

CREATE TABLE IF NOT EXISTS ${database}.clicks_daily_by_link ON CLUSTER ${cluster} AS ${database}.clicks_daily_by_link_local
ENGINE = Distributed(${cluster}, ${database}, clicks_daily_by_link_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.clicks_daily_by_link_mv ON CLUSTER ${cluster} TO ${database}.clicks_daily_by_link_local AS
SELECT
    toDate(ts) AS day,
    link_id,
    countState() AS clicks,
    sumState(toUInt64(1 - is_bot)) AS human_clicks,
    uniqState(visitor_id) AS visitors
FROM ${database}.clicks_local
GROUP BY day, link_id;

CREATE TABLE IF NOT EXISTS ${database}.kafka_offsets_local ON CLUSTER ${cluster}
(
    source String,
    kafka_partition Int32,
    max_offset AggregateFunction(max, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/${database}/kafka_offsets_local', '{replica}')
ORDER BY (source, kafka_partition);

CREATE TABLE IF NOT EXISTS ${database}.kafka_offsets ON CLUSTER ${cluster} AS ${database}.kafka_offsets_local
ENGINE = Distributed(${cluster}, ${database}, kafka_offsets_local, rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.clicks_offsets_mv ON CLUSTER ${cluster} TO ${database}.kafka_offsets_local AS
SELECT
    'clicks' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM ${database}.clicks_local
GROUP BY kafka_partition;
