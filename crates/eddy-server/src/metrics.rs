//! Prometheus metrics: one recorder per process, metric names and help texts in one place.
//! Names follow Prometheus conventions (`_total` counters, `_seconds` base units).

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first call).
pub fn prometheus_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ];
            let sizes = [
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
                10000.0, 50000.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Prefix("eddy_log_group_commit".into()),
                        &sizes,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                // Bucket lists above are constant and non-empty; fall back to defaults anyway.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics may be incomplete"
                );
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "eddy_http_requests_total",
        "HTTP requests by method, route and status."
    );
    describe_histogram!(
        "eddy_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route."
    );
    describe_counter!("eddy_events_accepted_total", "Events stored, per tenant.");
    describe_counter!(
        "eddy_events_rejected_total",
        "Events rejected by validation, per tenant."
    );
    describe_counter!(
        "eddy_events_deduplicated_total",
        "Events acknowledged but not stored again (duplicate event_id), per tenant."
    );
    describe_counter!(
        "eddy_quota_rejections_total",
        "Requests refused by the tenant's events/s quota."
    );
    describe_histogram!(
        "eddy_log_fsync_duration_seconds",
        Unit::Seconds,
        "Time of one WAL group write + fsync."
    );
    describe_histogram!(
        "eddy_log_group_commit_records",
        "Records covered by one WAL fsync."
    );
    describe_histogram!(
        "eddy_log_group_commit_requests",
        "Append requests covered by one WAL fsync."
    );
    describe_counter!(
        "eddy_log_written_bytes_total",
        Unit::Bytes,
        "Bytes written to the WAL."
    );
    describe_gauge!(
        "eddy_log_queue_bytes",
        Unit::Bytes,
        "Bytes queued for the WAL writer."
    );
    describe_gauge!(
        "eddy_log_end_offset",
        "Offset after the last durable WAL record."
    );
    describe_gauge!("eddy_log_segments", "WAL segment files.");
    describe_gauge!(
        "eddy_log_healthy",
        "1 while the WAL acknowledges appends, 0 after a write/fsync failure."
    );
    describe_gauge!(
        "eddy_dedup_entries",
        "Event ids held by the deduplication index."
    );
    describe_counter!(
        "eddy_dedup_evicted_total",
        "Event ids evicted from the dedup index before their window ended (index full)."
    );
    describe_gauge!("eddy_tenants", "Tenants in the catalog.");
    describe_counter!(
        "eddy_inflight_rejections_total",
        "Requests refused (503) because the in-flight body budget was spent."
    );
    describe_gauge!(
        "eddy_store_applied_offset",
        "Log offset up to which events are visible to queries."
    );
    describe_counter!(
        "eddy_store_persists_total",
        "Store buffer persists to Parquet."
    );
    describe_counter!(
        "eddy_store_persist_failures_total",
        "Store persists that failed (retried later)."
    );
    describe_counter!(
        "eddy_store_written_bytes_total",
        Unit::Bytes,
        "Parquet bytes written by the store."
    );
    describe_histogram!(
        "eddy_store_persist_duration_seconds",
        Unit::Seconds,
        "Time to write one persist's Parquet files and manifest."
    );
    describe_gauge!(
        "eddy_store_digest_bytes",
        Unit::Bytes,
        "Memory held by the store files' digests (bounded by digest_memory)."
    );
    describe_counter!(
        "eddy_store_digests_evicted_total",
        "File digests dropped to stay within digest_memory (those files are scanned)."
    );
    describe_counter!(
        "eddy_store_digest_files_total",
        "Files read by summary, top-list and series questions, by use: digest or scan."
    );
    describe_counter!(
        "eddy_sql_digest_answers_total",
        "SQL statements whose aggregate (event counts, distinct users, metric statistics) was answered from digests."
    );
    describe_counter!(
        "eddy_store_backpressure_total",
        "Ingest requests refused (503) because the store lagged too far behind the log."
    );
    describe_counter!(
        "eddy_live_slow_consumers_total",
        "Live subscribers (SSE, WebSocket) dropped because they fell behind the feed's capacity."
    );
    describe_gauge!(
        "eddy_live_ws_connections",
        "Open WebSocket live-feed connections."
    );
    describe_counter!(
        "eddy_live_origin_rejected_total",
        "WebSocket upgrades refused because their Origin is not allowed."
    );
    describe_counter!(
        "eddy_stream_alert_transitions_total",
        "Alert transitions (opened, acknowledged, resolved), all tenants."
    );
    describe_counter!(
        "eddy_stream_alert_notices_dropped_total",
        "Alert transitions not handed to the webhook notifier because its queue was full."
    );
    describe_gauge!(
        "eddy_stream_alert_series",
        "(rule, device, metric) series with detector state, all tenants."
    );
    describe_counter!(
        "eddy_webhook_deliveries_total",
        "Webhook delivery attempts by outcome (delivered, retried)."
    );
    describe_counter!(
        "eddy_webhook_dead_letters_total",
        "Alert notifications given up after the last attempt or a final 4xx."
    );
    describe_counter!(
        "eddy_timeseries_queries_total",
        "Time-series queries by where they were answered from (rollups or raw)."
    );
    describe_counter!(
        "eddy_stream_events_total",
        "Log records the stream processor applied to rollups."
    );
    describe_counter!(
        "eddy_stream_late_total",
        "Event × resolution pairs that arrived after their window closed (not applied; the raw store has them)."
    );
    describe_gauge!(
        "eddy_stream_windows",
        "Rollup windows held in memory, all tenants."
    );
    describe_histogram!(
        "eddy_stream_checkpoint_duration_seconds",
        Unit::Seconds,
        "Time to write one stream checkpoint (state + offset)."
    );
    describe_counter!(
        "eddy_stream_checkpoint_failures_total",
        "Stream checkpoints that failed (retried; the log keeps what they would have covered)."
    );
    describe_gauge!(
        "eddy_stream_lag_records",
        "Log records not yet applied by the stream processor."
    );
    describe_gauge!(
        "eddy_build_info",
        "Build information; the value is always 1."
    );
}

/// Refreshes gauges that are read rather than pushed.
pub(crate) fn update_gauges(state: &AppState) {
    metrics::gauge!("eddy_log_queue_bytes").set(state.log.queued_bytes() as f64);
    metrics::gauge!("eddy_log_end_offset").set(state.log.end_offset() as f64);
    metrics::gauge!("eddy_log_healthy").set(if state.log.health() == eddy_log::LogHealth::Ok {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("eddy_stream_lag_records").set(
        state
            .log
            .end_offset()
            .saturating_sub(state.stream.applied_offset()) as f64,
    );
    metrics::gauge!("eddy_dedup_entries").set(state.dedup.len() as f64);
    metrics::gauge!("eddy_tenants")
        .set(state.catalog.tenants().map(|t| t.len()).unwrap_or(0) as f64);
    metrics::gauge!("eddy_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}
