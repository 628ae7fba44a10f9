//! Tenants and keys through the admin API and the CLI.

use eddy_model::Entry;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, events};

#[tokio::test]
async fn tenant_and_key_lifecycle() {
    let mut s = TestServer::spawn().await;
    let a = s.admin_key.clone();
    assert!(s.stdout().contains(&a), "first start prints the admin key");
    let (st, t) = s
        .post(
            "/api/v1/tenants",
            &a,
            r#"{"name":"acme","retention":"7d","events_per_sec":5000}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            t["name"].as_str(),
            t["events_per_sec"].as_u64(),
            t["retention"].as_str()
        ),
        (Some("acme"), Some(5000), Some("7d"))
    );
    let (st, _) = s.post("/api/v1/tenants", &a, r#"{"name":"acme"}"#).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, v) = s.post("/api/v1/tenants", &a, r#"{"nam":"typo"}"#).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (_, list) = s.get("/api/v1/tenants", &a).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let (st, got) = s.get(&format!("/api/v1/tenants/{id}"), &a).await;
    assert_eq!(
        (st, got["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    assert_eq!(
        s.get("/api/v1/tenants/nope", &a).await.0,
        StatusCode::NOT_FOUND
    );

    let (st, k) = s
        .post(
            &format!("/api/v1/tenants/{id}/keys"),
            &a,
            r#"{"name":"ingest","scopes":["write"]}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let secret = k["key"].as_str().unwrap().to_string();
    let key_id = k["id"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("eddy_") && k["scopes"] == json!(["write"]) && k.get("hash").is_none()
    );
    let (st, _) = s
        .post(
            &format!("/api/v1/tenants/{id}/keys"),
            &a,
            r#"{"scopes":["superuser"]}"#,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .post(
            &format!("/api/v1/tenants/{id}/keys"),
            &a,
            r#"{"scopes":["admin"]}"#,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "admin keys only in the default tenant"
    );
    let (_, keys) = s.get(&format!("/api/v1/tenants/{id}/keys"), &a).await;
    let listed = &keys["data"][0];
    assert_eq!(listed["id"], key_id.as_str());
    assert!(
        listed.get("key").is_none() && listed.get("hash").is_none(),
        "secrets are never listed: {listed}"
    );
    assert!(
        !std::fs::read_to_string(s.data_dir().join("catalog.json"))
            .unwrap()
            .contains(&secret)
    );

    // The key writes into its own tenant; the tenant comes from the key, not the body.
    let (st, v) = s
        .post(
            "/api/v1/events",
            &secret,
            r#"{"type":"x","tenant":"default"}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, who) = s.get("/api/v1/whoami", &secret).await;
    assert_eq!(who["tenant_id"], id.as_str());

    // Revoke.
    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/v1/tenants/{id}/keys/{key_id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.post("/api/v1/events", &secret, r#"{"type":"x"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .request(
            "DELETE",
            &format!("/api/v1/tenants/{id}/keys/{key_id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Delete the tenant: keys die with it, the log gets a tombstone, the catalog survives restarts.
    let (_, k2) = s.key_for(&id, &["read_write"]).await;
    assert_eq!(
        s.request("DELETE", &format!("/api/v1/tenants/{id}"), Some(&a), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.post("/api/v1/events", &k2, r#"{"type":"x"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.request("DELETE", "/api/v1/tenants/default", Some(&a), None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    s.restart();
    let (_, list) = s.get("/api/v1/tenants", &a).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.post("/api/v1/events", &k2, r#"{"type":"x"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    let entries = s.stop_and_read_log();
    assert!(
        entries
            .iter()
            .any(|e| matches!(&e.entry, Some(Entry::TenantDeleted(t)) if t.tenant == id))
    );
    assert_eq!(
        events(&entries).iter().filter(|e| e.tenant == id).count(),
        1
    );
}

#[tokio::test]
async fn preset_admin_key_and_cli_admin_commands() {
    let preset = "an-operator-chosen-secret-that-is-long-enough";
    let s = TestServer::spawn_with(&[], &[("EDDY_ADMIN_KEY", preset)]).await;
    assert!(!s.data_dir().join("admin.key").exists());
    assert!(!s.stdout().contains(preset));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(args)
            .env("EDDY_URL", &s.url)
            .env("EDDY_API_KEY", preset)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = cli(&["tenants", "create", "cli-co", "--retention", "90d"]);
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = t["id"].as_str().unwrap();
    // Tenants are named by id or by name.
    let (ok, out, _) = cli(&[
        "keys",
        "create",
        "cli-co",
        "--name",
        "w",
        "--scopes",
        "read,write",
    ]);
    assert!(ok);
    let k: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(k["scopes"], json!(["read", "write"]));
    assert_eq!(k["tenant_id"], id);
    let (ok, out, _) = cli(&["keys", "list", id]);
    assert!(ok && out.contains(k["id"].as_str().unwrap()));
    let (ok, out, _) = cli(&["keys", "list", "cli-co"]);
    assert!(ok && out.contains(k["id"].as_str().unwrap()));
    let (ok, out, _) = cli(&["tenants", "list"]);
    assert!(ok && out.contains("cli-co"));
    let (ok, _, _) = cli(&["keys", "revoke", id, k["id"].as_str().unwrap()]);
    assert!(ok);
    let (ok, _, _) = cli(&["tenants", "delete", id]);
    assert!(ok);
    let (ok, _, err) = cli(&["tenants", "get", id]);
    assert!(
        !ok && err.contains(&format!("no tenant with the id or name `{id}`")),
        "{err}"
    );
    // A server that is not there: one sentence saying so, no library error chain.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["tenants", "list", "--url", &url])
        .env("EDDY_API_KEY", preset)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot reach {url}")) && err.contains("is `eddy serve` running"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
