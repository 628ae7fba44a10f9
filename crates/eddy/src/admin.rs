//! `eddy tenants …` and `eddy keys …`: thin clients of the admin API, printing its JSON.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the server is and which key to use.
#[derive(Debug, Args)]
pub(crate) struct Conn {
    /// Server URL.
    #[arg(
        long,
        env = "EDDY_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Admin API key; defaults to the one in `<data-dir>/admin.key`.
    #[arg(long, env = "EDDY_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Data dir whose admin.key to use when no --api-key is given.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TenantsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: TenantsCmd,
}

#[derive(Debug, Subcommand)]
enum TenantsCmd {
    /// List tenants.
    List,
    /// Show one tenant.
    Get {
        /// Tenant id (`tn_…`) or name.
        tenant: String,
    },
    /// Create a tenant.
    Create {
        /// Its name: 1 to 128 characters, unique.
        name: String,
        /// Ingest quota in events/s (0 = unlimited).
        #[arg(long)]
        events_per_sec: Option<u32>,
        /// Retention, e.g. 30d (0 = forever).
        #[arg(long)]
        retention: Option<String>,
    },
    /// Delete a tenant, its keys and its data.
    Delete {
        /// Tenant id (`tn_…`) or name.
        tenant: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// List a tenant's keys (never their secrets).
    List {
        /// Tenant id (`tn_…`) or name.
        tenant: String,
    },
    /// Create a key; its secret is printed once.
    Create {
        /// Tenant id (`tn_…`) or name.
        tenant: String,
        /// A name to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated: admin, read, write, read_write.
        #[arg(long, value_delimiter = ',', default_value = "write")]
        scopes: Vec<String>,
    },
    /// Revoke a key.
    Revoke {
        /// Tenant id (`tn_…`) or name.
        tenant: String,
        /// Key id (`key_…`, from `eddy keys list`).
        key_id: String,
    },
}

impl Conn {
    fn key(&self) -> Result<String> {
        if let Some(k) = &self.api_key {
            return Ok(k.clone());
        }
        let path = self.data_dir.join("admin.key");
        let k = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --api-key / EDDY_API_KEY given and {} is not readable",
                path.display()
            )
        })?;
        Ok(k.trim().to_string())
    }

    /// One request; the answer's JSON (`Null` for an empty body).
    fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let key = self.key()?;
        let base = self.url.trim_end_matches('/');
        let url = format!("{base}{path}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut req = client.request(method, &url).header("x-api-key", key);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.map_err(|e| {
                let why = if e.is_connect() {
                    "the connection was refused"
                } else if e.is_timeout() {
                    "it timed out"
                } else {
                    "the request failed"
                };
                anyhow::anyhow!(
                    "cannot reach {base} ({why}): is `eddy serve` running there? Use --url / EDDY_URL for another address"
                )
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|_| anyhow::anyhow!("{base} sent an unreadable answer ({status})"))?;
            let v = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
            };
            if !status.is_success() {
                let msg = v["message"].as_str().map_or_else(|| v.to_string(), str::to_string);
                bail!("{status}: {msg}");
            }
            Ok(v)
        })
    }

    /// One request, its answer printed as pretty JSON.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<()> {
        let v = self.request(method, path, body)?;
        if !v.is_null() {
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Ok(())
    }

    /// The id of the tenant named or identified by `tenant`.
    fn tenant_id(&self, tenant: &str) -> Result<String> {
        let list = self.request(reqwest::Method::GET, "/api/v1/tenants", None)?;
        let empty = Vec::new();
        let tenants = list["data"].as_array().unwrap_or(&empty);
        tenants
            .iter()
            .find(|t| t["id"] == tenant)
            .or_else(|| tenants.iter().find(|t| t["name"] == tenant))
            .and_then(|t| t["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no tenant with the id or name `{tenant}` (`eddy tenants list` shows them)"
                )
            })
    }
}

pub(crate) fn run_tenants(args: TenantsArgs) -> Result<()> {
    use reqwest::Method;
    let c = &args.conn;
    match args.cmd {
        TenantsCmd::List => c.call(Method::GET, "/api/v1/tenants", None),
        TenantsCmd::Get { tenant } => {
            let id = c.tenant_id(&tenant)?;
            c.call(Method::GET, &format!("/api/v1/tenants/{id}"), None)
        }
        TenantsCmd::Create {
            name,
            events_per_sec,
            retention,
        } => {
            let mut body = json!({"name": name});
            if let Some(q) = events_per_sec {
                body["events_per_sec"] = json!(q);
            }
            if let Some(r) = retention {
                body["retention"] = json!(r);
            }
            c.call(Method::POST, "/api/v1/tenants", Some(body))
        }
        TenantsCmd::Delete { tenant } => {
            let id = c.tenant_id(&tenant)?;
            c.call(Method::DELETE, &format!("/api/v1/tenants/{id}"), None)?;
            eprintln!("tenant {id} deleted");
            Ok(())
        }
    }
}

pub(crate) fn run_keys(args: KeysArgs) -> Result<()> {
    use reqwest::Method;
    let c = &args.conn;
    match args.cmd {
        KeysCmd::List { tenant } => {
            let id = c.tenant_id(&tenant)?;
            c.call(Method::GET, &format!("/api/v1/tenants/{id}/keys"), None)
        }
        KeysCmd::Create {
            tenant,
            name,
            scopes,
        } => {
            let id = c.tenant_id(&tenant)?;
            c.call(
                Method::POST,
                &format!("/api/v1/tenants/{id}/keys"),
                Some(json!({"name": name, "scopes": scopes})),
            )
        }
        KeysCmd::Revoke { tenant, key_id } => {
            let id = c.tenant_id(&tenant)?;
            c.call(
                Method::DELETE,
                &format!("/api/v1/tenants/{id}/keys/{key_id}"),
                None,
            )?;
            eprintln!("key {key_id} revoked");
            Ok(())
        }
    }
}
