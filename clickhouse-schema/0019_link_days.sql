-- Per link and closed UTC day: clicks, human clicks and unique human visitors, finalized.
--
-- A link's series merges one `uniqIf` state per hour of the range from
-- `clicks_hourly_by_link`: for the benchmark's busiest link over 30 days that is about 200,000
-- visitors' hashes, as much work as hashing the raw clicks. `runnel rollup` (run by the clicks
-- processors) merges each closed day's states once and stores the counts here; the report
-- reads a row per whole UTC day (or per hour of it, `link_hours`) instead.
--
-- A row is used only while the link's clicks of that day in `clicks_hourly_by_link` are still
-- the ones it counted: a click stored late for the day changes that count, and the report merges
-- the day's hourly states again until the rollup stores a new version.
CREATE TABLE IF NOT EXISTS link_days
(
    link_id UInt64,
    day Date,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64,
    visitors UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (link_id, day);

-- The same per link and closed UTC hour, for series by hour (written by the rollup with the day's
-- rows of `link_days`, the same version).
CREATE TABLE IF NOT EXISTS link_hours
(
    link_id UInt64,
    hour DateTime,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64,
    visitors UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, hour)
SETTINGS index_granularity = 1024;

-- The days `link_days` and `link_hours` hold: the day's clicks and human clicks when its rows were stored. The
-- rollup rolls a day again when the day's totals moved on (it never reads `link_days` to find out).
CREATE TABLE IF NOT EXISTS link_days_rolled
(
    day Date,
    version UInt64,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY day;
