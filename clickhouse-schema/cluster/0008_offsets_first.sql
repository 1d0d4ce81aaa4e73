-- 0008_offsets_first.sql for a cluster: generated from clickhouse-schema/0008_offsets_first.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}._clicks_offsets_mv ON CLUSTER ${cluster} TO ${database}.kafka_offsets_local AS
SELECT
    'clicks' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM ${database}.clicks_local
GROUP BY kafka_partition;

DROP TABLE IF EXISTS ${database}.clicks_offsets_mv ON CLUSTER ${cluster};

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}._orders_offsets_mv ON CLUSTER ${cluster} TO ${database}.kafka_offsets_local AS
SELECT
    'orders' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM ${database}.orders_local
GROUP BY kafka_partition;

DROP TABLE IF EXISTS ${database}.orders_offsets_mv ON CLUSTER ${cluster};
