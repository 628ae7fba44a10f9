//! Alert rules and alerts of the caller's tenant (reads: `read` scope; changes: `write`).
//!
//! - `GET /api/v1/rules`, `POST /api/v1/rules`, `GET|PUT|PATCH|DELETE /api/v1/rules/{id}`:
//!   rules as [`eddy_stream::alerts`] describes them. `PATCH` is a JSON merge patch over the
//!   rule's fields (`null` removes a field, e.g. when switching `kind`).
//! - `GET /api/v1/alerts?status=&device_id=&metric=&rule_id=&severity=&limit=`: newest first;
//!   `GET /api/v1/alerts/{id}`; `POST /api/v1/alerts/{id}/acknowledge|resolve` with an optional
//!   body `{"note": "…"}`.
//!
//! Every change is appended to the log (durable before the answer) and applied by the stream
//! processor in log order, so it survives a crash and replays exactly; the answer waits (up to
//! 5 s) until the processor has applied it and shows the resulting state.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eddy_model::{AlertAction, Entry, EventError, LogEntry, RuleChange, codec};
use eddy_stream::alerts::{MAX_RULES, Severity, Status};
use eddy_stream::{Rule, RuleSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::openapi::{ErrorBody, Errors};
use crate::routes::parse_json;
use crate::routes::query::unknown;
use crate::state::AppState;
use crate::{Error, Result};
use eddy_service::Error as Domain;
use eddy_service::auth::Scope;

const APPLY_WAIT: Duration = Duration::from_secs(5);

fn invalid_rule(e: eddy_stream::alerts::RuleError) -> Error {
    Domain::rejected(
        format!("invalid rule: {e}"),
        vec![EventError {
            index: 0,
            field: e.field.to_string(),
            reason: e.reason,
        }],
    )
    .into()
}

/// Appends `entry` durably and waits until the stream processor has applied it.
async fn append_and_apply(state: &AppState, entry: Entry) -> Result<()> {
    let bytes = codec::encode_entry(&LogEntry { entry: Some(entry) });
    let range = state.log.append(vec![bytes.into()])?.durable().await?;
    if !state.stream.wait_applied(range.end, APPLY_WAIT).await {
        return Err(Domain::Unavailable {
            message: "the change is stored but the stream processor has not applied it yet; \
                      it will take effect shortly"
                .into(),
            retry_after_secs: 1,
        }
        .into());
    }
    Ok(())
}

fn rule_json(state: &AppState, tenant: &str, id: &str) -> Result<Value> {
    state
        .stream
        .read_alerts(tenant, |a| a.rule(id).map(Rule::to_json))?
        .ok_or_else(|| Domain::NotFound(format!("no rule `{id}`")).into())
}

fn check_rule_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid_rule(eddy_stream::alerts::RuleError {
            field: "id",
            reason: "1 to 64 letters, digits, `-` or `_`".into(),
        }))
    }
}

/// Validates and stores `spec` as rule `id`.
async fn store_rule(
    state: &AppState,
    tenant: &str,
    id: &str,
    spec: RuleSpec,
    created_at: Option<i64>,
) -> Result<Value> {
    let now = state.clock.now_ns();
    let rule = spec
        .validate(id, created_at.unwrap_or(now), now)
        .map_err(invalid_rule)?;
    let json = serde_json::to_string(&rule).map_err(|e| Domain::Internal(e.to_string()))?;
    append_and_apply(
        state,
        Entry::RuleChange(RuleChange {
            tenant: tenant.to_string(),
            rule_id: id.to_string(),
            rule_json: Some(json),
            at: now,
        }),
    )
    .await?;
    rule_json(state, tenant, id)
}

/// `GET /api/v1/rules`.
#[utoipa::path(get, path = "/api/v1/rules", tag = "alerts", operation_id = "list_rules", summary = "Rules of the tenant", responses((status = 200, description = "`{\"data\": [rule]}`", body = Object), Errors))]
pub(crate) async fn list_rules(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let rules: Vec<Value> = state
        .stream
        .read_alerts(&p.tenant_id, |a| a.rules().map(Rule::to_json).collect())?;
    Ok(Json(json!({"rules": rules})).into_response())
}

/// `POST /api/v1/rules`: the body is a rule with an optional `id` (generated when absent).
#[utoipa::path(post, path = "/api/v1/rules", tag = "alerts", operation_id = "create_rule", summary = "Create a rule", request_body(content = Object, description = "JSON body"), responses((status = 201, description = "The rule", body = Object), (status = 409, description = "A rule with this id exists", body = ErrorBody), Errors))]
pub(crate) async fn create_rule(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Write)?;
    let mut v: Value = parse_json(&body)?;
    let id = match v.as_object_mut().and_then(|o| o.remove("id")) {
        None | Some(Value::Null) => {
            format!("rule-{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
        }
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(invalid_rule(eddy_stream::alerts::RuleError {
                field: "id",
                reason: "must be a string".into(),
            }));
        }
    };
    check_rule_id(&id)?;
    let spec: RuleSpec = serde_json::from_value(v)
        .map_err(|e| Domain::invalid("invalid_body", format!("invalid rule: {e}")))?;
    let (exists, count) = state
        .stream
        .read_alerts(&p.tenant_id, |a| (a.rule(&id).is_some(), a.rules().count()))?;
    if exists {
        return Err(Domain::Conflict(format!(
            "rule `{id}` exists; PUT or PATCH /api/v1/rules/{id} changes it"
        ))
        .into());
    }
    if count >= MAX_RULES {
        return Err(
            Domain::Conflict(format!("a tenant may have at most {MAX_RULES} rules")).into(),
        );
    }
    let rule = store_rule(&state, &p.tenant_id, &id, spec, None).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

/// `GET /api/v1/rules/{id}`.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "get_rule", summary = "One rule", params(("id" = String, Path, description = "Rule id")), responses((status = 200, description = "The rule", body = Object), (status = 404, description = "No such rule", body = ErrorBody), Errors))]
pub(crate) async fn get_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    Ok(Json(rule_json(&state, &p.tenant_id, &id)?).into_response())
}

/// `PUT /api/v1/rules/{id}`: creates or replaces the rule.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "put_rule", summary = "Create or replace a rule", params(("id" = String, Path, description = "Rule id")), request_body(content = Object, description = "JSON body"), responses((status = 200, description = "Replaced", body = Object), (status = 201, description = "Created", body = Object), Errors))]
pub(crate) async fn put_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Write)?;
    check_rule_id(&id)?;
    let spec: RuleSpec = parse_json(&body)?;
    let (existing, count) = state.stream.read_alerts(&p.tenant_id, |a| {
        (a.rule(&id).map(|r| r.created_at), a.rules().count())
    })?;
    if existing.is_none() && count >= MAX_RULES {
        return Err(
            Domain::Conflict(format!("a tenant may have at most {MAX_RULES} rules")).into(),
        );
    }
    let rule = store_rule(&state, &p.tenant_id, &id, spec, existing).await?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(rule)).into_response())
}

/// `PATCH /api/v1/rules/{id}`: a JSON merge patch (RFC 7386) over the rule's fields.
#[utoipa::path(patch, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "patch_rule", summary = "JSON merge patch of a rule", params(("id" = String, Path, description = "Rule id")), request_body(content = Object, description = "JSON body"), responses((status = 200, description = "The rule", body = Object), (status = 404, description = "No such rule", body = ErrorBody), Errors))]
pub(crate) async fn patch_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let p = caller.require(Scope::Write)?;
    let patch: Value = parse_json(&body)?;
    let Value::Object(patch) = patch else {
        return Err(Domain::invalid("invalid_body", "a merge patch is a JSON object").into());
    };
    let current = state
        .stream
        .read_alerts(&p.tenant_id, |a| a.rule(&id).cloned())?
        .ok_or_else(|| Domain::NotFound(format!("no rule `{id}`")))?;
    let mut merged =
        serde_json::to_value(current.to_spec()).map_err(|e| Domain::Internal(e.to_string()))?;
    if let Some(o) = merged.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                o.remove(&k);
            } else {
                o.insert(k, v);
            }
        }
    }
    let spec: RuleSpec = serde_json::from_value(merged)
        .map_err(|e| Domain::invalid("invalid_body", format!("invalid rule: {e}")))?;
    let rule = store_rule(&state, &p.tenant_id, &id, spec, Some(current.created_at)).await?;
    Ok(Json(rule).into_response())
}

/// `DELETE /api/v1/rules/{id}`: the rule's active alerts are resolved (`rule_deleted`).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "alerts", operation_id = "delete_rule", summary = "Delete a rule (its active alerts resolve)", params(("id" = String, Path, description = "Rule id")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such rule", body = ErrorBody), Errors))]
pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = caller.require(Scope::Write)?;
    rule_json(&state, &p.tenant_id, &id)?;
    append_and_apply(
        &state,
        Entry::RuleChange(RuleChange {
            tenant: p.tenant_id.clone(),
            rule_id: id,
            rule_json: None,
            at: state.clock.now_ns(),
        }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/alerts`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "list_alerts", summary = "Alerts, newest first", params(("status" = Option<String>, Query, description = "open, acknowledged or resolved"), ("device_id" = Option<String>, Query, description = "Device"), ("metric" = Option<String>, Query, description = "Metric"), ("rule_id" = Option<String>, Query, description = "Rule"), ("severity" = Option<String>, Query, description = "Severity"), ("limit" = Option<usize>, Query, description = "At most this many (default 100)")), responses((status = 200, description = "`{\"data\": [alert]}`", body = Object), Errors))]
pub(crate) async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    let bad = |m: String| Domain::invalid("invalid_parameter", m);
    let (mut status, mut device, mut metric, mut rule, mut severity) =
        (None, None, None, None, None);
    let mut limit = 100usize;
    for (k, v) in &pairs {
        match k.as_str() {
            "status" => {
                status = Some(Status::parse(v).ok_or_else(|| {
                    bad(format!(
                        "`status` `{v}`: use open, acknowledged or resolved"
                    ))
                })?)
            }
            "device_id" | "sensor_id" => device = Some(v.as_str()),
            "metric" => metric = Some(v.as_str()),
            "rule_id" => rule = Some(v.as_str()),
            "severity" => {
                severity = Some(Severity::parse(v).ok_or_else(|| {
                    bad(format!("`severity` `{v}`: use info, warning or critical"))
                })?)
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| bad(format!("`limit` `{v}`: 1 to 10000")))?
            }
            other => {
                return Err(unknown(
                    other,
                    "status, device_id, metric, rule_id, severity, limit",
                ));
            }
        }
    }
    let (alerts, total, suppressed) = state.stream.read_alerts(&p.tenant_id, |a| {
        let matching = a.alerts().filter(|al| {
            status.is_none_or(|s| al.status == s)
                && device.is_none_or(|d| al.device_id == d)
                && metric.is_none_or(|m| al.metric == m)
                && rule.is_none_or(|r| al.rule_id == r)
                && severity.is_none_or(|s| al.severity == s)
        });
        let mut total = 0usize;
        let mut out = Vec::new();
        for al in matching {
            total += 1;
            if out.len() < limit {
                out.push(al.to_json());
            }
        }
        (out, total, a.suppressed)
    })?;
    Ok(Json(json!({"alerts": alerts, "total": total, "suppressed": suppressed})).into_response())
}

/// `GET /api/v1/alerts/{id}`.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", operation_id = "get_alert", summary = "One alert", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "The alert", body = Object), (status = 404, description = "No such alert", body = ErrorBody), Errors))]
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let p = caller.require(Scope::Read)?;
    Ok(Json(alert_json(&state, &p.tenant_id, &id)?).into_response())
}

fn alert_json(state: &AppState, tenant: &str, id: &str) -> Result<Value> {
    state
        .stream
        .read_alerts(tenant, |a| a.alert(id).map(eddy_stream::Alert::to_json))?
        .ok_or_else(|| Domain::NotFound(format!("no alert `{id}`")).into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    note: Option<String>,
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    body: &[u8],
    action: &str,
) -> Result<Response> {
    let p = caller.require(Scope::Write)?;
    let req: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        parse_json(body)?
    };
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        return Err(Domain::invalid("invalid_body", "`note`: at most 1000 characters").into());
    }
    let status = state
        .stream
        .read_alerts(&p.tenant_id, |a| a.alert(&id).map(|al| al.status))?
        .ok_or_else(|| Domain::NotFound(format!("no alert `{id}`")))?;
    let target = if action == "acknowledge" {
        Status::Acknowledged
    } else {
        Status::Resolved
    };
    if status == target {
        // Already there: answering with the alert makes the request idempotent.
        return Ok(Json(alert_json(&state, &p.tenant_id, &id)?).into_response());
    }
    if status == Status::Resolved {
        return Err(Domain::Conflict(format!(
            "alert `{id}` is resolved; it cannot be acknowledged"
        ))
        .into());
    }
    append_and_apply(
        &state,
        Entry::AlertAction(AlertAction {
            tenant: p.tenant_id.clone(),
            alert_id: id.clone(),
            action: action.to_string(),
            at: state.clock.now_ns(),
            note: req.note,
        }),
    )
    .await?;
    Ok(Json(alert_json(&state, &p.tenant_id, &id)?).into_response())
}

/// `POST /api/v1/alerts/{id}/acknowledge`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", operation_id = "acknowledge", summary = "Acknowledge an alert", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "The alert", body = Object), (status = 404, description = "No such alert", body = ErrorBody), Errors))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    act(state, caller, id, &body, "acknowledge").await
}

/// `POST /api/v1/alerts/{id}/resolve`.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", operation_id = "resolve", summary = "Resolve an alert", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "The alert", body = Object), (status = 404, description = "No such alert", body = ErrorBody), Errors))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    act(state, caller, id, &body, "resolve").await
}
