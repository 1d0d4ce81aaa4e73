-- 0003_links.sql for a cluster: generated from clickhouse-schema/0003_links.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

CREATE TABLE IF NOT EXISTS ${database}.links_local ON CLUSTER ${cluster}
(
    link_id UInt64,
    code String,
    url String,
    redirect_status UInt16,
    expires_ms UInt64,
    fallback_url String,
    passthrough UInt8,
    disabled UInt8,
    tags Array(String),
    utm_source String,
    utm_medium String,
    utm_campaign String,
    utm_term String,
    utm_content String,
    created DateTime,
    updated DateTime,
    version UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/links_local', '{replica}', version)
ORDER BY link_id;

CREATE TABLE IF NOT EXISTS ${database}.links ON CLUSTER ${cluster} AS ${database}.links_local
ENGINE = Distributed(${cluster}, ${database}, links_local, link_id);
