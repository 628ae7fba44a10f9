//! Ingestion handlers: the native route and the compatibility routes, which differ only in
//! their batch limits and response shapes.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use eddy_service::ingest::{IngestRequest, Outcome};

use crate::Result;
use crate::auth::Caller;
use crate::body::read_body;
use crate::openapi::{ErrorBody, Errors};
use crate::state::AppState;

/// Query parameters every ingestion route takes.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct IngestParams {
    /// `false` answers 202 once queued instead of after fsync.
    sync: Option<bool>,
    /// `true` stores valid events and lists rejected ones.
    partial: Option<bool>,
}

/// Most events `/events/batch` takes, as the clients of that route expect.
const PRODUCT_BATCH_MAX: usize = 1000;

async fn run(
    state: &AppState,
    caller: &Caller,
    params: &IngestParams,
    headers: &HeaderMap,
    body: Body,
    sync_default: bool,
    max_events: usize,
) -> Result<Outcome> {
    // Refuse a key without `write` before reading its body.
    caller.require(eddy_service::auth::Scope::Write)?;
    let body = read_body(state, headers, body).await?;
    let req = IngestRequest {
        body: body.bytes.clone(),
        format: body.format,
        partial: params.partial.unwrap_or(false),
        sync: params.sync.unwrap_or(sync_default),
        max_events,
    };
    // `body` (and its in-flight budget) lives until the events are queued or refused.
    Ok(state.services.ingest.ingest(&caller.0, req).await?)
}

fn status(o: &Outcome) -> StatusCode {
    if o.durable {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

fn native_body(o: &Outcome) -> serde_json::Value {
    let mut v = json!({
        "accepted": o.accepted,
        "duplicates": o.duplicates,
        "rejected": o.rejected,
        "durable": o.durable,
    });
    if !o.is_batch {
        v["event_id"] = json!(o.event_ids.first());
    }
    v
}

/// The response older clients of the compatibility routes expect: a status word, a success
/// flag and the event id, plus Eddy's counts.
fn compat_body(o: &Outcome) -> serde_json::Value {
    let mut v = json!({
        "status": if o.durable { "ok" } else { "accepted" },
        "success": true,
        "accepted": o.accepted,
        "duplicates": o.duplicates,
    });
    if o.is_batch {
        v["processed"] = json!(o.accepted + o.duplicates);
        v["failed"] = json!(o.rejected.len());
        v["rejected"] = json!(o.rejected);
    } else {
        v["event_id"] = json!(o.event_ids.first());
        v["id"] = v["event_id"].clone();
    }
    v
}

/// One handler per route, all onto [`run`]; they differ in default sync mode, batch limit and
/// response shape.
macro_rules! ingest_route {
    ($(#[$doc:meta])* $name:ident, sync = $sync:expr, max = $max:expr, body = $body:ident) => {
        $(#[$doc])*
        #[allow(clippy::needless_pass_by_value)]
        pub(crate) async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Query(params): Query<IngestParams>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response> {
            let o = run(&state, &caller, &params, &headers, body, $sync, $max).await?;
            Ok((status(&o), Json($body(&o))).into_response())
        }
    };
}

ingest_route!(
    #[utoipa::path(post, path = "/api/v1/events", tag = "ingest", operation_id = "native", summary = "Send events (native)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /api/v1/events`: one object, an array, `{"events": […]}` or NDJSON.
    native,
    sync = true,
    max = usize::MAX,
    body = native_body
);
ingest_route!(
    #[utoipa::path(post, path = "/api/data", tag = "ingest", operation_id = "sensor_data", summary = "Sensor readings (`sensorId`, `value`, `timestamp`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /api/data`: sensor readings (`sensorId`/`sensor_id`, `value`, `timestamp`).
    sensor_data,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/ingest", tag = "ingest", operation_id = "click", summary = "Click events (`event_type`, `page_url`, `time_stamp`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /ingest`: click events (`event_type`, `page_url`, `time_stamp`).
    click,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/telemetry", tag = "ingest", operation_id = "telemetry", summary = "Device telemetry (`device_id`, `ts`, `metrics`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /telemetry`: device telemetry (`device_id`, `ts`, `metrics`).
    telemetry,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events", tag = "ingest", operation_id = "product_sync", summary = "Product events, answered after fsync", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events`: product events, answered after fsync.
    product_sync,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events/async", tag = "ingest", operation_id = "product_async", summary = "Product events, answered 202 once queued", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events/async`: product events, answered 202 once queued.
    product_async,
    sync = false,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events/batch", tag = "ingest", operation_id = "product_batch", summary = "Up to 1000 product events", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events/batch`: up to 1000 product events.
    product_batch,
    sync = true,
    max = PRODUCT_BATCH_MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/v1/events", tag = "ingest", operation_id = "gateway", summary = "Gateway style `{\"event\": {...}}`", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content = Object, description = "One event, an array, {\"events\": [...]} or NDJSON (`application/x-ndjson`); gzip with `Content-Encoding: gzip`"), responses((status = 200, description = "Stored and fsynced: counts and event ids", body = Object), (status = 202, description = "Queued (`sync=false`)", body = Object), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /v1/events`: gateway style `{"event": {…}}`.
    gateway,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
