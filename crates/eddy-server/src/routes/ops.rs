//! Health, readiness, Prometheus metrics, per-tenant stats and consumer lag.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use eddy_log::LogHealth;
use serde_json::json;

use crate::auth::Caller;
use crate::openapi::Errors;
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", operation_id = "health", summary = "Liveness", responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object), Errors), security(()))]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
    .into_response()
}

/// Readiness: recovery is done (it is before the listener opens) and the log acknowledges.
#[utoipa::path(get, path = "/ready", tag = "ops", operation_id = "ready", summary = "Readiness", responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready", body = Object), Errors), security(()))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.log.health() {
        LogHealth::Ok => Json(json!({"status": "ready", "log": "ok"})).into_response(),
        LogHealth::Failed(reason) => {
            tracing::warn!(%reason, "not ready: log failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "log": "failed", "reason": "a log write or fsync failed; restart to recover"})))
                .into_response()
        }
        LogHealth::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "log": "closed"})),
        )
            .into_response(),
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics", summary = "Prometheus metrics", responses((status = 200, description = "Prometheus text format", body = String), Errors), security(()))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::update_gauges(&state);
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
#[utoipa::path(get, path = "/stats", tag = "ops", operation_id = "stats", summary = "Ingest counters of the tenant and the log position", responses((status = 200, description = "Counters", body = Object), Errors))]
pub(crate) async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let c = state.services.stats.get(&p.tenant_id).snapshot();
    Ok(Json(json!({
        "tenant_id": p.tenant_id,
        "since_start": c,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "log": {"start_offset": state.log.start_offset(), "end_offset": state.log.end_offset(), "queued_bytes": state.log.queued_bytes()},
        "store": state.store.stats(),
    }))
    .into_response())
}

/// How far each log consumer is behind the end of the log.
#[utoipa::path(get, path = "/lag", tag = "ops", operation_id = "lag", summary = "How far each log consumer is behind", responses((status = 200, description = "Per consumer: offset and lag", body = Object), Errors))]
pub(crate) async fn lag(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    caller.require(Scope::Read)?;
    let end = state.log.end_offset();
    let consumers: Vec<_> = state
        .log
        .consumers()
        .into_iter()
        .map(|c| json!({"name": c.name, "next_offset": c.next_offset, "lag": end.saturating_sub(c.next_offset)}))
        .collect();
    let store = state.store.stats();
    Ok(Json(json!({
        "end_offset": end,
        "consumers": consumers,
        // Queries see everything below `applied_offset`; the committed offset above moves
        // only when buffers are persisted.
        "store": {
            "applied_offset": store.applied_offset,
            "persisted_offset": store.persisted_offset,
            "lag": end.saturating_sub(store.applied_offset),
        },
        // Rollups reflect everything below `applied_offset`.
        "stream": {
            "applied_offset": state.stream.applied_offset(),
            "lag": end.saturating_sub(state.stream.applied_offset()),
        },
    }))
    .into_response())
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
