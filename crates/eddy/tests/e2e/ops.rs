//! Health, readiness, metrics, request ids, configuration errors, the data dir lock, and
//! graceful shutdown.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, events};

#[tokio::test]
async fn health_ready_stats_lag_and_request_ids() {
    let s = TestServer::spawn().await;
    let (st, h) = s.request("GET", "/health", None, None).await;
    assert_eq!((st, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let (st, r) = s.request("GET", "/ready", None, None).await;
    assert_eq!((st, r["status"].as_str()), (StatusCode::OK, Some("ready")));
    let (st, l) = s.get("/lag", &s.admin_key).await;
    assert_eq!(st, StatusCode::OK);
    assert!(l["consumers"].is_array() && l["end_offset"].is_u64());
    let r = s
        .client
        .get(format!("{}/health", s.url))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
    let r = s
        .client
        .get(format!("{}/health", s.url))
        .header("x-request-id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "my-trace-42");
    let r = s
        .client
        .post(format!("{}/api/v1/events", s.url))
        .header("x-request-id", "err-7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.headers()["x-request-id"].to_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "err-7")
    );
    let (st, v) = s.request("GET", "/no/such/route", None, None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn metrics_are_prometheus_clean() {
    let s = TestServer::spawn().await;
    s.post(
        "/api/v1/events",
        &s.admin_key,
        r#"[{"event_id":"m1","type":"a"},{"event_id":"m1","type":"a"}]"#,
    )
    .await;
    s.post(
        "/api/v1/events",
        &s.admin_key,
        r#"{"type":"a","value":"x"}"#,
    )
    .await;
    let text = s.metrics_text().await;
    for name in [
        "eddy_http_requests_total",
        "eddy_http_request_duration_seconds_bucket",
        "eddy_events_accepted_total{tenant=\"default\"} 1",
        "eddy_events_rejected_total{tenant=\"default\"} 1",
        "eddy_events_deduplicated_total{tenant=\"default\"} 1",
        "eddy_log_fsync_duration_seconds_bucket",
        "eddy_log_group_commit_records_bucket",
        "eddy_log_queue_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // gRPC calls too (after the counts above), one ok and one refused, so their per-method
    // series are checked.
    {
        use eddy_proto::v1 as pb;
        let ch = tonic::transport::Channel::from_shared(s.grpc_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut ingest = pb::event_ingestion_service_client::EventIngestionServiceClient::new(ch);
        let batch = || pb::IngestEventsRequest {
            events: vec![pb::Event {
                r#type: "g".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut ok = tonic::Request::new(batch());
        ok.metadata_mut()
            .insert("x-api-key", s.admin_key.parse().unwrap());
        ingest.ingest_events(ok).await.unwrap();
        assert!(
            ingest
                .ingest_events(tonic::Request::new(batch()))
                .await
                .is_err()
        );
        s.wait_metric(r#"eddy_grpc_requests_total{method="eddy.v1.EventIngestionService/IngestEvents",code="UNAUTHENTICATED"} 1"#).await;
    }
    let text = s.metrics_text().await;
    // promtool (Debian `prometheus`) must find no problems; CI installs it.
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool found problems: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => assert!(
            std::env::var("CI").is_err(),
            "promtool is required in CI: {e}"
        ),
    }
}

#[test]
fn invalid_settings_fail_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 5] = [
        (&["--http-addr", "localhost:eighty"], &[], "EDDY_HTTP_ADDR"),
        (&["--max-body-size", "huge"], &[], "EDDY_MAX_BODY_SIZE"),
        (&["--dedup-window", "forever"], &[], "EDDY_DEDUP_WINDOW"),
        (&[], &[("EDDY_ADMIN_KEY", "too-short")], "EDDY_ADMIN_KEY"),
        (&["--log-level", "[[["], &[], "EDDY_LOG_LEVEL"),
    ];
    for (args, env, name) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name),
            "{args:?}: error should name {name}: {err}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .env("EDDY_MAX_BATCH_EVENTS", "0")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("EDDY_MAX_BATCH_EVENTS"));
}

#[tokio::test]
async fn a_wrong_method_gets_a_json_405_with_allow_and_is_never_cached() {
    let s = TestServer::spawn().await;
    for (method, path, allow) in [
        ("DELETE", "/health", "GET"),
        ("GET", "/api/v1/query", "POST"),
        ("PUT", "/api/v1/tenants", "GET"),
    ] {
        let r = s
            .client
            .request(method.parse().unwrap(), format!("{}{path}", s.url))
            .header("x-api-key", &s.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            r.headers()["allow"].to_str().unwrap().contains(allow),
            "{method} {path}: {:?}",
            r.headers()
        );
        assert!(
            !r.headers().contains_key("x-eddy-cache"),
            "{method} {path}: a 405 is not a cache answer"
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "method_not_allowed", "{v}");
        assert!(v["message"].as_str().unwrap().contains(method), "{v}");
    }
}

#[test]
fn a_taken_port_fails_before_the_data_dir_or_a_key_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // The HTTP port, and the gRPC port (with a free HTTP one).
    for (args, variable) in [
        (
            ["--http-addr", addr.as_str(), "--grpc-addr", "127.0.0.1:0"],
            "EDDY_HTTP_ADDR",
        ),
        (
            ["--http-addr", "127.0.0.1:0", "--grpc-addr", addr.as_str()],
            "EDDY_GRPC_ADDR",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("fresh");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("EDDY_ADMIN_KEY")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(variable) && err.contains(&addr), "{err}");
        assert!(!data.exists(), "nothing is created when the port is taken");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("admin key"),
            "no key is printed"
        );
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_refuses_to_start() {
    let s = TestServer::spawn().await;
    let out = TestServer::command(&s.data_dir(), &[], &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another eddy process"), "{err}");
    // The first one is unharmed.
    assert_eq!(
        s.request("GET", "/ready", None, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sigterm_drains_and_flushes_queued_events() {
    let mut s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    let batch: Vec<_> = (0..500)
        .map(|i| json!({"event_id": format!("q-{i}"), "type": "a"}))
        .collect();
    for chunk in batch.chunks(100) {
        let (st, _) = s
            .post("/api/v1/events?sync=false", &k, &json!(chunk).to_string())
            .await;
        assert_eq!(st, StatusCode::ACCEPTED);
    }
    let status = s.terminate();
    assert!(status.success(), "clean exit: {status}");
    assert!(s.server_log().contains("log flushed"), "{}", s.server_log());
    let evs = events(&s.stop_and_read_log());
    assert_eq!(evs.len(), 500, "every queued event was written before exit");
}

/// A team's first step: months of history sent in time order, queried while it arrives, then
/// a graceful stop. The process must exit cleanly (a crash at exit once followed a long import:
/// the query runtime's threads were still unwinding when `main` returned), with everything
/// persisted in a bounded number of files and answered the same after a restart.
#[tokio::test]
async fn a_graceful_stop_after_a_long_history_import_exits_cleanly_and_keeps_everything() {
    const DEVICES: i64 = 5;
    const HOURS: i64 = 24 * 200;
    // No query cache: the same count is asked after every request and must be fresh.
    let args = ["--default-retention", "0", "--query-cache-staleness", "0"];
    let mut s = TestServer::spawn_with(&args, &[]).await;
    let k = s.admin_key.clone();
    let start = (chrono::Utc::now().timestamp() / 3600 - HOURS - 1) * 3600;
    let lines: Vec<String> = (0..HOURS)
        .flat_map(|h| {
            (0..DEVICES).map(move |d| {
                let t = chrono::DateTime::from_timestamp(start + h * 3600, 0).unwrap();
                json!({"device_id": format!("dev-{d}"), "time": t.to_rfc3339(),
                       "metrics": {"temperature": 20.0 + (h % 7) as f64, "power": (h * d % 100) as f64}})
                .to_string()
            })
        })
        .collect();
    let count_sql = json!({"sql": "SELECT count(*) AS n FROM metric_samples"}).to_string();
    for (i, chunk) in lines.chunks(2000).enumerate() {
        let r = s
            .post_raw(
                "/api/v1/events",
                &k,
                &[("content-type", "application/x-ndjson")],
                chunk.join("\n"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        // Queries run on the query runtime while the history arrives.
        let (st, v) = s.post("/api/v1/query", &k, &count_sql).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    s.wait_visible().await;
    s.wait_rollups().await;
    let samples = (DEVICES * HOURS * 2) as u64;
    let (_, v) = s.post("/api/v1/query", &k, &count_sql).await;
    assert_eq!(v["data"][0]["n"], samples, "{v}");
    let status = s.terminate();
    assert!(
        status.success(),
        "clean exit after the import: {status}\n{}",
        s.server_log()
    );
    assert!(s.server_log().contains("bye"), "{}", s.server_log());
    s.start();
    let (_, v) = s.post("/api/v1/query", &k, &count_sql).await;
    assert_eq!(v["data"][0]["n"], samples, "everything persisted: {v}");
    let (_, stats) = s.get("/stats", &k).await;
    let files = stats["store"]["files"].as_u64().unwrap();
    // One file per (hour, table) would be 9,600; month and day partitions keep it to a few
    // hundred at most (the issue's bound).
    assert!(files <= 300, "{files} files for {HOURS} hours of history");
    let status = s.terminate();
    assert!(status.success(), "clean exit after the restart: {status}");
}

/// Every route of the API, as the brief and the issues name them: the OpenAPI document must
/// list each (with its method).
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/events"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/events/recent"),
    ("post", "/api/data"),
    ("get", "/api/data/recent"),
    ("post", "/ingest"),
    ("post", "/telemetry"),
    ("post", "/events"),
    ("post", "/events/async"),
    ("post", "/events/batch"),
    ("post", "/v1/events"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices/{id}/metrics"),
    ("get", "/api/v1/timeseries"),
    ("get", "/api/v1/rollups"),
    ("get", "/api/v1/analytics/aggregates"),
    ("post", "/api/v1/query"),
    ("get", "/api/v1/query/tables"),
    ("get", "/api/v1/analytics/summary"),
    ("get", "/api/v1/overview"),
    ("get", "/analytics/summary"),
    ("get", "/v1/analytics/summary"),
    ("get", "/api/v1/analytics/top"),
    ("get", "/analytics/events"),
    ("get", "/api/v1/analytics/timeseries"),
    ("get", "/api/v1/analytics/users/{user_id}"),
    ("post", "/api/v1/analytics/funnel"),
    ("post", "/api/v1/analytics/retention"),
    ("get", "/api/v1/export"),
    ("get", "/api/v1/metrics/export"),
    ("get", "/api/v1/stream"),
    ("get", "/api/v1/ws"),
    ("get", "/ws"),
    ("get", "/api/v1/rules"),
    ("post", "/api/v1/rules"),
    ("get", "/api/v1/rules/{id}"),
    ("put", "/api/v1/rules/{id}"),
    ("patch", "/api/v1/rules/{id}"),
    ("delete", "/api/v1/rules/{id}"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/alerts/{id}"),
    ("post", "/api/v1/alerts/{id}/acknowledge"),
    ("post", "/api/v1/alerts/{id}/resolve"),
    ("post", "/api/v1/tenants"),
    ("get", "/api/v1/tenants"),
    ("get", "/api/v1/tenants/{id}"),
    ("patch", "/api/v1/tenants/{id}"),
    ("delete", "/api/v1/tenants/{id}"),
    ("post", "/api/v1/tenants/{id}/keys"),
    ("get", "/api/v1/tenants/{id}/keys"),
    ("delete", "/api/v1/tenants/{id}/keys/{key_id}"),
    ("get", "/api/v1/whoami"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/stats"),
    ("get", "/lag"),
    ("get", "/api/v1/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_lists_only_real_ones() {
    let s = TestServer::spawn().await;
    let (st, doc) = s.request("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2') || k == "101"),
                "{method} {path}: no success response"
            );
            let open = op["security"] == serde_json::json!([{}]);
            assert!(
                open || responses.contains_key("401"),
                "{method} {path}: needs a key, says no 401"
            );
        }
    }
    let wanted: std::collections::BTreeSet<(String, String)> = PUBLIC_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = wanted.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&wanted).collect();
    assert!(
        extra.is_empty(),
        "documented routes this test does not know: {extra:?}"
    );
    // Every documented operation is served (answers something other than "no such route"
    // or "method not allowed"), asked without a key.
    for (method, path) in &documented {
        let concrete = path.replace('{', "x").replace('}', "");
        let (st, v) = s
            .request(&method.to_uppercase(), &concrete, None, None)
            .await;
        assert!(
            st != StatusCode::NOT_FOUND && st != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {st} {v}"
        );
    }
    // The router registers routes only through `routes!`, which documents them.
    let router_src = include_str!("../../../eddy-server/src/routes/mod.rs");
    assert!(
        !router_src.contains(".route("),
        "a route registered without its OpenAPI entry"
    );
}

/// Errors the fuzzer found reaching clients in a library's words, now Eddy's JSON: an
/// oversized JSON document, a plain GET on the WebSocket routes, a bad ingest flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_handshakes_and_flags_are_refused_in_eddys_words() {
    let s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(3 << 20));
    for path in ["/api/v1/rules", "/api/v1/tenants"] {
        // The server closes a connection whose body it did not read: not one to reuse.
        let r = s
            .post_raw(
                path,
                &k,
                &[
                    ("content-type", "application/json"),
                    ("connection", "close"),
                ],
                big.clone(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "payload_too_large", "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains("2 MiB"), "{v}");
    }
    for path in ["/ws", "/api/v1/ws"] {
        let (st, v) = s.get(path, &k).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"], "not_a_websocket", "{v}");
        assert!(
            !v["message"].as_str().unwrap().contains("Connection header"),
            "{v}"
        );
    }
    let (st, v) = s
        .post("/api/v1/events?sync=maybe", &k, r#"{"type": "x"}"#)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["message"], "`sync`: true or false", "{v}");
    let (st, _) = s.get("/api/v1/events?limit=10", &k).await;
    assert_eq!(st, StatusCode::OK);
}

/// Funnels and retention (POST routes) are answered from the query cache like the other
/// analytics routes: the same body again within the staleness is a hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_and_retention_answers_are_cached_by_body() {
    let s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    for (path, body) in [
        ("/api/v1/analytics/funnel", r#"{"steps": ["a", "b"]}"#),
        (
            "/api/v1/analytics/retention",
            r#"{"cohort": "a", "return": "b"}"#,
        ),
    ] {
        let mut seen = Vec::new();
        for b in [body, body, r#"{"steps": ["a", "c"]}"#] {
            if path.ends_with("retention") && b.contains("steps") {
                continue;
            }
            let r = s
                .post_raw(
                    path,
                    &k,
                    &[("content-type", "application/json")],
                    b.to_string(),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{path} {b}");
            seen.push(r.headers()["x-eddy-cache"].to_str().unwrap().to_string());
        }
        assert_eq!(seen[0], "miss", "{path}");
        assert_eq!(seen[1], "hit", "{path}");
        if let Some(third) = seen.get(2) {
            assert_eq!(third, "miss", "{path}: another body is another answer");
        }
    }
}
