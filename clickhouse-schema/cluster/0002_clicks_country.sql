-- 0002_clicks_country.sql for a cluster: generated from clickhouse-schema/0002_clicks_country.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster} ADD COLUMN country String AFTER ip;

DROP TABLE IF EXISTS ${database}.clicks ON CLUSTER ${cluster};

CREATE TABLE IF NOT EXISTS ${database}.clicks ON CLUSTER ${cluster} AS ${database}.clicks_local
ENGINE = Distributed(${cluster}, ${database}, clicks_local, kafka_partition);
