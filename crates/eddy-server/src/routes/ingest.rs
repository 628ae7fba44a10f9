//! Ingestion handlers: the native route and the compatibility routes, which differ only in
//! their batch limits and response shapes.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::Result;
use crate::auth::Caller;
use crate::catalog::Scope;
use crate::ingest::{IngestOptions, Outcome, ingest, read_body};
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
    let principal = caller.require(Scope::Write)?;
    let body = read_body(state, headers, body).await?;
    let opts = IngestOptions {
        partial: params.partial.unwrap_or(false),
        sync: params.sync.unwrap_or(sync_default),
        max_events: max_events.min(state.config.max_batch_events),
    };
    // `body` (and its in-flight budget) lives until the events are queued or refused.
    ingest(state, principal, body.bytes.clone(), body.format, opts).await
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
    /// `POST /api/v1/events`: one object, an array, `{"events": […]}` or NDJSON.
    native, sync = true, max = usize::MAX, body = native_body
);
ingest_route!(
    /// `POST /api/data`: sensor readings (`sensorId`/`sensor_id`, `value`, `timestamp`).
    sensor_data, sync = true, max = usize::MAX, body = compat_body
);
ingest_route!(
    /// `POST /ingest`: click events (`event_type`, `page_url`, `time_stamp`).
    click, sync = true, max = usize::MAX, body = compat_body
);
ingest_route!(
    /// `POST /telemetry`: device telemetry (`device_id`, `ts`, `metrics`).
    telemetry, sync = true, max = usize::MAX, body = compat_body
);
ingest_route!(
    /// `POST /events`: product events, answered after fsync.
    product_sync, sync = true, max = usize::MAX, body = compat_body
);
ingest_route!(
    /// `POST /events/async`: product events, answered 202 once queued.
    product_async, sync = false, max = usize::MAX, body = compat_body
);
ingest_route!(
    /// `POST /events/batch`: up to 1000 product events.
    product_batch, sync = true, max = PRODUCT_BATCH_MAX, body = compat_body
);
ingest_route!(
    /// `POST /v1/events`: gateway style `{"event": {…}}`.
    gateway, sync = true, max = usize::MAX, body = compat_body
);
