//! Resolving the caller from `X-API-Key` or `Authorization: Bearer`, and scope checks.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::catalog::{Principal, Scope};
use crate::state::AppState;
use crate::{Error, Result};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Fails with 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Principal> {
        if self.0.scopes.contains(&scope) {
            Ok(&self.0)
        } else {
            let name = match scope {
                Scope::Admin => "admin",
                Scope::Read => "read",
                Scope::Write => "write",
            };
            Err(Error::Forbidden(format!(
                "this key lacks the `{name}` scope"
            )))
        }
    }
}

/// The secret in `X-API-Key` or `Authorization: Bearer`, if any.
pub(crate) fn presented_secret(headers: &axum::http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let secret = presented_secret(&parts.headers)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized(
                    "missing API key: send `X-API-Key: <key>` or `Authorization: Bearer <key>`"
                        .into(),
                )
            })?;
        Caller::authenticate(state, secret)
    }
}

impl Caller {
    /// The caller presenting `secret`.
    pub(crate) fn authenticate(state: &AppState, secret: &str) -> Result<Self> {
        state
            .auth
            .authenticate(secret)
            .map(Caller)
            .ok_or_else(|| Error::Unauthorized("invalid or revoked API key".into()))
    }
}
