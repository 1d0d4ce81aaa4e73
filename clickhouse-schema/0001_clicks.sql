-- Raw click events, one row per redirect, with the Kafka partition and offset each came from.
-- Ordered for per-link reports; partitioned by month so old months drop cheaply.
CREATE TABLE IF NOT EXISTS clicks
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (link_id, ts, event_id);

-- Clicks and unique visitors per link and day (merge with countMerge / uniqMerge).
CREATE TABLE IF NOT EXISTS clicks_daily_by_link
(
    day Date,
    link_id UInt64,
    clicks AggregateFunction(count),
    human_clicks AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (link_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_daily_by_link_mv TO clicks_daily_by_link AS
SELECT
    toDate(ts) AS day,
    link_id,
    countState() AS clicks,
    sumState(toUInt64(1 - is_bot)) AS human_clicks,
    uniqState(visitor_id) AS visitors
FROM clicks
GROUP BY day, link_id;

-- The offset fence: the highest Kafka offset stored per source table and partition, written
-- by the same INSERT as the raw rows. Processors read maxMerge(max_offset) on assignment and
-- skip what is already stored, which makes at-least-once delivery exactly-once in effect.
CREATE TABLE IF NOT EXISTS kafka_offsets
(
    source String,
    kafka_partition Int32,
    max_offset AggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (source, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS clicks_offsets_mv TO kafka_offsets AS
SELECT
    'clicks' AS source,
    kafka_partition,
    maxState(kafka_offset) AS max_offset
FROM clicks
GROUP BY kafka_partition;
