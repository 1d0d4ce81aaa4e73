-- 0004_clicks_enriched.sql for a cluster: generated from clickhouse-schema/0004_clicks_enriched.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster}
    ADD COLUMN city String AFTER country,
    ADD COLUMN browser String AFTER city,
    ADD COLUMN os String AFTER browser,
    ADD COLUMN device String AFTER os,
    ADD COLUMN referrer_host String AFTER device,
    ADD COLUMN channel String AFTER referrer_host,
    ADD COLUMN utm_source String AFTER channel,
    ADD COLUMN utm_medium String AFTER utm_source,
    ADD COLUMN utm_campaign String AFTER utm_medium,
    ADD COLUMN utm_term String AFTER utm_campaign,
    ADD COLUMN utm_content String AFTER utm_term;

DROP TABLE IF EXISTS ${database}.clicks ON CLUSTER ${cluster};

CREATE TABLE IF NOT EXISTS ${database}.clicks ON CLUSTER ${cluster} AS ${database}.clicks_local
ENGINE = Distributed(${cluster}, ${database}, clicks_local, kafka_partition);
