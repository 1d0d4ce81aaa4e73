-- Insert deduplication on current servers. ClickHouse after 24.7 writes an INSERT's views in
-- no fixed order (not in name order as 18.16 does, which 0008 relies on), so a failing view can
-- leave the fence unmoved while the raw rows, and some report tables, were stored. The processor
-- therefore sends every INSERT with an `insert_deduplication_token` naming the offsets it holds
-- (and `deduplicate_blocks_in_dependent_materialized_views = 1`): a retry of the same rows is
-- dropped by every table that stored them, and written to those that did not. Plain MergeTree
-- tables keep no deduplication log unless told to; these are the raw tables and every table a
-- view writes. Older servers skip this file's statements (before 24.7, equal blocks that views
-- produced from different inserts could be taken for duplicates), and the processor sends no
-- token to them.
-- min-version: 24.8
ALTER TABLE clicks MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE orders MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE kafka_offsets MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE clicks_daily_by_link MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE clicks_hourly_by_link MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE clicks_hourly_by_dimension MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE link_clicks_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE link_clicks_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE link_clicks_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE link_code_clicks_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE dimension_clicks_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE click_links MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE orders_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_sales_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_sales_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE product_sales_monthly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE customers MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE customer_orders_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE customer_firsts MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE order_status MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE conversions_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE conversions_daily MODIFY SETTING non_replicated_deduplication_window = 1000;

-- min-version: 24.8
ALTER TABLE click_conversions_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;
