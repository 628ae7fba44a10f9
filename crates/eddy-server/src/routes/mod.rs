//! The HTTP routes. Ingestion routes (native and compatibility) all call [`crate::ingest`].

pub(crate) mod admin;
pub(crate) mod alerts;
pub(crate) mod analytics;
pub(crate) mod ingest;
pub(crate) mod live;
pub(crate) mod ops;
pub(crate) mod query;
pub(crate) mod rollups;
pub(crate) mod sql;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use crate::{Error, Result};

/// A JSON request body, or a 400 saying what is wrong with it.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::bad_request("invalid_body", format!("invalid JSON body: {e}")))
}

/// The whole HTTP API.
pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        // Native ingestion.
        .route(
            "/api/v1/events",
            post(ingest::native).get(query::list_events),
        )
        .route("/api/v1/events/recent", get(query::recent_events))
        .route("/api/data/recent", get(query::recent_sensor_data))
        .route("/api/v1/devices", get(query::list_devices))
        .route("/api/v1/timeseries", get(query::timeseries))
        .route("/api/v1/rollups", get(rollups::rollups))
        .route("/api/v1/query", post(sql::query))
        .route("/api/v1/stream", get(live::sse))
        .route("/api/v1/ws", get(live::ws))
        .route("/ws", get(live::ws))
        .route(
            "/api/v1/rules",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/api/v1/rules/{id}",
            get(alerts::get_rule)
                .put(alerts::put_rule)
                .patch(alerts::patch_rule)
                .delete(alerts::delete_rule),
        )
        .route("/api/v1/alerts", get(alerts::list_alerts))
        .route("/api/v1/alerts/{id}", get(alerts::get_alert))
        .route("/api/v1/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(alerts::resolve))
        .route("/api/v1/analytics/aggregates", get(rollups::aggregates))
        .route("/api/v1/analytics/summary", get(analytics::summary))
        .route("/api/v1/analytics/top", get(analytics::top))
        .route(
            "/api/v1/analytics/timeseries",
            get(analytics::grouped_timeseries),
        )
        .route("/api/v1/analytics/users/{user_id}", get(analytics::user))
        .route("/api/v1/analytics/funnel", post(analytics::funnel))
        .route("/api/v1/analytics/retention", post(analytics::retention))
        .route("/api/v1/export", get(analytics::export))
        .route("/api/v1/metrics/export", get(analytics::metrics_export))
        .route("/api/v1/devices/{id}/metrics", get(query::device_metrics))
        // Compatibility routes onto the same code path.
        .route("/api/data", post(ingest::sensor_data))
        .route("/ingest", post(ingest::click))
        .route("/telemetry", post(ingest::telemetry))
        .route("/events", post(ingest::product_sync))
        .route("/events/async", post(ingest::product_async))
        .route("/events/batch", post(ingest::product_batch))
        .route("/v1/events", post(ingest::gateway))
        .route("/analytics/summary", get(analytics::summary_compat))
        .route("/v1/analytics/summary", get(analytics::summary_compat))
        .route("/analytics/events", get(analytics::click_counts))
        // Admin.
        .route(
            "/api/v1/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route(
            "/api/v1/tenants/{id}",
            get(admin::get_tenant)
                .patch(admin::update_tenant)
                .delete(admin::delete_tenant),
        )
        .route(
            "/api/v1/tenants/{id}/keys",
            post(admin::create_key).get(admin::list_keys),
        )
        .route(
            "/api/v1/tenants/{id}/keys/{key_id}",
            delete(admin::revoke_key),
        )
        .route("/api/v1/whoami", get(admin::whoami))
        // Operations.
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/stats", get(ops::stats))
        .route("/lag", get(ops::lag))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cache::layer,
        ))
        .fallback(ops::not_found)
        .with_state(state);
    api.layer(middleware::from_fn(track_metrics))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("http", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("eddy_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("eddy_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
