-- Link breakdowns (per link, dimension, hour and value) in a table with smaller granules. A
-- breakdown reads one link's rows of one dimension over a range: hundreds to a few thousand
-- rows. With the default index granularity of 8,192 rows, every part of the table gave at least
-- one whole granule to each such read: on the benchmark's data, the busiest link's 30-day
-- country breakdown read 204,800 rows of `clicks_hourly_by_dimension` (0006) in 12-14 ms; the
-- same rows in granules of 1,024 read 38,912 rows in 5 ms, and a link of middling traffic 6,144
-- rows instead of 131,072 (2-3 ms instead of 5-6).
--
-- A table's granularity cannot be altered, so this migration copies the rows into a new table,
-- moves the view to it and drops the old one. Run it with the processors stopped, as every
-- migration that copies rows: clicks stored between the old view's removal and the new view's
-- creation would be in neither table.
CREATE TABLE IF NOT EXISTS link_dimension_clicks_hourly
(
    link_id UInt64,
    dimension String,
    hour DateTime,
    value String,
    clicks UInt64,
    human_clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (link_id, dimension, hour, value)
SETTINGS index_granularity = 1024;

DROP TABLE IF EXISTS clicks_hourly_by_dimension_mv;

INSERT INTO link_dimension_clicks_hourly
SELECT link_id, dimension, hour, value, clicks, human_clicks
FROM clicks_hourly_by_dimension;

CREATE MATERIALIZED VIEW IF NOT EXISTS link_dimension_clicks_hourly_mv TO link_dimension_clicks_hourly AS
SELECT
    link_id,
    pair.1 AS dimension,
    toStartOfHour(ts, 'UTC') AS hour,
    pair.2 AS value,
    count() AS clicks,
    sum(toUInt64(1 - is_bot)) AS human_clicks
FROM clicks
ARRAY JOIN [('country', country), ('device', device), ('browser', browser), ('os', os), ('referrer', referrer_host), ('channel', channel)] AS pair
GROUP BY link_id, dimension, hour, value;

DROP TABLE IF EXISTS clicks_hourly_by_dimension;

-- Insert deduplication on current servers, as 0009 gives every table a view writes.
-- min-version: 24.8
ALTER TABLE link_dimension_clicks_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;
