//! Administration (the `admin` scope): tenants and their keys, and `whoami` for any key.
//!
//! Answers are views built from the stored records by type: a [`KeyView`] has no hash field,
//! so no answer can carry one. Deleting a tenant is a saga with a durable first step: a
//! tombstone in the log (every consumer drops the tenant's data before it), then the catalog,
//! then the in-memory state of the ingest path.

use std::collections::BTreeSet;
use std::sync::Arc;

use eddy_log::Log;
use eddy_model::{Clock, Entry, LogEntry, TenantDeleted, codec};
use serde::{Deserialize, Serialize};

use crate::auth::{Principal, Scope};
use crate::catalog::{ApiKey, Catalog, DEFAULT_TENANT, Tenant, secs_to_ns};
use crate::dedup::DedupIndex;
use crate::quota::Quotas;
use crate::stats::TenantStats;
use crate::{Error, Result};

/// A tenant as answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantView {
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Own ingest quota, events/s (absent: the server default; 0: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_sec: Option<u32>,
    /// `tn_…`, or `default`.
    pub id: String,
    pub name: String,
    /// Own retention, human-readable (`90d`; `0s` = forever; absent: the server default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Own retention in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// Where alert transitions are POSTed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            created_at: t.created_at,
            events_per_sec: t.events_per_sec,
            retention: t
                .retention_secs
                .map(|s| eddy_model::time::human_duration_ns(secs_to_ns(s))),
            retention_secs: t.retention_secs,
            id: t.id,
            name: t.name,
            webhook_url: t.webhook_url,
        }
    }
}

/// A key as answered: never its secret (but once, in [`CreatedKeyView`]), never its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyView {
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `key_…`.
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise the key.
    pub prefix: String,
    pub scopes: BTreeSet<Scope>,
    pub tenant_id: String,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            created_at: k.created_at,
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            tenant_id: k.tenant_id,
        }
    }
}

/// A key just created: its view and, only in this answer, the secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub view: KeyView,
    /// The secret: send it as `X-API-Key` or `Authorization: Bearer`. Shown only here.
    pub key: String,
}

/// The tenant and scopes of the presented key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    pub tenant_id: String,
    /// The tenant's name (`null` if it was deleted since the key was checked).
    pub tenant_name: Option<String>,
    pub key_id: String,
    pub scopes: BTreeSet<Scope>,
}

/// A new tenant.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 128 characters, unique.
    pub name: String,
    /// Ingest quota, events/s (0 = unlimited; absent = the server default).
    pub events_per_sec: Option<u32>,
    /// Retention such as `90d` or `12h` (`0` = forever; absent = the server default).
    pub retention: Option<String>,
}

/// Changes to a tenant: an absent field is kept, `null` resets it to the server default.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub events_per_sec: Option<Option<u32>>,
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub retention: Option<Option<String>>,
    /// An http or https URL; `""` or `null` removes it.
    #[serde(default, with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub webhook_url: Option<Option<String>>,
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

/// A new key.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// At most 128 characters (`unnamed` when empty).
    #[serde(default)]
    pub name: String,
    /// `admin` (default tenant only), `read`, `write`, `read_write`.
    pub scopes: Vec<String>,
}

/// Parses a retention such as `30d` (`0` = forever) into seconds.
pub fn parse_retention(s: &str) -> Result<u64> {
    if s.trim() == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s.trim())
        .map(|d| d.as_secs())
        .map_err(|e| {
            Error::invalid(
                "invalid_retention",
                format!("`retention` `{s}` is not a duration ({e}); use e.g. \"30d\", \"12h\", or \"0\" for forever"),
            )
        })
}

/// Checks a webhook URL: http or https with a host. Returns it normalised.
pub fn check_webhook_url(url: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(
            "invalid_webhook_url",
            format!("`webhook_url` `{url}`: {why}"),
        )
    };
    let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("use an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("the URL needs a host"));
    }
    Ok(u.to_string())
}

/// The admin service.
#[derive(Debug, Clone)]
pub struct AdminService {
    catalog: Arc<dyn Catalog>,
    log: Arc<dyn Log>,
    dedup: Arc<dyn DedupIndex>,
    quotas: Arc<Quotas>,
    stats: Arc<TenantStats>,
    clock: Arc<dyn Clock>,
}

impl AdminService {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        log: Arc<dyn Log>,
        dedup: Arc<dyn DedupIndex>,
        quotas: Arc<Quotas>,
        stats: Arc<TenantStats>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            log,
            dedup,
            quotas,
            stats,
            clock,
        }
    }

    pub fn create_tenant(&self, caller: &Principal, req: CreateTenant) -> Result<TenantView> {
        caller.require(Scope::Admin)?;
        let retention = req.retention.as_deref().map(parse_retention).transpose()?;
        let t = self
            .catalog
            .create_tenant(&req.name, req.events_per_sec, retention)?;
        tracing::info!(tenant = %t.id, name = %t.name, "tenant created");
        Ok(t.into())
    }

    pub fn list_tenants(&self, caller: &Principal) -> Result<Vec<TenantView>> {
        caller.require(Scope::Admin)?;
        Ok(self
            .catalog
            .tenants()?
            .into_iter()
            .map(TenantView::from)
            .collect())
    }

    pub fn get_tenant(&self, caller: &Principal, id: &str) -> Result<TenantView> {
        caller.require(Scope::Admin)?;
        Ok(self.catalog.tenant(id)?.into())
    }

    pub fn update_tenant(
        &self,
        caller: &Principal,
        id: &str,
        req: UpdateTenant,
    ) -> Result<TenantView> {
        caller.require(Scope::Admin)?;
        let retention = match req.retention {
            None => None,
            Some(None) => Some(None),
            Some(Some(s)) => Some(Some(parse_retention(&s)?)),
        };
        let webhook = match req.webhook_url {
            Some(Some(u)) if u.is_empty() => Some(None),
            Some(Some(u)) => Some(Some(check_webhook_url(&u)?)),
            other => other,
        };
        Ok(self
            .catalog
            .update_tenant(id, req.events_per_sec, retention, webhook)?
            .into())
    }

    /// Deletes a tenant, its keys and its data. The tombstone is durable in the log before
    /// the catalog forgets the tenant, so a crash in between leaves a tenant whose data
    /// consumers have dropped and whose deletion can simply be repeated.
    pub async fn delete_tenant(&self, caller: &Principal, id: &str) -> Result<()> {
        caller.require(Scope::Admin)?;
        self.catalog.tenant(id)?;
        if id == DEFAULT_TENANT {
            return Err(Error::Conflict(
                "the default tenant holds the admin key and cannot be deleted".into(),
            ));
        }
        let entry = LogEntry {
            entry: Some(Entry::TenantDeleted(TenantDeleted {
                tenant: id.to_string(),
                deleted_at: self.clock.now_ns(),
            })),
        };
        self.log
            .append(vec![codec::encode_entry(&entry).into()])?
            .durable()
            .await?;
        self.catalog.delete_tenant(id)?;
        self.dedup.drop_tenant(id);
        self.quotas.drop_tenant(id);
        self.stats.drop_tenant(id);
        tracing::info!(tenant = %id, "tenant deleted");
        Ok(())
    }

    pub fn create_key(
        &self,
        caller: &Principal,
        tenant_id: &str,
        req: CreateKey,
    ) -> Result<CreatedKeyView> {
        caller.require(Scope::Admin)?;
        let scopes = Scope::parse_set(&req.scopes)?;
        let created = self.catalog.create_key(tenant_id, &req.name, scopes)?;
        tracing::info!(tenant = %tenant_id, key = %created.key.id, "key created");
        Ok(CreatedKeyView {
            view: created.key.into(),
            key: created.secret,
        })
    }

    pub fn list_keys(&self, caller: &Principal, tenant_id: &str) -> Result<Vec<KeyView>> {
        caller.require(Scope::Admin)?;
        Ok(self
            .catalog
            .keys(tenant_id)?
            .into_iter()
            .map(KeyView::from)
            .collect())
    }

    /// Revokes a key; not the caller's own, which would lock its holder out (an admin's
    /// only key, typically): another admin key revokes it.
    pub fn revoke_key(&self, caller: &Principal, tenant_id: &str, key_id: &str) -> Result<()> {
        caller.require(Scope::Admin)?;
        if caller.tenant_id == tenant_id && caller.key_id == key_id {
            return Err(Error::Conflict(
                "a key cannot revoke itself; revoke it with another admin key".into(),
            ));
        }
        self.catalog.revoke_key(tenant_id, key_id)?;
        tracing::info!(tenant = %tenant_id, key = %key_id, "key revoked");
        Ok(())
    }

    /// Where `tenant`'s alert transitions go, if anywhere. For the server's own webhook
    /// notifier (no caller: the processor's transitions name their tenant).
    pub fn webhook_url(&self, tenant: &str) -> Option<String> {
        self.catalog.tenant(tenant).ok().and_then(|t| t.webhook_url)
    }

    /// Open to any valid key.
    pub fn whoami(&self, caller: &Principal) -> Whoami {
        Whoami {
            tenant_id: caller.tenant_id.clone(),
            tenant_name: self.catalog.tenant(&caller.tenant_id).ok().map(|t| t.name),
            key_id: caller.key_id.clone(),
            scopes: caller.scopes.clone(),
        }
    }
}
