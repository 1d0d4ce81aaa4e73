-- Each closed UTC day's leading links by human clicks (docs/reports.md, "Top lists"), written
-- by `runnel rollup` (the clicks processors run it every few minutes), not by a view: which
-- links lead a day is only known once the day is over.
--
-- A day's list is one INSERT of at most 1,000 rows sharing a `version`; every row carries what
-- the list was made from: how many rows the list has (`listed`), the human clicks of its last
-- row when the list was cut there (`floor_humans`: no link left out had more), and the day's
-- clicks and human clicks at the time. The top-links report uses a day's newest list only while
-- the day's totals are still those, so a late click makes the day read exactly again until the
-- next rollup lists it anew.
CREATE TABLE IF NOT EXISTS link_leaders_daily
(
    day Date,
    version UInt64,
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
PARTITION BY toYYYYMM(day)
ORDER BY (day, version, link_id);
