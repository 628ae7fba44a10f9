//! Alert rules and alerts of the caller's tenant (reads: `read` scope; changes: `write`).
//!
//! - `GET /api/v1/rules`, `POST /api/v1/rules`, `GET|PUT|PATCH|DELETE /api/v1/rules/{id}`:
//!   rules as `eddy_service::alerts` validates them. `PATCH` is a JSON merge patch over the
//!   rule's fields (`null` removes a field, e.g. when switching `kind`).
//! - `GET /api/v1/alerts?status=&device_id=&metric=&rule_id=&severity=&limit=`: newest first;
//!   `GET /api/v1/alerts/{id}`; `POST /api/v1/alerts/{id}/acknowledge|resolve` with an optional
//!   body `{"note": "…"}`.
//!
//! Every change is appended to the log (durable before the answer) and applied by the stream
//! processor in log order, so it survives a crash and replays exactly; the answer waits (up to
//! 5 s) until the processor has applied it and shows the resulting state.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eddy_service::Error as Domain;
use eddy_service::alerts::{
    AlertActionKind, AlertList, AlertQuery, AlertView, RuleSpec, RuleView, check_rule_id,
    invalid_rule,
};
use eddy_service::auth::Scope;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::auth::Caller;
use crate::openapi::{ErrorBody, Errors};
use crate::routes::SmallBody;
use crate::routes::params::unknown;
use crate::routes::parse_json;
use crate::state::AppState;

/// The rules listing: `data`, and `rules` with the same list for clients of the first release
/// (deprecated; removed in the next).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RuleList {
    data: Vec<RuleView>,
    /// Deprecated alias of `data`.
    rules: Vec<RuleView>,
}

/// The alerts listing with `alerts`, the deprecated alias of `data`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AlertListing {
    #[serde(flatten)]
    list: AlertList,
    /// Deprecated alias of `data`.
    alerts: Vec<AlertView>,
}

/// `GET /api/v1/rules`.
#[utoipa::path(get, path = "/api/v1/rules", tag = "alerts", operation_id = "list_rules", summary = "Rules of the tenant", responses((status = 200, description = "The rules (`rules`: deprecated alias of `data`)", body = RuleList), Errors))]
pub(crate) async fn list_rules(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    let data = state.services.alerts.list_rules(&caller.0)?;
    Ok(Json(RuleList {
        rules: data.clone(),
        data,
    })
    .into_response())
}

/// A rule with the id it should get (generated when absent).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: `create_rule` takes the id out, then reads a `RuleSpec`
pub(crate) struct RuleWithId {
    /// 1 to 64 letters, digits, `-` or `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: Option<String>,
    #[serde(flatten)]
    rule: RuleSpec,
}

/// `POST /api/v1/rules`: the body is a rule with an optional `id` (generated when absent).
#[utoipa::path(post, path = "/api/v1/rules", tag = "alerts", operation_id = "create_rule", summary = "Create a rule", request_body(content = RuleWithId, description = "A rule (see README, \"Rules\"), with an optional `id`"), responses((status = 201, description = "The rule", body = RuleView), (status = 409, description = "A rule with this id exists", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    // The scope and the id first, then the body, as before the service layer.
    caller.require(Scope::Write)?;
    let mut v: Value = parse_json(&body)?;
    let id = match v.as_object_mut().and_then(|o| o.remove("id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid_rule("id", "must be a string").into()),
    };
    if let Some(id) = &id {
        check_rule_id(id)?;
    }
    let spec: RuleSpec = serde_json::from_value(v)
        .map_err(|e| Domain::invalid("invalid_body", format!("invalid rule: {e}")))?;
    let rule = state
        .services
        .alerts
        .create_rule(&caller.0, id, spec)
        .await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `GET /api/v1/rules/{id}`.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "get_rule", summary = "One rule", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Rule id: 1 to 64 letters, digits, `-` or `_`")), responses((status = 200, description = "The rule", body = RuleView), (status = 404, description = "No such rule", body = ErrorBody), Errors))]
pub(crate) async fn get_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RuleView>> {
    Ok(Json(state.services.alerts.get_rule(&caller.0, &id)?))
}

/// `PUT /api/v1/rules/{id}`: creates or replaces the rule.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "put_rule", summary = "Create or replace a rule", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Rule id: 1 to 64 letters, digits, `-` or `_`")), request_body(content = RuleSpec, description = "A rule (see README, \"Rules\")"), responses((status = 200, description = "Replaced", body = RuleView), (status = 201, description = "Created", body = RuleView), (status = 409, description = "The tenant has its maximum of rules", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn put_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    caller.require(Scope::Write)?;
    check_rule_id(&id)?;
    let spec: RuleSpec = parse_json(&body)?;
    let (rule, created) = state.services.alerts.put_rule(&caller.0, &id, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rule)).into_response())
}

/// `PATCH /api/v1/rules/{id}`: a JSON merge patch (RFC 7386) over the rule's fields.
#[utoipa::path(patch, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "patch_rule", summary = "JSON merge patch of a rule", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Rule id: 1 to 64 letters, digits, `-` or `_`")), request_body(content((RuleSpec = "application/merge-patch+json"), (RuleSpec = "application/json")), description = "A JSON merge patch (RFC 7386) of the rule's fields: given fields replace, `null` removes"), responses((status = 200, description = "The rule", body = RuleView), (status = 404, description = "No such rule", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn patch_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Json<RuleView>> {
    caller.require(Scope::Write)?;
    let Value::Object(patch) = parse_json(&body)? else {
        return Err(Domain::invalid("invalid_body", "a merge patch is a JSON object").into());
    };
    Ok(Json(
        state
            .services
            .alerts
            .patch_rule(&caller.0, &id, patch)
            .await?,
    ))
}

/// `DELETE /api/v1/rules/{id}`: the rule's active alerts are resolved (`rule_deleted`).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "delete_rule", summary = "Delete a rule (its active alerts resolve)", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Rule id: 1 to 64 letters, digits, `-` or `_`")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such rule", body = ErrorBody), Errors))]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    state.services.alerts.delete_rule(&caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/alerts`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "list_alerts", summary = "Alerts, newest first", params(("status" = Option<String>, Query, pattern = "^(open|acknowledged|resolved)$", description = "`open`, `acknowledged` or `resolved`"), ("device_id" = Option<String>, Query, description = "Device"), ("metric" = Option<String>, Query, description = "Metric"), ("rule_id" = Option<String>, Query, description = "Rule"), ("severity" = Option<String>, Query, pattern = "^(info|warning|critical)$", description = "`info`, `warning` or `critical`"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "At most this many (default 100)")), responses((status = 200, description = "Alerts, newest first (`alerts`: deprecated alias of `data`)", body = AlertListing), Errors))]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<AlertListing>> {
    // 403 before any parameter is looked at (the service checks again).
    caller.require(Scope::Read)?;
    let mut q = AlertQuery::default();
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "status" => &mut q.status,
            "device_id" | "sensor_id" => &mut q.device_id,
            "metric" => &mut q.metric,
            "rule_id" => &mut q.rule_id,
            "severity" => &mut q.severity,
            "limit" => &mut q.limit,
            other => {
                return Err(unknown(
                    other,
                    "status, device_id, metric, rule_id, severity, limit",
                ));
            }
        };
        *slot = Some(v);
    }
    let list = state.services.alerts.list_alerts(&caller.0, q)?;
    Ok(Json(AlertListing {
        alerts: list.data.clone(),
        list,
    }))
}

/// `GET /api/v1/alerts/{id}`.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", operation_id = "get_alert", summary = "One alert", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "The alert", body = AlertView), (status = 404, description = "No such alert", body = ErrorBody), Errors))]
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>> {
    Ok(Json(state.services.alerts.get_alert(&caller.0, &id)?))
}

/// An optional note on an acknowledgement or resolution (the body may also be empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// At most 1000 characters.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    body: &[u8],
    action: AlertActionKind,
) -> Result<Json<AlertView>> {
    caller.require(Scope::Write)?;
    let req: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        parse_json(body)?
    };
    Ok(Json(
        state
            .services
            .alerts
            .act(&caller.0, &id, action, req.note)
            .await?,
    ))
}

/// `POST /api/v1/alerts/{id}/acknowledge`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", operation_id = "acknowledge", summary = "Acknowledge an alert", params(("id" = String, Path, description = "Alert id")), request_body(content = ActionBody, description = "Optional: `{\"note\": \"…\"}`"), responses((status = 200, description = "The alert", body = AlertView), (status = 404, description = "No such alert", body = ErrorBody), (status = 409, description = "The alert is resolved", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Json<AlertView>> {
    act(state, caller, id, &body, AlertActionKind::Acknowledge).await
}

/// `POST /api/v1/alerts/{id}/resolve`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", operation_id = "resolve", summary = "Resolve an alert", params(("id" = String, Path, description = "Alert id")), request_body(content = ActionBody, description = "Optional: `{\"note\": \"…\"}`"), responses((status = 200, description = "The alert", body = AlertView), (status = 404, description = "No such alert", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Json<AlertView>> {
    act(state, caller, id, &body, AlertActionKind::Resolve).await
}
