//! Per-link daily stats, read from the pre-aggregated `clicks_daily_by_link` table only.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use super::ClickhouseConfig;
use crate::SinkError;

/// One day of one link.
#[derive(Clone, Debug, Row, Serialize, Deserialize, PartialEq, Eq)]
pub struct DailyStats {
    /// `YYYY-MM-DD` (server time zone).
    pub day: String,
    /// Every click, bots included.
    pub clicks: u64,
    /// Clicks not flagged as bots.
    pub human_clicks: u64,
    /// Estimated unique visitors.
    pub visitors: u64,
}

/// Daily stats of `link_id` for the last `days` days, oldest first.
pub async fn daily_stats(config: &ClickhouseConfig, link_id: u64, days: u32) -> Result<Vec<DailyStats>, SinkError> {
    config
        .client()
        .query(
            "SELECT toString(day) AS day_text, countMerge(clicks) AS clicks, sumMerge(human_clicks) AS human_clicks, \
             toUInt64(uniqMerge(visitors)) AS visitors \
             FROM clicks_daily_by_link WHERE link_id = ? AND day >= today() - ? \
             GROUP BY day ORDER BY day",
        )
        .bind(link_id)
        .bind(days)
        .fetch_all()
        .await
        .map_err(|e| config.error(e))
}
