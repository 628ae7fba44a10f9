//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations while the router is built (every route is registered through
//! `utoipa_axum::routes!`, so a route cannot exist without its entry), served at
//! `GET /api/v1/openapi.json`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

/// Title, security schemes and tags; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy",
        description = "Real-time analytics: durable ingestion, rollups, alerts, live feeds, analytics and SQL. \
                       Every route but /health, /ready and /metrics needs an API key (`X-API-Key` or \
                       `Authorization: Bearer`); the tenant comes from the key."
    ),
    modifiers(&Security),
    security(("api_key" = []), ("bearer" = [])),
    components(schemas(ErrorBody, Scalar)),
    tags(
        (name = "ingest", description = "Sending events: the native route and the compatibility routes"),
        (name = "query", description = "Raw events, devices and time series"),
        (name = "rollups", description = "1m/1h/1d windows of the stream processor"),
        (name = "analytics", description = "Summary, top-N, grouped series, users, funnels, retention, exports"),
        (name = "sql", description = "Read-only SQL over the tenant's tables"),
        (name = "alerts", description = "Rules and alerts"),
        (name = "live", description = "Server-sent events and WebSocket feeds"),
        (name = "admin", description = "Tenants and keys (`admin` scope)"),
        (name = "ops", description = "Health, readiness, metrics, stats, lag"),
    )
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every error answer: a stable code, a message saying what and why, and for rejected events
/// one entry per event (index, field, reason).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: errors are written by `crate::error`
pub(crate) struct ErrorBody {
    /// Stable code, e.g. `invalid_parameter`, `validation_failed`, `unauthorized`.
    error: String,
    message: String,
    /// Rejected events: `{"index", "field", "reason"}`.
    errors: Option<Vec<serde_json::Value>>,
}

/// The error answers any route may give.
#[derive(IntoResponses)]
#[allow(dead_code)] // a schema only
pub(crate) enum Errors {
    /// Invalid parameter or body (which one and why in `message`).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// No key, or an unknown or revoked one.
    #[response(status = 401)]
    Unauthorized(#[to_schema] ErrorBody),
    /// The key lacks the scope the route needs.
    #[response(status = 403)]
    Forbidden(#[to_schema] ErrorBody),
    /// Over the tenant's quota or a full queue; see `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(#[to_schema] ErrorBody),
    /// Overloaded, a query over its time or memory limit, or not ready; see `Retry-After`.
    #[response(status = 503)]
    Unavailable(#[to_schema] ErrorBody),
}

/// The time range most read routes take.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a schema only: routes parse their parameters themselves
pub(crate) struct RangeParams {
    /// Start (inclusive): RFC 3339, epoch number, `now` or relative like `-24h`; default 24 h
    /// before `to`.
    #[param(min_length = 1)]
    from: Option<String>,
    /// End (exclusive); default now.
    #[param(min_length = 1)]
    to: Option<String>,
}

/// The event filters of the analytics routes (all must hold).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a schema only
pub(crate) struct FilterParams {
    /// Only events of this type.
    #[param(rename = "type")]
    event_type: Option<String>,
    /// Only events from this source.
    source: Option<String>,
    /// Only events of this device.
    device_id: Option<String>,
    /// Only events of this user.
    user_id: Option<String>,
    /// Only events on this page.
    page_url: Option<String>,
    /// Only events whose property KEY has this value (any KEY).
    #[param(rename = "property.KEY")]
    property: Option<String>,
}

/// One event as sent. Field aliases older clients use are accepted too: `id`/`eventId` for
/// `event_id`; `timestamp`/`time_stamp`/`ts` for `time`; `event_type`/`eventType` for `type`;
/// `deviceId`/`sensor_id`/`sensorId` for `device_id`; `userId`; `pageUrl`; a top-level numeric
/// `value` becomes metric `value`. Any other top-level scalar becomes a property; other
/// top-level objects or arrays are refused. The tenant is never read from the body.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: bodies are read by eddy-model's normaliser
#[derive(serde::Serialize)]
pub(crate) struct EventIn {
    /// Optional id (at most 256 bytes); events with an id seen within the dedup window are
    /// acknowledged as duplicates and not stored again. Generated when absent.
    event_id: Option<String>,
    /// Event type (at most 128 bytes); `reading` by default when the event has metrics.
    #[serde(rename = "type")]
    r#type: Option<String>,
    /// Event time: RFC 3339, or epoch seconds / milliseconds / microseconds / nanoseconds as a
    /// number (told apart by magnitude). Not more than an hour ahead, not older than the
    /// tenant's retention; default: when it is received.
    #[schema(value_type = Option<TimeArg>)]
    time: Option<serde_json::Value>,
    device_id: Option<String>,
    user_id: Option<String>,
    source: Option<String>,
    page_url: Option<String>,
    /// Numeric measurements by name (finite numbers; at most 256).
    metrics: Option<std::collections::BTreeMap<String, f64>>,
    /// Strings, numbers, booleans or lists of them, by name (at most 256).
    #[schema(value_type = Option<Object>)]
    properties: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Any other top-level field: a scalar, kept as a property (aliases above excepted).
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, Scalar>,
}

/// A string, number, boolean or `null`.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub(crate) enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
    Null(()),
}

/// `{"events": [...]}`.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
#[derive(serde::Serialize)]
pub(crate) struct EventList {
    events: Vec<EventIn>,
}

/// `{"event": {...}}` (the gateway shape).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
#[derive(serde::Serialize)]
pub(crate) struct WrappedEvent {
    event: EventIn,
}

/// An ingest body: one event, an array of events, `{"events": [...]}` or `{"event": {...}}`.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub(crate) enum EventsBody {
    One(EventIn),
    Many(Vec<EventIn>),
    List(EventList),
    Wrapped(WrappedEvent),
}

/// One time bucket: its start and one entry per asked aggregate (`count` a whole number, the
/// others numbers; `null` where a bucket has no number).
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema only: the service writes time series
pub(crate) struct BucketBody {
    /// Bucket start, RFC 3339.
    #[schema(format = DateTime)]
    time: String,
    /// `avg`, `sum`, `min`, `max`, `count`, `first`, `last`, `p50`, `p90`, `p95`, `p99`: those asked.
    #[serde(flatten)]
    values: std::collections::BTreeMap<String, Option<f64>>,
}

/// The buckets of one device (`group_by=device_id`).
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema only
pub(crate) struct DeviceSeriesBody {
    device_id: Option<String>,
    data: Vec<BucketBody>,
}

/// A time series: `data` (one series), or `series` (one per device with `group_by=device_id`).
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)] // a schema only
pub(crate) struct TimeseriesBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<BucketBody>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<Vec<DeviceSeriesBody>>,
}

/// A time: RFC 3339, `now`, relative like `-24h`, or an epoch number (seconds, milliseconds,
/// microseconds or nanoseconds, told apart by magnitude).
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub(crate) enum TimeArg {
    Text(String),
    Epoch(f64),
}

/// A duration: text such as `"90s"`, `"1h"` or `"7d"`, or whole seconds.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub(crate) enum DurationArg {
    Text(String),
    Seconds(u64),
}
