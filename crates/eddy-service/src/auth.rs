//! Who is calling and what they may do. Every service operation takes the caller's
//! [`Principal`] and checks its scope itself, so every protocol enforces the same rule; the
//! tenant of an operation is always the principal's, never one named in a request body.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Platform administration: tenants and keys.
    Admin,
    /// Queries and live feeds of the key's tenant.
    Read,
    /// Ingestion into the key's tenant.
    Write,
}

impl Scope {
    /// The scope's name as clients spell it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// Parses `admin`, `read`, `write` or `read_write` (which grants both).
    pub fn parse_set(names: &[String]) -> Result<BTreeSet<Scope>> {
        let mut out = BTreeSet::new();
        for n in names {
            match n.as_str() {
                "admin" => out.insert(Scope::Admin),
                "read" => out.insert(Scope::Read),
                "write" => out.insert(Scope::Write),
                "read_write" => {
                    out.insert(Scope::Read);
                    out.insert(Scope::Write)
                }
                other => {
                    return Err(Error::invalid(
                        "invalid_scope",
                        format!("unknown scope `{other}`; use admin, read, write or read_write"),
                    ));
                }
            };
        }
        if out.is_empty() {
            return Err(Error::invalid(
                "invalid_scope",
                "`scopes` must name at least one scope",
            ));
        }
        Ok(out)
    }
}

/// Who is calling: resolved from the key, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
}

impl Principal {
    /// Fails with [`Error::PermissionDenied`] unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Self> {
        if self.scopes.contains(&scope) {
            Ok(self)
        } else {
            Err(Error::PermissionDenied(format!(
                "this key lacks the `{}` scope",
                scope.name()
            )))
        }
    }
}

/// The auth seam: turns a presented secret into a [`Principal`].
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The principal of `secret`, or `None` when no live key matches.
    fn authenticate(&self, secret: &str) -> Option<Principal>;
}

/// The principal of a presented secret, or the error every protocol answers: a missing key
/// and an unknown one are told apart, so a client knows which to fix (front ends say how
/// their protocol carries the key).
pub fn authenticate(auth: &dyn Authenticator, secret: Option<&str>) -> Result<Principal> {
    let secret = secret
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Unauthenticated("missing API key".into()))?;
    auth.authenticate(secret)
        .ok_or_else(|| Error::Unauthenticated("invalid or revoked API key".into()))
}
