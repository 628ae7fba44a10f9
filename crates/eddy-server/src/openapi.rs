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
    components(schemas(ErrorBody)),
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
    from: Option<String>,
    /// End (exclusive); default now.
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
