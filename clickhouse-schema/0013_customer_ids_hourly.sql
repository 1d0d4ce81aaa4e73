-- Paid orders per customer and UTC hour, keyed by the 64-bit hash of the customer id that
-- `customer_firsts` uses: the customers report counts active customers per bucket over numbers
-- instead of hashing every customer id string of the range on each call.
CREATE TABLE IF NOT EXISTS customer_ids_hourly
(
    hour DateTime,
    customer UInt64,
    orders UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, customer);

CREATE MATERIALIZED VIEW IF NOT EXISTS customer_ids_hourly_mv TO customer_ids_hourly AS
SELECT toStartOfHour(ts, 'UTC') AS hour, cityHash64(customer_id) AS customer, count() AS orders
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer;

INSERT INTO customer_ids_hourly
SELECT toStartOfHour(ts, 'UTC') AS hour, cityHash64(customer_id) AS customer, count()
FROM orders
WHERE status = 'paid' AND customer_id != ''
GROUP BY hour, customer;
