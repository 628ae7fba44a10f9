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
    Get { id: String },
    /// Create a tenant.
    Create {
        name: String,
        /// Ingest quota in events/s (0 = unlimited).
        #[arg(long)]
        events_per_sec: Option<u32>,
        /// Retention, e.g. 30d (0 = forever).
        #[arg(long)]
        retention: Option<String>,
    },
    /// Delete a tenant, its keys and its data.
    Delete { id: String },
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
    List { tenant: String },
    /// Create a key; its secret is printed once.
    Create {
        tenant: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated: admin, read, write, read_write.
        #[arg(long, value_delimiter = ',', default_value = "write")]
        scopes: Vec<String>,
    },
    /// Revoke a key.
    Revoke { tenant: String, key_id: String },
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

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<()> {
        let key = self.key()?;
        let url = format!("{}{}", self.url.trim_end_matches('/'), path);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut req = client.request(method, &url).header("x-api-key", key);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let text = resp.text().await?;
            let pretty = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            if !status.is_success() {
                bail!("{status}: {pretty}");
            }
            if !pretty.is_empty() {
                println!("{pretty}");
            }
            Ok(())
        })
    }
}

pub(crate) fn run_tenants(args: TenantsArgs) -> Result<()> {
    use reqwest::Method;
    let c = &args.conn;
    match args.cmd {
        TenantsCmd::List => c.call(Method::GET, "/api/v1/tenants", None),
        TenantsCmd::Get { id } => c.call(Method::GET, &format!("/api/v1/tenants/{id}"), None),
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
        TenantsCmd::Delete { id } => c.call(Method::DELETE, &format!("/api/v1/tenants/{id}"), None),
    }
}

pub(crate) fn run_keys(args: KeysArgs) -> Result<()> {
    use reqwest::Method;
    let c = &args.conn;
    match args.cmd {
        KeysCmd::List { tenant } => {
            c.call(Method::GET, &format!("/api/v1/tenants/{tenant}/keys"), None)
        }
        KeysCmd::Create {
            tenant,
            name,
            scopes,
        } => c.call(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/keys"),
            Some(json!({"name": name, "scopes": scopes})),
        ),
        KeysCmd::Revoke { tenant, key_id } => c.call(
            Method::DELETE,
            &format!("/api/v1/tenants/{tenant}/keys/{key_id}"),
            None,
        ),
    }
}
