-- 0009_insert_dedup.sql for a cluster: generated from clickhouse-schema/0009_insert_dedup.sql by `runnel schema --write-cluster`;
-- edit the single-server file, not this one (docs/cluster.md).

-- min-version: 24.8
ALTER TABLE ${database}.clicks_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.orders_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.kafka_offsets_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.clicks_daily_by_link_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.clicks_hourly_by_link_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.clicks_hourly_by_dimension_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.link_clicks_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.link_clicks_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.link_clicks_monthly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.link_code_clicks_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.dimension_clicks_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.click_links_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.orders_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_sales_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_sales_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.product_sales_monthly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.customers_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.customer_orders_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.customer_firsts_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.order_status_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.conversions_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.conversions_daily_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE ${database}.click_conversions_hourly_local ON CLUSTER ${cluster} MODIFY SETTING non_replicated_deduplication_window = 1000;
