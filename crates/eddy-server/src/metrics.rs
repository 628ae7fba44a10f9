//! Prometheus metrics: one recorder per process, metric names and help texts in one place.
//! Names follow Prometheus conventions (`_total` counters, `_seconds` base units).

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
    describe_counter!(
        "eddy_grpc_requests_total",
        "gRPC calls by method and status code, counted when they end."
    );
    describe_histogram!(
        "eddy_grpc_request_duration_seconds",
        Unit::Seconds,
        "gRPC call duration by method (streams: until the stream ends)."
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
        "eddy_ingest_backpressure_total",
        "Ingest requests refused (503) because the store or the stream processor was further behind the log than max_pipeline_lag."
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
    describe_counter!(
        "eddy_query_cache_total",
        "Answers of cached read routes by result: hit (served from the query cache) or miss."
    );
    describe_counter!(
        "eddy_sql_queries_total",
        "SQL statements answered (POST /api/v1/query)."
    );
    describe_counter!(
        "eddy_store_compactions_total",
        "Hour partitions whose Parquet files were merged into one."
    );
    describe_counter!(
        "eddy_store_expired_files_total",
        "Parquet files deleted because their tenant's retention passed."
    );
    describe_gauge!(
        "eddy_stream_horizon_divisor",
        "How much the rollup memory bound shortens the in-memory horizons (1 = the configured horizons; 2 = half of them, …)."
    );
    describe_counter!(
        "eddy_stream_rollup_file_reads_total",
        "Rollup queries that read closed windows back from the rollup files (past the in-memory horizon)."
    );
}

#[cfg(test)]
mod tests {
    /// Every metric any crate of the workspace records is described here, so `/metrics` has a
    /// HELP line for each (promtool insists) whatever activity created it.
    #[test]
    fn every_recorded_metric_is_described() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let described = include_str!("metrics.rs");
        let mut missing = Vec::new();
        let mut seen = 0;
        let mut stack = vec![crates];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("target") && !path.ends_with("tests") {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for kind in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(kind) {
                        if text[..at].ends_with("describe_") {
                            continue;
                        }
                        let rest = text[at + kind.len()..].trim_start();
                        let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                        else {
                            continue;
                        };
                        // Only names (this test's own strings mention the macros too).
                        if !name.starts_with("eddy_")
                            || !name
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        {
                            continue;
                        }
                        seen += 1;
                        let needle = format!("\"{name}\"");
                        let described_here = described.match_indices(&needle).any(|(i, _)| {
                            described[..i].trim_end().ends_with("_counter!(")
                                || described[..i].trim_end().ends_with("_gauge!(")
                                || described[..i].trim_end().ends_with("_histogram!(")
                        });
                        if !described_here {
                            missing.push(format!("{name} ({})", path.display()));
                        }
                    }
                }
            }
        }
        assert!(
            seen > 40,
            "found only {seen} metric uses; is the scan broken?"
        );
        missing.sort();
        missing.dedup();
        assert!(
            missing.is_empty(),
            "metrics without a description in metrics.rs::describe: {missing:?}"
        );
    }
}
