//! Admin API (admin scope): tenants and their keys. `whoami` is open to any valid key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::catalog::{Scope, Tenant};
use crate::openapi::{ErrorBody, Errors};
use crate::routes::parse_json;
use crate::state::AppState;
use crate::{Error, Result};

fn parse_retention(s: Option<&str>) -> Result<Option<u64>> {
    s.map(|s| {
        if s.trim() == "0" {
            return Ok(0);
        }
        humantime::parse_duration(s)
            .map(|d| d.as_secs())
            .map_err(|e| {
                Error::bad_request(
                    "invalid_retention",
                    format!("`retention`: {e} (e.g. \"30d\", \"0\" for forever)"),
                )
            })
    })
    .transpose()
}

fn tenant_json(t: &Tenant) -> serde_json::Value {
    let mut v = json!(t);
    if let Some(r) = t.retention_secs {
        let ns = i64::try_from(r)
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000);
        v["retention"] = json!(eddy_model::time::human_duration_ns(ns));
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    events_per_sec: Option<u32>,
    retention: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "admin", operation_id = "create_tenant", summary = "Create a tenant", request_body(content = Object, description = "JSON body"), responses((status = 201, description = "The tenant", body = Object), (status = 409, description = "Exists", body = ErrorBody), Errors))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: CreateTenant = parse_json(&body)?;
    let t = state.catalog.create_tenant(
        &req.name,
        req.events_per_sec,
        parse_retention(req.retention.as_deref())?,
    )?;
    tracing::info!(tenant = %t.id, name = %t.name, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant_json(&t))).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "admin", operation_id = "list_tenants", summary = "All tenants", responses((status = 200, description = "`{\"data\": [tenant]}`", body = Object), Errors))]
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let data: Vec<_> = state.catalog.tenants()?.iter().map(tenant_json).collect();
    Ok(Json(json!({"data": data})).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "get_tenant", summary = "One tenant", params(("id" = String, Path, description = "Tenant id")), responses((status = 200, description = "The tenant", body = Object), (status = 404, description = "No such tenant", body = ErrorBody), Errors))]
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    Ok(Json(tenant_json(&state.catalog.tenant(&id)?)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    #[serde(default, with = "double_option")]
    events_per_sec: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    retention: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    webhook_url: Option<Option<String>>,
}

/// `absent` → None, `null` → Some(None), value → Some(Some(v)).
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "update_tenant", summary = "Change a tenant's quota, retention or webhook", params(("id" = String, Path, description = "Tenant id")), request_body(content = Object, description = "JSON body"), responses((status = 200, description = "The tenant", body = Object), Errors))]
pub(crate) async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: UpdateTenant = parse_json(&body)?;
    let retention = match req.retention {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(parse_retention(Some(&s))?),
    };
    let webhook = match req.webhook_url {
        Some(Some(u)) if u.is_empty() => Some(None),
        Some(Some(u)) => Some(Some(crate::notify::check_url(&u)?)),
        other => other,
    };
    let t = state
        .catalog
        .update_tenant(&id, req.events_per_sec, retention, webhook)?;
    Ok(Json(tenant_json(&t)).into_response())
}

/// Deleting a tenant first appends a tombstone to the log (consumers drop everything of the
/// tenant before it), then removes the tenant and its keys from the catalog.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "delete_tenant", summary = "Delete a tenant and all its data", params(("id" = String, Path, description = "Tenant id")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such tenant", body = ErrorBody), Errors))]
pub(crate) async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    state.catalog.tenant(&id)?;
    if id == crate::catalog::DEFAULT_TENANT {
        return Err(Error::Conflict(
            "the default tenant holds the admin key and cannot be deleted".into(),
        ));
    }
    let entry = eddy_model::LogEntry {
        entry: Some(eddy_model::Entry::TenantDeleted(
            eddy_model::TenantDeleted {
                tenant: id.clone(),
                deleted_at: state.clock.now_ns(),
            },
        )),
    };
    state
        .log
        .append(vec![eddy_model::codec::encode_entry(&entry).into()])?
        .durable()
        .await?;
    state.catalog.delete_tenant(&id)?;
    state.dedup.drop_tenant(&id);
    state.quotas.drop_tenant(&id);
    state.stats.drop_tenant(&id);
    tracing::info!(tenant = %id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    name: String,
    scopes: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{id}/keys", tag = "admin", operation_id = "create_key", summary = "Create a key (shown once)", params(("id" = String, Path, description = "Tenant id")), request_body(content = Object, description = "JSON body"), responses((status = 201, description = "The key, shown once", body = Object), Errors))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: CreateKey = parse_json(&body)?;
    let scopes = Scope::parse_set(&req.scopes)?;
    let created = state.catalog.create_key(&id, &req.name, scopes)?;
    tracing::info!(tenant = %id, key = %created.key.id, "key created");
    let mut v = json!(created);
    if let Some(o) = v.as_object_mut() {
        o.remove("hash");
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}/keys", tag = "admin", operation_id = "list_keys", summary = "Keys of a tenant (never the secrets)", params(("id" = String, Path, description = "Tenant id")), responses((status = 200, description = "`{\"data\": [key]}`", body = Object), Errors))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let data: Vec<_> = state
        .catalog
        .keys(&id)?
        .into_iter()
        .map(|k| {
            let mut v = json!(k);
            if let Some(o) = v.as_object_mut() {
                o.remove("hash");
            }
            v
        })
        .collect();
    Ok(Json(json!({"data": data})).into_response())
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}/keys/{key_id}", tag = "admin", operation_id = "revoke_key", summary = "Revoke a key", params(("id" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")), responses((status = 204, description = "Revoked"), (status = 404, description = "No such key", body = ErrorBody), Errors))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    state.catalog.revoke_key(&id, &key_id)?;
    tracing::info!(tenant = %id, key = %key_id, "key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The tenant and scopes of the presented key.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "admin", operation_id = "whoami", summary = "Tenant and scopes of the presented key", responses((status = 200, description = "`{tenant_id, scopes, key_id}`", body = Object), Errors))]
pub(crate) async fn whoami(caller: Caller) -> Result<Response> {
    Ok(Json(json!({"tenant_id": caller.0.tenant_id, "key_id": caller.0.key_id, "scopes": caller.0.scopes})).into_response())
}
