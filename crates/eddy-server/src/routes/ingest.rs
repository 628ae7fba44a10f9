//! Ingestion handlers: the native route and the compatibility routes, which differ only in
//! their batch limits and response shapes.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use eddy_service::ingest::{IngestBody, IngestRequest, Outcome};

use crate::Result;
use crate::auth::Caller;
use crate::body::read_body;
use crate::openapi::{ErrorBody, Errors, EventsBody};
use crate::routes::params::bad;
use crate::state::AppState;

/// Query parameters every ingestion route takes (others are ignored, as clients of the
/// compatibility routes send their own).
#[derive(Debug, Default)]
pub(crate) struct IngestParams {
    /// `false` answers 202 once queued instead of after fsync.
    sync: Option<bool>,
    /// `true` stores valid events and lists rejected ones.
    partial: Option<bool>,
}

impl IngestParams {
    fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let mut p = Self::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "sync" => &mut p.sync,
                "partial" => &mut p.partial,
                _ => continue,
            };
            *slot = Some(match v.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(bad(format!("`{k}`: true or false"))),
            });
        }
        Ok(p)
    }
}

/// Most events `/events/batch` takes, as the clients of that route expect.
const PRODUCT_BATCH_MAX: usize = 1000;

async fn run(
    state: &AppState,
    caller: &Caller,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    body: Body,
    sync_default: bool,
    max_events: usize,
) -> Result<Outcome> {
    // Refuse a key without `write` before reading its body.
    caller.require(eddy_service::auth::Scope::Write)?;
    let params = IngestParams::parse(pairs)?;
    let body = read_body(state, headers, body).await?;
    let req = IngestRequest {
        body: IngestBody::Raw {
            body: body.bytes.clone(),
            format: body.format,
        },
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

/// The native answer: counts, the rejected events (with `partial`), whether it is fsynced, and
/// for a single event its id.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct NativeAck<'a> {
    /// Events newly stored.
    accepted: usize,
    /// Events already stored within the dedup window (acknowledged, not stored again).
    duplicates: usize,
    /// Events refused (only with `partial=true`; otherwise the request fails with 400).
    #[schema(value_type = Vec<eddy_model::EventError>)]
    rejected: &'a [eddy_model::EventError],
    /// `true` once fsynced; `false` when queued only (`sync=false`, 202).
    durable: bool,
    /// The event's id (given or generated), for a single-event body only; `null` when it was
    /// rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    event_id: Option<Option<&'a str>>,
}

fn native_body(o: &Outcome) -> NativeAck<'_> {
    NativeAck {
        accepted: o.accepted,
        duplicates: o.duplicates,
        rejected: &o.rejected,
        durable: o.durable,
        event_id: (!o.is_batch).then(|| o.event_ids.first().map(String::as_str)),
    }
}

/// The answer older clients of the compatibility routes expect: a status word, a success flag
/// and the event id (single event) or processed / failed counts (batch), plus Eddy's counts.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CompatAck<'a> {
    /// `ok` once fsynced, `accepted` when queued only (202).
    #[schema(value_type = String, pattern = "^(ok|accepted)$")]
    status: &'static str,
    /// Always `true` on a 2xx (errors answer 4xx/5xx with an error body).
    success: bool,
    accepted: usize,
    duplicates: usize,
    /// Batch only: accepted plus duplicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    processed: Option<usize>,
    /// Batch only: events refused (with `partial=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<usize>,
    /// Batch only: the refused events.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<eddy_model::EventError>>)]
    rejected: Option<&'a [eddy_model::EventError]>,
    /// Single event only: its id (`null` when it was rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    event_id: Option<Option<&'a str>>,
    /// Single event only: the same id, as `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    id: Option<Option<&'a str>>,
}

fn compat_body(o: &Outcome) -> CompatAck<'_> {
    let batch = o.is_batch;
    let id = (!batch).then(|| o.event_ids.first().map(String::as_str));
    CompatAck {
        status: if o.durable { "ok" } else { "accepted" },
        success: true,
        accepted: o.accepted,
        duplicates: o.duplicates,
        processed: batch.then_some(o.accepted + o.duplicates),
        failed: batch.then_some(o.rejected.len()),
        rejected: batch.then_some(o.rejected.as_slice()),
        event_id: id,
        id,
    }
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
            Query(pairs): Query<Vec<(String, String)>>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response> {
            let o = run(&state, &caller, &pairs, &headers, body, $sync, $max).await?;
            Ok((status(&o), Json($body(&o))).into_response())
        }
    };
}

ingest_route!(
    #[utoipa::path(post, path = "/api/v1/events", tag = "ingest", operation_id = "native", summary = "Send events (native)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = NativeAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = NativeAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /api/v1/events`: one object, an array, `{"events": […]}` or NDJSON.
    native,
    sync = true,
    max = usize::MAX,
    body = native_body
);
ingest_route!(
    #[utoipa::path(post, path = "/api/data", tag = "ingest", operation_id = "sensor_data", summary = "Sensor readings (`sensorId`, `value`, `timestamp`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /api/data`: sensor readings (`sensorId`/`sensor_id`, `value`, `timestamp`).
    sensor_data,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/ingest", tag = "ingest", operation_id = "click", summary = "Click events (`event_type`, `page_url`, `time_stamp`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /ingest`: click events (`event_type`, `page_url`, `time_stamp`).
    click,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/telemetry", tag = "ingest", operation_id = "telemetry", summary = "Device telemetry (`device_id`, `ts`, `metrics`)", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /telemetry`: device telemetry (`device_id`, `ts`, `metrics`).
    telemetry,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events", tag = "ingest", operation_id = "product_sync", summary = "Product events, answered after fsync", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events`: product events, answered after fsync.
    product_sync,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events/async", tag = "ingest", operation_id = "product_async", summary = "Product events, answered 202 once queued", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events/async`: product events, answered 202 once queued.
    product_async,
    sync = false,
    max = usize::MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/events/batch", tag = "ingest", operation_id = "product_batch", summary = "Up to 1000 product events", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /events/batch`: up to 1000 product events.
    product_batch,
    sync = true,
    max = PRODUCT_BATCH_MAX,
    body = compat_body
);
ingest_route!(
    #[utoipa::path(post, path = "/v1/events", tag = "ingest", operation_id = "gateway", summary = "Gateway style `{\"event\": {...}}`", params(("sync" = Option<bool>, Query, description = "`false`: answer 202 once queued instead of after fsync"), ("partial" = Option<bool>, Query, description = "`true`: store the valid events and list the rejected ones")), request_body(content((EventsBody = "application/json"), (String = "application/x-ndjson")), description = "One event, an array, {\"events\": [...]}, {\"event\": {...}} or NDJSON (`application/x-ndjson`, one event per line); gzip with `Content-Encoding: gzip`. A body without a content type is read as JSON."), responses((status = 200, description = "Stored and fsynced", body = CompatAck), (status = 202, description = "Queued, not yet fsynced (`sync=false`)", body = CompatAck), (status = 413, description = "Body or batch too large", body = ErrorBody), (status = 415, description = "Not JSON or NDJSON", body = ErrorBody), Errors))]
    /// `POST /v1/events`: gateway style `{"event": {…}}`.
    gateway,
    sync = true,
    max = usize::MAX,
    body = compat_body
);
