//! The file implementation of the [`Catalog`] seam: tenants and API keys in `catalog.json` in
//! the data dir.
//!
//! Every change is made on a copy, written to a temp file, fsynced, renamed over the old file
//! and the directory fsynced; only then does the in-memory state switch. A crash leaves either
//! the old or the new catalog, never a mix. Secrets are never stored: keys hold a SHA-256.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::auth::{Authenticator, Principal, Scope};
use crate::catalog::{ApiKey, Catalog, CreatedKey, DEFAULT_TENANT, Tenant};
use crate::keys;
use crate::{Error, Result};

/// Id of the key that `EDDY_ADMIN_KEY` presets.
pub const PRESET_ADMIN_KEY_ID: &str = "admin-preset";
const CATALOG_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    version: u32,
    tenants: BTreeMap<String, Tenant>,
    keys: BTreeMap<String, ApiKey>,
}

#[derive(Debug)]
struct Loaded {
    state: State,
    by_hash: HashMap<[u8; 32], String>,
}

impl Loaded {
    fn new(state: State) -> Self {
        let by_hash = state
            .keys
            .values()
            .filter_map(|k| decode_hex(&k.hash).map(|h| (h, k.id.clone())))
            .collect();
        Self { state, by_hash }
    }
}

/// Tenants and keys, durable in `catalog.json` in the data dir.
#[derive(Debug)]
pub struct FileCatalog {
    path: PathBuf,
    inner: RwLock<Loaded>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn new_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &u[..16])
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("catalog I/O on {}: {e}", path.display()))
}

fn poisoned() -> Error {
    Error::Internal("catalog lock poisoned".into())
}

impl FileCatalog {
    /// Opens the catalog in `data_dir`, creating the default tenant and an admin key on first
    /// start. Returns the catalog and, when a key was generated now, its secret.
    ///
    /// With `preset_admin` (from `EDDY_ADMIN_KEY`), that secret is made the admin key: on first
    /// start instead of a generated one, later by replacing the previous preset key.
    pub fn open(data_dir: &Path, preset_admin: Option<&str>) -> Result<(Self, Option<String>)> {
        let path = data_dir.join("catalog.json");
        let existing = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<State>(&bytes).map_err(|e| {
                Error::Internal(format!("catalog {} is not readable: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, e)),
        };
        let mut generated = None;
        let mut state = match existing {
            Some(s) => s,
            None => {
                let mut s = State {
                    version: CATALOG_VERSION,
                    ..Default::default()
                };
                s.tenants.insert(
                    DEFAULT_TENANT.into(),
                    Tenant {
                        id: DEFAULT_TENANT.into(),
                        name: DEFAULT_TENANT.into(),
                        created_at: now_rfc3339(),
                        events_per_sec: None,
                        retention_secs: None,
                        webhook_url: None,
                    },
                );
                if preset_admin.is_none() {
                    let secret = keys::generate_secret();
                    let key = admin_key_record("admin", &secret);
                    s.keys.insert(key.id.clone(), key);
                    generated = Some(secret);
                }
                s
            }
        };
        if let Some(secret) = preset_admin {
            let key = admin_key_record(PRESET_ADMIN_KEY_ID, secret);
            state.keys.insert(key.id.clone(), key);
        }
        write_state(&path, &state)?;
        if let Some(secret) = &generated {
            write_secret_file(&data_dir.join("admin.key"), secret)?;
        }
        Ok((
            Self {
                path,
                inner: RwLock::new(Loaded::new(state)),
            },
            generated,
        ))
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut guard = self.inner.write().map_err(|_| poisoned())?;
        let mut next = guard.state.clone();
        let out = f(&mut next)?;
        write_state(&self.path, &next)?;
        *guard = Loaded::new(next);
        Ok(out)
    }
}

impl Catalog for FileCatalog {
    /// All tenants.
    fn tenants(&self) -> Result<Vec<Tenant>> {
        Ok(self
            .inner
            .read()
            .map_err(|_| poisoned())?
            .state
            .tenants
            .values()
            .cloned()
            .collect())
    }

    /// One tenant.
    fn tenant(&self, id: &str) -> Result<Tenant> {
        self.inner
            .read()
            .map_err(|_| poisoned())?
            .state
            .tenants
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no tenant `{id}`")))
    }

    /// Creates a tenant.
    fn create_tenant(
        &self,
        name: &str,
        events_per_sec: Option<u32>,
        retention_secs: Option<u64>,
    ) -> Result<Tenant> {
        let name = name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(Error::invalid(
                "invalid_name",
                "`name` must be 1 to 128 characters",
            ));
        }
        self.mutate(|s| {
            if s.tenants.values().any(|t| t.name == name) {
                return Err(Error::Conflict(format!("a tenant named `{name}` exists")));
            }
            let t = Tenant {
                id: new_id("tn_"),
                name: name.into(),
                created_at: now_rfc3339(),
                events_per_sec,
                retention_secs,
                webhook_url: None,
            };
            s.tenants.insert(t.id.clone(), t.clone());
            Ok(t)
        })
    }

    /// Changes a tenant's quota or retention.
    fn update_tenant(
        &self,
        id: &str,
        events_per_sec: Option<Option<u32>>,
        retention_secs: Option<Option<u64>>,
        webhook_url: Option<Option<String>>,
    ) -> Result<Tenant> {
        self.mutate(|s| {
            let t = s
                .tenants
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(format!("no tenant `{id}`")))?;
            if let Some(q) = events_per_sec {
                t.events_per_sec = q;
            }
            if let Some(r) = retention_secs {
                t.retention_secs = r;
            }
            if let Some(w) = webhook_url {
                t.webhook_url = w;
            }
            Ok(t.clone())
        })
    }

    /// Deletes a tenant and its keys. The default tenant cannot be deleted.
    fn delete_tenant(&self, id: &str) -> Result<()> {
        if id == DEFAULT_TENANT {
            return Err(Error::Conflict(
                "the default tenant holds the admin key and cannot be deleted".into(),
            ));
        }
        self.mutate(|s| {
            s.tenants
                .remove(id)
                .ok_or_else(|| Error::NotFound(format!("no tenant `{id}`")))?;
            s.keys.retain(|_, k| k.tenant_id != id);
            Ok(())
        })
    }

    /// Creates a key for a tenant and returns it with its secret (shown only now).
    fn create_key(
        &self,
        tenant_id: &str,
        name: &str,
        scopes: BTreeSet<Scope>,
    ) -> Result<CreatedKey> {
        if scopes.contains(&Scope::Admin) && tenant_id != DEFAULT_TENANT {
            return Err(Error::invalid(
                "invalid_scope",
                "admin keys belong to the default tenant",
            ));
        }
        let name = name.trim();
        if name.len() > 128 {
            return Err(Error::invalid(
                "invalid_name",
                "`name` must be at most 128 characters",
            ));
        }
        let secret = keys::generate_secret();
        self.mutate(|s| {
            if !s.tenants.contains_key(tenant_id) {
                return Err(Error::NotFound(format!("no tenant `{tenant_id}`")));
            }
            let key = ApiKey {
                id: new_id("key_"),
                tenant_id: tenant_id.into(),
                name: if name.is_empty() {
                    "unnamed".into()
                } else {
                    name.into()
                },
                scopes,
                prefix: keys::display_prefix(&secret),
                created_at: now_rfc3339(),
                hash: hex(&keys::hash_secret(&secret)),
            };
            s.keys.insert(key.id.clone(), key.clone());
            Ok(CreatedKey {
                key,
                secret: secret.clone(),
            })
        })
    }

    /// The keys of a tenant (without secrets).
    fn keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
        let g = self.inner.read().map_err(|_| poisoned())?;
        if !g.state.tenants.contains_key(tenant_id) {
            return Err(Error::NotFound(format!("no tenant `{tenant_id}`")));
        }
        Ok(g.state
            .keys
            .values()
            .filter(|k| k.tenant_id == tenant_id)
            .cloned()
            .collect())
    }

    /// Revokes (deletes) a key of a tenant.
    fn revoke_key(&self, tenant_id: &str, key_id: &str) -> Result<()> {
        self.mutate(|s| match s.keys.get(key_id) {
            Some(k) if k.tenant_id == tenant_id => {
                s.keys.remove(key_id);
                Ok(())
            }
            _ => Err(Error::NotFound(format!(
                "no key `{key_id}` in tenant `{tenant_id}`"
            ))),
        })
    }
}

impl Authenticator for FileCatalog {
    fn authenticate(&self, secret: &str) -> Option<Principal> {
        // Generated keys are checked for form and checksum first: a typo costs no lookup.
        if secret.starts_with(keys::KEY_PREFIX)
            && secret.len() == 51
            && !keys::is_wellformed(secret)
        {
            return None;
        }
        let h = keys::hash_secret(secret);
        let g = self.inner.read().ok()?;
        let key_id = g.by_hash.get(&h)?;
        let key = g.state.keys.get(key_id)?;
        let stored = decode_hex(&key.hash)?;
        if !keys::hashes_equal(&stored, &h) || !g.state.tenants.contains_key(&key.tenant_id) {
            return None;
        }
        Some(Principal {
            tenant_id: key.tenant_id.clone(),
            key_id: key.id.clone(),
            scopes: key.scopes.clone(),
        })
    }
}

fn admin_key_record(id: &str, secret: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant_id: DEFAULT_TENANT.into(),
        name: "admin".into(),
        // The first admin key also reads and writes the default tenant, so the quick start
        // needs one key.
        scopes: [Scope::Admin, Scope::Read, Scope::Write]
            .into_iter()
            .collect(),
        prefix: keys::display_prefix(secret),
        created_at: now_rfc3339(),
        hash: hex(&keys::hash_secret(secret)),
    }
}

fn write_state(path: &Path, state: &State) -> Result<()> {
    let body = serde_json::to_vec_pretty(state).map_err(|e| Error::Internal(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&body)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    Ok(())
}

fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_admin_key_file_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (cat, secret) = FileCatalog::open(dir.path(), None).unwrap();
        let secret = secret.unwrap();
        let mode = std::fs::metadata(dir.path().join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let p = cat.authenticate(&secret).unwrap();
        assert_eq!(p.tenant_id, DEFAULT_TENANT);
        assert!(p.scopes.contains(&Scope::Admin) && p.scopes.contains(&Scope::Write));
        assert!(
            !std::fs::read_to_string(dir.path().join("catalog.json"))
                .unwrap()
                .contains(&secret)
        );
        let t = cat.create_tenant("acme", None, None).unwrap();
        let k = cat
            .create_key(
                &t.id,
                "ingest",
                Scope::parse_set(&["write".into()]).unwrap(),
            )
            .unwrap();
        drop(cat);
        let (cat, again) = FileCatalog::open(dir.path(), None).unwrap();
        assert!(again.is_none(), "no new key on restart");
        assert!(cat.authenticate(&secret).is_some());
        assert_eq!(cat.authenticate(&k.secret).unwrap().tenant_id, t.id);
        cat.revoke_key(&t.id, &k.key.id).unwrap();
        assert!(cat.authenticate(&k.secret).is_none());
        cat.delete_tenant(&t.id).unwrap();
        assert!(cat.delete_tenant(DEFAULT_TENANT).is_err());
    }

    #[test]
    fn preset_admin_key_is_used_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let a = "operator-chosen-secret-of-at-least-32-chars";
        let (cat, generated) = FileCatalog::open(dir.path(), Some(a)).unwrap();
        assert!(generated.is_none());
        assert!(!dir.path().join("admin.key").exists());
        assert!(cat.authenticate(a).is_some());
        drop(cat);
        let b = "another-operator-chosen-secret-of-32-chars+";
        let (cat, _) = FileCatalog::open(dir.path(), Some(b)).unwrap();
        assert!(cat.authenticate(a).is_none());
        assert!(cat.authenticate(b).is_some());
    }
}
