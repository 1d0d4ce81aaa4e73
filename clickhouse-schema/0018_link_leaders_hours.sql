-- The leading links of the current UTC day's closed hours (docs/reports.md, "Top lists"),
-- written by `runnel rollup` beside the closed days' lists of `link_leaders_daily`: a list of
-- the day's first `hours` hours, made again each hour. With it a top-links report whose range
-- takes in today reads today's leaders and the current hour's rows instead of a row for every
-- link clicked since midnight.
--
-- Each list is one INSERT of at most 1,000 rows under a new `version`, with what it was made
-- from as in `link_leaders_daily`: how many rows it has, the human clicks of its last row when
-- it was cut there, and the clicks and human clicks of those hours at the time. Each list is a
-- partition, so the rollup drops old ones whole and keeps the two newest.
CREATE TABLE IF NOT EXISTS link_leaders_hours
(
    version UInt64,
    day Date,
    hours UInt8,
    link_id UInt64,
    code String,
    clicks UInt64,
    human_clicks UInt64,
    listed UInt32,
    floor_humans UInt64,
    day_clicks UInt64,
    day_humans UInt64
)
ENGINE = MergeTree
PARTITION BY version
ORDER BY link_id;
