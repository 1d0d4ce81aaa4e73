//! The processors' metric names (`runnel_processor_*`) and their `/metrics` endpoint.

use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

/// Events decoded from Kafka, by pipeline (counter).
pub(crate) const EVENTS_CONSUMED_TOTAL: &str = "runnel_processor_events_consumed_total";
/// Rows stored, by pipeline and sink (counter).
pub(crate) const ROWS_STORED_TOTAL: &str = "runnel_processor_rows_stored_total";
/// Rows a sink skipped because its fence showed them stored already, by pipeline and sink (counter).
pub(crate) const ROWS_FENCED_TOTAL: &str = "runnel_processor_rows_fenced_total";
/// Messages skipped whole because every sink's fence already covers them, by pipeline (counter).
pub(crate) const MESSAGES_SKIPPED_TOTAL: &str = "runnel_processor_messages_skipped_total";
/// Events dropped as repeats of a recently seen event id, by pipeline (counter).
pub(crate) const DUPLICATES_TOTAL: &str = "runnel_processor_duplicates_total";
/// Flush latency by pipeline and sink (histogram, seconds).
pub(crate) const FLUSH_DURATION_SECONDS: &str = "runnel_processor_flush_duration_seconds";
/// Events per batch at flush, by pipeline (histogram).
pub(crate) const BATCH_ROWS: &str = "runnel_processor_batch_rows";
/// Encoded bytes per batch at flush, by pipeline (histogram).
pub(crate) const BATCH_BYTES: &str = "runnel_processor_batch_bytes";
/// Age of a batch's oldest message at flush, by pipeline (histogram, seconds).
pub(crate) const BATCH_AGE_SECONDS: &str = "runnel_processor_batch_age_seconds";
/// Messages between the group's committed offset and the partition's end (everything retained
/// when nothing is committed yet), by pipeline and partition, from librdkafka's statistics
/// every 5 s (gauge).
pub(crate) const CONSUMER_LAG: &str = "runnel_processor_consumer_lag";
/// Batches given up after `RUNNEL_SINK_GIVE_UP_MS` of failing sinks and read again, by
/// pipeline (counter).
pub(crate) const BATCHES_READ_AGAIN_TOTAL: &str = "runnel_processor_batches_read_again_total";
/// Sink retries by pipeline and sink (counter).
pub(crate) const RETRIES_TOTAL: &str = "runnel_processor_retries_total";
/// Partitions whose fences were loaded on assignment (after every restart and rebalance), by
/// pipeline (counter).
pub(crate) const FENCE_LOADS_TOTAL: &str = "runnel_processor_fence_loads_total";
/// Partitions paused while a flush retries a failing sink, by pipeline (gauge).
pub(crate) const PARTITIONS_PAUSED: &str = "runnel_processor_partitions_paused";
/// Partitions assigned to this processor, revoked from it (released after storing what it held)
/// or lost (gone before it could), by pipeline and change (counter).
pub(crate) const PARTITION_CHANGES_TOTAL: &str = "runnel_processor_partition_changes_total";
/// How long the pipeline's consumer has been out of its group (librdkafka's join state not
/// `steady`: joining, or waiting on a coordinator), 0 while in it, by pipeline, from
/// librdkafka's statistics every 5 s (gauge, seconds). While it is out, its partitions' lag
/// gauges keep their last values: this is what shows the stall.
pub(crate) const OUT_OF_GROUP_SECONDS: &str = "runnel_processor_out_of_group_seconds";
/// Messages sent to the dead-letter topic, by pipeline and reason (counter).
pub(crate) const DLQ_TOTAL: &str = "runnel_processor_dlq_messages_total";
/// Days whose leading links the rollup listed (counter).
pub(crate) const ROLLUP_DAYS_LISTED_TOTAL: &str = "runnel_processor_rollup_days_listed_total";
/// Rollups that failed, retried at the next interval (counter).
pub(crate) const ROLLUP_FAILURES_TOTAL: &str = "runnel_processor_rollup_failures_total";
/// Unix time of the last rollup that finished (gauge).
pub(crate) const ROLLUP_LAST_SUCCESS: &str = "runnel_processor_rollup_last_success_timestamp_seconds";

pub(crate) fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(EVENTS_CONSUMED_TOTAL, "Events decoded from Kafka");
    describe_counter!(ROWS_STORED_TOTAL, "Rows stored per sink");
    describe_counter!(ROWS_FENCED_TOTAL, "Rows skipped because the sink's fence showed them stored");
    describe_counter!(DUPLICATES_TOTAL, "Events dropped as repeats of a recently seen event id");
    describe_histogram!(FLUSH_DURATION_SECONDS, metrics::Unit::Seconds, "Time to store one batch in one sink");
    describe_histogram!(BATCH_ROWS, "Events per batch at flush");
    describe_histogram!(BATCH_BYTES, metrics::Unit::Bytes, "Encoded bytes per batch at flush");
    describe_histogram!(BATCH_AGE_SECONDS, metrics::Unit::Seconds, "Age of a batch's oldest message at flush");
    metrics::describe_gauge!(CONSUMER_LAG, "Messages between the committed offset and the partition's end");
    describe_counter!(MESSAGES_SKIPPED_TOTAL, "Messages skipped whole because every sink's fence covers them");
    describe_counter!(RETRIES_TOTAL, "Retries of failing sink operations");
    describe_counter!(BATCHES_READ_AGAIN_TOTAL, "Batches given up after failing sinks and read again");
    describe_counter!(DLQ_TOTAL, "Messages sent to the dead-letter topic");
    describe_counter!(FENCE_LOADS_TOTAL, "Partitions whose fences were loaded on assignment");
    metrics::describe_gauge!(PARTITIONS_PAUSED, "Partitions paused while a flush retries a failing sink");
    describe_counter!(PARTITION_CHANGES_TOTAL, "Partitions assigned, revoked or lost in rebalances");
    metrics::describe_gauge!(
        OUT_OF_GROUP_SECONDS,
        metrics::Unit::Seconds,
        "How long the pipeline's consumer has been out of its group (0 while in it)"
    );
    describe_counter!(ROLLUP_DAYS_LISTED_TOTAL, "Days whose leading links the rollup listed");
    describe_counter!(ROLLUP_FAILURES_TOTAL, "Rollups that failed (retried at the next interval)");
    metrics::describe_gauge!(ROLLUP_LAST_SUCCESS, "Unix time of the last rollup that finished");
}

/// Creates a pipeline's counters with their known labels at zero, so `/metrics` lists them from
/// the start and `increase()` in an alert sees the first event. `sinks` are the pipeline's.
pub(crate) fn register_known(pipeline: &'static str, sinks: &[&'static str]) {
    use metrics::counter;
    for name in
        [EVENTS_CONSUMED_TOTAL, MESSAGES_SKIPPED_TOTAL, DUPLICATES_TOTAL, BATCHES_READ_AGAIN_TOTAL, FENCE_LOADS_TOTAL]
    {
        counter!(name, "pipeline" => pipeline).absolute(0);
    }
    for &sink in sinks {
        counter!(ROWS_STORED_TOTAL, "pipeline" => pipeline, "sink" => sink).absolute(0);
        counter!(RETRIES_TOTAL, "pipeline" => pipeline, "sink" => sink).absolute(0);
    }
    counter!(ROWS_FENCED_TOTAL, "pipeline" => pipeline, "sink" => "clickhouse").absolute(0);
    for reason in ["undecodable", "invalid"] {
        counter!(DLQ_TOTAL, "pipeline" => pipeline, "reason" => reason).absolute(0);
    }
    for change in ["assigned", "revoked", "lost"] {
        counter!(PARTITION_CHANGES_TOTAL, "pipeline" => pipeline, "change" => change).absolute(0);
    }
    metrics::gauge!(PARTITIONS_PAUSED, "pipeline" => pipeline).set(0.0);
    metrics::gauge!(OUT_OF_GROUP_SECONDS, "pipeline" => pipeline).set(0.0);
}

/// Serves `GET /metrics` until the process ends.
pub(crate) async fn serve(listener: tokio::net::TcpListener, prometheus: PrometheusHandle) {
    let app = axum::Router::new().route("/metrics", get(move || std::future::ready(prometheus.render())));
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "metrics endpoint stopped");
    }
}
