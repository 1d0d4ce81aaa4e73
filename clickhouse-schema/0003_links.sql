-- The links dimension: one row per version of a link, the newest kept on merge (read with FINAL
-- or argMax(…, version) for exact answers). Fed by the links pipeline from the compacted links topic.
CREATE TABLE IF NOT EXISTS links
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
ENGINE = ReplacingMergeTree(version)
ORDER BY link_id;
