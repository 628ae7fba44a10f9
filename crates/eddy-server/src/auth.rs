//! The caller of a request: the secret from `X-API-Key` or `Authorization: Bearer`, resolved
//! by the service layer's authenticator (scope checks are the services' own).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use eddy_service::auth::{Principal, Scope, authenticate};

use crate::state::AppState;
use crate::{Error, Result};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Fails with 403 unless the key has `scope` (for routes not yet behind a service).
    pub fn require(&self, scope: Scope) -> Result<&Principal> {
        Ok(self.0.require(scope)?)
    }
}

/// An authenticated caller whose key has the `read` scope: the read routes take it, so a
/// caller without the scope gets 403 before any parameter is looked at (401 → 403 → 400, the
/// same precedence on every route). The services check the scope again.
#[derive(Debug, Clone)]
pub struct Reader(pub Principal);

impl FromRequestParts<AppState> for Reader {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let caller = Caller::authenticate(state, presented_secret(&parts.headers))?;
        caller.require(Scope::Read)?;
        Ok(Reader(caller.0))
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
        Caller::authenticate(state, presented_secret(&parts.headers))
    }
}

impl Caller {
    /// The caller presenting `secret`.
    pub(crate) fn authenticate(state: &AppState, secret: Option<&str>) -> Result<Self> {
        if secret.is_none_or(|s| s.trim().is_empty()) {
            return Err(eddy_service::Error::Unauthenticated(
                "missing API key: send `X-API-Key: <key>` or `Authorization: Bearer <key>`".into(),
            )
            .into());
        }
        Ok(Caller(authenticate(state.services.auth.as_ref(), secret)?))
    }
}
