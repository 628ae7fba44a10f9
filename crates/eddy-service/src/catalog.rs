//! The catalog seam: tenants and their keys. [`crate::file_catalog::FileCatalog`] keeps them in
//! a JSON file in the data dir; a PostgreSQL catalog can implement the same trait.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::auth::{Authenticator, Scope};

/// Id of the tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// Ingest quota in events per second; `None` = the server default, `Some(0)` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_sec: Option<u32>,
    /// Retention in seconds; `None` = the server default, `Some(0)` = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// Where alert transitions are POSTed (http or https), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl Tenant {
    /// The tenant's retention in nanoseconds, or `default_ns` when it has none of its own
    /// (0 = forever).
    pub fn retention_ns(&self, default_ns: i64) -> i64 {
        self.retention_secs.map_or(default_ns, secs_to_ns)
    }
}

/// Seconds as nanoseconds, saturating (the one conversion of stored retention).
pub fn secs_to_ns(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
}

/// An API key as stored: its secret only as a hash. Never answered to clients as is: answers
/// carry a [`crate::admin::KeyView`], which has no hash field at all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// First characters of the secret, to recognise a key in listings.
    pub prefix: String,
    pub created_at: String,
    /// Hex SHA-256 of the secret.
    pub hash: String,
}

/// A key just created, with its secret (shown only in this answer).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Tenants and keys, durable. Every method is one atomic change or one consistent read.
pub trait Catalog: Authenticator {
    /// All tenants.
    fn tenants(&self) -> Result<Vec<Tenant>>;
    /// One tenant by id ([`crate::Error::NotFound`] if none).
    fn tenant(&self, id: &str) -> Result<Tenant>;
    /// Creates a tenant ([`crate::Error::Conflict`] if the name is taken).
    fn create_tenant(
        &self,
        name: &str,
        events_per_sec: Option<u32>,
        retention_secs: Option<u64>,
    ) -> Result<Tenant>;
    /// Changes a tenant: `None` keeps a field, `Some(None)` resets it to the server default.
    fn update_tenant(
        &self,
        id: &str,
        events_per_sec: Option<Option<u32>>,
        retention_secs: Option<Option<u64>>,
        webhook_url: Option<Option<String>>,
    ) -> Result<Tenant>;
    /// Removes a tenant and its keys.
    fn delete_tenant(&self, id: &str) -> Result<()>;
    /// Creates a key with a new secret.
    fn create_key(
        &self,
        tenant_id: &str,
        name: &str,
        scopes: BTreeSet<Scope>,
    ) -> Result<CreatedKey>;
    /// The keys of a tenant.
    fn keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>>;
    /// Revokes (deletes) a key of a tenant.
    fn revoke_key(&self, tenant_id: &str, key_id: &str) -> Result<()>;
}
