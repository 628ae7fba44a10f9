//! The caller of an RPC: the key from `x-api-key` or `authorization: Bearer …` metadata,
//! turned into a principal by the service layer's authenticator (the tenant is the key's,
//! never a request field). Scopes are checked by the services.

use eddy_service::Error as Domain;
use eddy_service::auth::{Authenticator, Principal, authenticate};
use tonic::metadata::MetadataMap;

/// The secret a request presents, if any.
fn presented(md: &MetadataMap) -> Option<&str> {
    if let Some(v) = md.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = md.get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The principal of a request's key.
pub(crate) fn principal(auth: &dyn Authenticator, md: &MetadataMap) -> Result<Principal, Domain> {
    let secret = presented(md);
    if secret.is_none_or(str::is_empty) {
        return Err(Domain::Unauthenticated(
            "missing API key: send `x-api-key: <key>` or `authorization: Bearer <key>` metadata"
                .into(),
        ));
    }
    authenticate(auth, secret)
}
