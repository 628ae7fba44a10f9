//! Admin API (admin scope): tenants and their keys. `whoami` is open to any valid key. Each
//! handler parses, calls `eddy_service::admin::AdminService`, and encodes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eddy_service::admin::{
    CreateKey, CreateTenant, CreatedKeyView, KeyView, TenantView, UpdateTenant, Whoami,
};

use eddy_service::auth::Scope;

use crate::Result;
use crate::auth::Caller;
use crate::openapi::{ErrorBody, Errors};
use crate::routes::SmallBody;
use crate::routes::{ListOf, list, parse_json};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/tenants", tag = "admin", operation_id = "create_tenant", summary = "Create a tenant", request_body(content = CreateTenant, description = "The new tenant"), responses((status = 201, description = "The tenant", body = TenantView), (status = 409, description = "A tenant of that name exists", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: CreateTenant = parse_json(&body)?;
    let t = state.services.admin.create_tenant(&caller.0, req)?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "admin", operation_id = "list_tenants", summary = "All tenants", responses((status = 200, description = "Every tenant", body = ListOf<TenantView>), Errors))]
pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response> {
    Ok(list(state.services.admin.list_tenants(&caller.0)?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "get_tenant", summary = "One tenant", params(("id" = String, Path, description = "Tenant id")), responses((status = 200, description = "The tenant", body = TenantView), (status = 404, description = "No such tenant", body = ErrorBody), Errors))]
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(Json(state.services.admin.get_tenant(&caller.0, &id)?).into_response())
}

#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "update_tenant", summary = "Change a tenant's quota, retention or webhook", params(("id" = String, Path, description = "Tenant id")), request_body(content = UpdateTenant, description = "Fields to change; `null` resets one to the server default"), responses((status = 200, description = "The tenant", body = TenantView), (status = 404, description = "No such tenant", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: UpdateTenant = parse_json(&body)?;
    Ok(Json(state.services.admin.update_tenant(&caller.0, &id, req)?).into_response())
}

/// Deleting a tenant first appends a tombstone to the log (consumers drop everything of the
/// tenant before it), then removes the tenant and its keys from the catalog.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "admin", operation_id = "delete_tenant", summary = "Delete a tenant and all its data", params(("id" = String, Path, description = "Tenant id")), responses((status = 204, description = "Deleted"), (status = 404, description = "No such tenant", body = ErrorBody), (status = 409, description = "The default tenant (it holds the admin key) cannot be deleted", body = ErrorBody), Errors))]
pub(crate) async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    state.services.admin.delete_tenant(&caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/v1/tenants/{id}/keys", tag = "admin", operation_id = "create_key", summary = "Create a key (shown once)", params(("id" = String, Path, description = "Tenant id")), request_body(content = CreateKey, description = "The new key"), responses((status = 201, description = "The key with its secret, shown only here", body = CreatedKeyView), (status = 404, description = "No such tenant", body = ErrorBody), (status = 413, description = "Body over 2 MiB", body = ErrorBody), Errors))]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    SmallBody(body): SmallBody,
) -> Result<Response> {
    caller.require(Scope::Admin)?;
    let req: CreateKey = parse_json(&body)?;
    let created = state.services.admin.create_key(&caller.0, &id, req)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}/keys", tag = "admin", operation_id = "list_keys", summary = "Keys of a tenant (never the secrets)", params(("id" = String, Path, description = "Tenant id")), responses((status = 200, description = "The tenant's keys", body = ListOf<KeyView>), (status = 404, description = "No such tenant", body = ErrorBody), Errors))]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(list(state.services.admin.list_keys(&caller.0, &id)?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}/keys/{key_id}", tag = "admin", operation_id = "revoke_key", summary = "Revoke a key", params(("id" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")), responses((status = 204, description = "Revoked"), (status = 404, description = "No such key", body = ErrorBody), (status = 409, description = "The key presented is the one to revoke (a key cannot revoke itself)", body = ErrorBody), Errors))]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Response> {
    state.services.admin.revoke_key(&caller.0, &id, &key_id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The tenant and scopes of the presented key.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "admin", operation_id = "whoami", summary = "Tenant and scopes of the presented key", responses((status = 200, description = "The key's tenant and scopes", body = Whoami), Errors))]
pub(crate) async fn whoami(State(state): State<AppState>, caller: Caller) -> Json<Whoami> {
    Json(state.services.admin.whoami(&caller.0))
}
