//! Health, readiness, Prometheus metrics, per-tenant stats and consumer lag.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_service::Error as Domain;
use eddy_service::ops::{Health, Lag, Readiness, Stats};

use crate::auth::Caller;
use crate::openapi::Errors;
use crate::state::AppState;
use crate::{Error, Result};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", operation_id = "health", summary = "Liveness", responses((status = 200, description = "The process answers", body = Health)), security(()))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(state.services.ops.health())
}

/// Readiness: recovery is done (it is before the listener opens) and the log acknowledges.
#[utoipa::path(get, path = "/ready", tag = "ops", operation_id = "ready", summary = "Readiness", responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Not ready: the log failed or is closed", body = Readiness)), security(()))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let r = state.services.ops.ready();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r)).into_response()
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics", summary = "Prometheus metrics", responses((status = 200, description = "Prometheus text format", body = String)), security(()))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.services.ops.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.prometheus.render(),
    )
        .into_response()
}

/// Ingest counters of the caller's tenant since the process started, and the log position.
#[utoipa::path(get, path = "/stats", tag = "ops", operation_id = "stats", summary = "Ingest counters of the tenant and the log position", responses((status = 200, description = "Counters", body = Stats), Errors))]
pub(crate) async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Stats>> {
    Ok(Json(state.services.ops.stats(&caller.0)?))
}

/// How far each log consumer is behind the end of the log.
#[utoipa::path(get, path = "/lag", tag = "ops", operation_id = "lag", summary = "How far each log consumer is behind", responses((status = 200, description = "Per consumer: offset and lag", body = Lag), Errors))]
pub(crate) async fn lag(State(state): State<AppState>, caller: Caller) -> Result<Json<Lag>> {
    Ok(Json(state.services.ops.lag(&caller.0)?))
}

pub(crate) async fn method_not_allowed(method: axum::http::Method) -> Error {
    Error::MethodNotAllowed(format!(
        "{method} is not a method of this path; the Allow header lists those that are"
    ))
}

pub(crate) async fn not_found() -> Error {
    Domain::NotFound("no such route".into()).into()
}

/// The OpenAPI document of every route.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", operation_id = "openapi", summary = "This OpenAPI document", responses((status = 200, description = "OpenAPI 3.1 JSON", body = Object)), security(()))]
pub(crate) async fn openapi() -> Response {
    axum::Json(crate::routes::openapi()).into_response()
}
