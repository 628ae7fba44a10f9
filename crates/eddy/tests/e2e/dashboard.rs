//! The web dashboard as the binary serves it, and the API answers made for it:
//! - `/`, the views' deep links and `/assets/*`: cache headers, ETags and 304s, gzip, the
//!   Content-Security-Policy and the other security headers; unknown files are Eddy's 404.
//! - `GET /api/v1/overview` (the summary, open alerts and pipeline health in one answer) and
//!   `GET /api/v1/query/tables` (every table a statement can read, with the columns a
//!   `SELECT *` of it really has), tenant by tenant.
//! - The browser tests of `web/e2e/` (Node's test runner driving Debian's Chromium through
//!   playwright-core) against this server. CI installs Node, Chromium and `web/node_modules`
//!   (`.ci/run`); elsewhere a missing one is reported and the test passes only outside CI.

use std::path::PathBuf;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn get(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = s.client.get(format!("{}{path}", s.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

fn assert_secured(r: &reqwest::Response) {
    let csp = header(r, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(header(r, "x-frame-options"), "DENY");
    assert_eq!(header(r, "referrer-policy"), "no-referrer");
}

/// The hashed script and stylesheet `index.html` loads.
fn linked_assets(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|p| p.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_dashboard_is_served_with_cache_and_security_headers() {
    let s = TestServer::spawn().await;

    let r = get(&s, "/", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert_secured(&r);
    let etag = header(&r, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let html = r.text().await.unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    let assets = linked_assets(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );

    // Deep links answer the same page (the client-side router shows the view); a HEAD too.
    for path in [
        "/index.html",
        "/overview",
        "/overview/",
        "/devices",
        "/devices/pump%201",
        "/alerts",
        "/analytics",
        "/sql",
        "/admin",
        "/admin/tenants/tn_x",
    ] {
        let r = get(&s, path, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, "etag"), etag, "{path}");
        assert_eq!(header(&r, "cache-control"), "no-cache", "{path}");
    }
    let head = s
        .client
        .head(format!("{}/sql", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "etag"), etag);

    // Revalidation: the same ETag is a 304 with the headers and no body.
    let r = get(&s, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_secured(&r);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get(&s, "/", &[("if-none-match", "\"something-else\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);

    // Hashed assets: cached for good, gzipped when asked, plain when not.
    for a in &assets {
        let plain = get(&s, a, &[("accept-encoding", "identity")]).await;
        assert_eq!(plain.status(), StatusCode::OK, "{a}");
        assert_eq!(
            header(&plain, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&plain, "content-encoding"), "");
        assert_eq!(header(&plain, "vary"), "accept-encoding");
        let want = if a.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&plain, "content-type"), want, "{a}");
        let body = plain.bytes().await.unwrap();

        // reqwest's own decoding is on: ask by hand and read the bytes as sent.
        let raw = reqwest::Client::builder()
            .no_gzip()
            .build()
            .unwrap()
            .get(format!("{}{a}", s.url))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&raw, "content-encoding"), "gzip", "{a}");
        let gz = raw.bytes().await.unwrap();
        assert!(gz.len() < body.len());
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, body, "{a}: the gzip copy is the same file");
    }

    // What is not in the bundle is Eddy's JSON 404, and the API's fallback is unchanged.
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/nope",
        "/devicesx",
    ] {
        let r = get(&s, path, &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}: {v}");
    }
    let r = s.client.post(format!("{}/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn readings(s: &TestServer, key: &str, device: &str, values: &[f64]) {
    let batch: Vec<Value> = values
        .iter()
        .map(|v| json!({"type": "reading", "device_id": device, "user_id": "u1", "page_url": "/pump", "metrics": {"pressure": v}}))
        .collect();
    let (st, b) = s
        .post("/api/v1/events", key, &json!(batch).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn the_overview_answers_summary_alerts_and_health_for_the_callers_tenant() {
    let s = TestServer::spawn().await;
    let (ta, a, _) = s.tenant_with_key("plant-a", &["read_write"]).await;
    let (_, b, _) = s.tenant_with_key("plant-b", &["read_write"]).await;

    // Tenant a: steady readings, then a spike the default rule opens an alert for.
    let steady: Vec<f64> = (0..60)
        .map(|i| 20.0 + [0.0, 0.4, -0.4, 0.8, -0.8][i % 5])
        .collect();
    readings(&s, &a, "pump", &steady).await;
    readings(&s, &a, "pump", &[35.0]).await;
    // Tenant b: a few events of its own.
    readings(&s, &b, "fan", &[1.0, 2.0, 3.0]).await;
    s.wait_visible().await;
    s.wait_rollups().await;

    let (st, o) = s.get("/api/v1/overview?from=-1h&top=3", &a).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    let (_, sum) = s.get("/api/v1/analytics/summary?from=-1h&top=3", &a).await;
    assert_eq!(
        o["summary"]["current"], sum["current"],
        "the summary, as its own route answers it"
    );
    assert_eq!(o["summary"]["current"]["events"], 61);
    assert_eq!(o["summary"]["current"]["devices"], 1);
    assert_eq!(o["summary"]["current"]["top_pages"][0]["value"], "/pump");
    assert_eq!(o["open_alerts"]["total"], 1, "{o}");
    let alert = &o["open_alerts"]["data"][0];
    assert_eq!(alert["device_id"], "pump");
    assert_eq!(alert["status"], "open");
    assert_eq!(o["pipeline"]["ready"], true);
    assert_eq!(o["pipeline"]["log"], "ok");
    assert_eq!(o["pipeline"]["reason"], Value::Null);
    assert!(
        o["pipeline"]["lag"]["end_offset"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert_eq!(o["pipeline"]["lag"]["store"]["lag"], 0, "{o}");

    // Tenant b sees its own figures and none of a's alerts.
    let (st, ob) = s.get("/api/v1/overview?from=-1h", &b).await;
    assert_eq!(st, StatusCode::OK, "{ob}");
    assert_eq!(ob["summary"]["current"]["events"], 3);
    assert_eq!(ob["open_alerts"]["total"], 0);
    assert_eq!(ob["open_alerts"]["data"], json!([]));

    // `alerts=0` lists none but still counts them; bad parameters change nothing and say why.
    let (_, o0) = s.get("/api/v1/overview?alerts=0", &a).await;
    assert_eq!(o0["open_alerts"]["data"], json!([]));
    assert_eq!(o0["open_alerts"]["total"], 1);
    for (q, needle) in [
        ("alerts=101", "`alerts` 101: 0 to 100"),
        ("top=0", "`top` 0: 1 to 1000"),
        ("top=x", "`top` `x`: a whole number"),
        ("from=soon", "`from`"),
        ("limit=5", "unknown parameter `limit`"),
    ] {
        let (st, e) = s.get(&format!("/api/v1/overview?{q}"), &a).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!(e["error"], "invalid_parameter", "{q}: {e}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let (write_only, _) = s.key_for(&ta, &["write"]).await;
    let (st, _) = s.get("/api/v1/overview", &write_only).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.get("/api/v1/overview", "ek_not_a_key").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_sql_tables_list_the_columns_a_statement_sees() {
    let s = TestServer::spawn_quick_windows().await;
    let key = s.admin_key.clone();
    readings(&s, &key, "pump", &[1.0, 2.0]).await;
    s.wait_visible().await;

    let (st, t) = s.get("/api/v1/query/tables", &key).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let tables = t["data"].as_array().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "events",
            "metric_samples",
            "rollups",
            "rollup_counts",
            "alerts"
        ]
    );
    for table in tables {
        let name = table["name"].as_str().unwrap();
        assert!(!table["description"].as_str().unwrap().is_empty());
        let (st, ans) = s
            .post(
                "/api/v1/query",
                &key,
                &json!({"sql": format!("SELECT * FROM {name} LIMIT 0")}).to_string(),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{name}: {ans}");
        let listed: Vec<(&str, &str)> = table["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
            .collect();
        let seen: Vec<(&str, &str)> = ans["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
            .collect();
        assert_eq!(listed, seen, "{name}: the listed columns are the real ones");
    }
    let (st, _) = s.get("/api/v1/query/tables", "ek_not_a_key").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// `node` if it runs, `chromium` if it runs, and `web/node_modules` installed.
fn browser_tools() -> Option<(String, String)> {
    let probe = |var: &str, default: &str| -> Result<String, String> {
        let t = std::env::var(var).unwrap_or_else(|_| default.into());
        match Command::new(&t).arg("--version").output() {
            Ok(o) if o.status.success() => Ok(t),
            other => Err(format!("`{t}` ({var}) not usable: {other:?}")),
        }
    };
    let found = probe("EDDY_NODE", "node").and_then(|node| {
        let chromium = probe("EDDY_CHROMIUM", "/usr/bin/chromium")?;
        if !repo().join("web/node_modules/playwright-core").is_dir() {
            return Err("web/node_modules is not installed (cd web && npm ci)".into());
        }
        Ok((node, chromium))
    });
    match found {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(std::env::var("CI").is_err(), "required in CI: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

#[tokio::test]
async fn the_dashboard_works_in_a_real_browser() {
    let Some((node, chromium)) = browser_tools() else {
        return;
    };
    let s = TestServer::spawn_quick_windows().await;
    let web = repo().join("web");
    let mut cmd = Command::new(node);
    cmd.current_dir(&web)
        .args(["--test", "--test-concurrency=1", "e2e/dashboard.test.mjs"])
        .env("EDDY_URL", &s.url)
        .env("EDDY_ADMIN_KEY", &s.admin_key)
        .env("EDDY_CHROMIUM", chromium);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser tests failed (output above); server log:\n{}",
        s.server_log()
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
}
