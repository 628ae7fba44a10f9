//! `POST /api/v1/query`: SQL over the caller's tenant — answers compared with what was sent,
//! every table (events, metric_samples, rollups from files and memory, rollup_counts, alerts),
//! every format, tenant isolation, read-only enforcement and limits.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

const MIN_MS: i64 = 60_000;

/// POSTs `sql` with `key`; status and JSON (or text) answer.
async fn sql(s: &TestServer, key: &str, sql: &str) -> (StatusCode, Value) {
    s.post("/api/v1/query", key, &json!({ "sql": sql }).to_string())
        .await
}

/// The rows of a JSON answer that must have succeeded.
async fn rows(s: &TestServer, key: &str, q: &str) -> Vec<Value> {
    let (st, v) = sql(s, key, q).await;
    assert_eq!(st, StatusCode::OK, "{q}: {v}");
    v["data"].as_array().unwrap().clone()
}

/// Sends `n` events for tenant `key`: readings of 3 devices over the minutes from `start`,
/// and clicks/views of 5 users. Returns (type → count, temp samples, temp sum).
async fn send(
    s: &TestServer,
    key: &str,
    start: i64,
    n: i64,
    tag: &str,
) -> (BTreeMap<String, u64>, u64, f64) {
    let mut types = BTreeMap::new();
    let (mut samples, mut sum) = (0, 0.0);
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            let t = start + i * 5_000;
            let ty = ["reading", "click", "page_view"][(i % 3) as usize];
            *types.entry(ty.to_string()).or_default() += 1;
            if ty == "reading" {
                samples += 1;
                sum += (i % 7) as f64;
                json!({"event_id": format!("{tag}{i}"), "type": ty, "time": t,
                       "device_id": format!("d{}", i % 3), "metrics": {"temp": (i % 7) as f64}})
            } else {
                json!({"event_id": format!("{tag}{i}"), "type": ty, "time": t,
                       "user_id": format!("u{}", i % 5), "page_url": "/home"})
            }
        })
        .collect();
    let (st, v) = s
        .post("/api/v1/events", key, &json!(batch).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    (types, samples, sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_answers_over_every_table_of_the_tenant_in_every_format() {
    let s = TestServer::spawn_quick_windows().await;
    let a = s.admin_key.clone();
    let (_, b, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let start = (chrono::Utc::now().timestamp_millis() / MIN_MS - 40) * MIN_MS;
    // 30 minutes of events for A, fewer for B.
    let (mut a_types, a_samples, a_sum) = send(&s, &a, start, 360, "a").await;
    let (b_types, b_samples, _) = send(&s, &b, start, 90, "b").await;
    s.wait_visible().await;
    s.wait_rollups().await;
    // Closed minute windows reach the rollup files (checkpoint every 50 ms).
    let files = s.data_dir().join("stream/rollups/default");
    let t = std::time::Instant::now();
    while std::fs::read_dir(&files).map_or(0, |d| d.count()) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "no rollup files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let by_type = |rows: &[Value]| -> BTreeMap<String, u64> {
        rows.iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap().to_string(),
                    r["n"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let q = "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type";
    assert_eq!(by_type(&rows(&s, &a, q).await), a_types);
    assert_eq!(by_type(&rows(&s, &b, q).await), b_types, "B sees only B");
    let (st, v) = sql(&s, &a, q).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["columns"],
        json!([{"name": "type", "type": "Utf8"}, {"name": "n", "type": "Int64"}])
    );
    assert_eq!(v["rows"], 3);

    let r = rows(
        &s,
        &a,
        "SELECT count(*) AS n, sum(value) AS s FROM metric_samples WHERE metric = 'temp'",
    )
    .await;
    assert_eq!(r[0]["n"].as_u64().unwrap(), a_samples);
    assert_eq!(r[0]["s"].as_f64().unwrap(), a_sum);
    let r = rows(&s, &b, "SELECT count(*) AS n FROM metric_samples").await;
    assert_eq!(r[0]["n"].as_u64().unwrap(), b_samples);

    // Rollups: files and memory together count every sample once, per resolution.
    for res in ["1m", "1h", "1d"] {
        let q = format!(
            "SELECT sum(count) AS n, sum(sum) AS s FROM rollups \
             WHERE resolution = '{res}' AND metric = 'temp' AND device_id IS NOT NULL"
        );
        let r = rows(&s, &a, &q).await;
        assert_eq!(r[0]["n"].as_u64().unwrap(), a_samples, "{res}");
        assert_eq!(r[0]["s"].as_f64().unwrap(), a_sum, "{res}");
        let q = format!(
            "SELECT sum(count) AS n FROM rollups WHERE resolution = '{res}' AND device_id IS NULL"
        );
        assert_eq!(rows(&s, &a, &q).await[0]["n"].as_u64().unwrap(), a_samples);
        let q = format!(
            "SELECT sum(count) AS n FROM rollup_counts WHERE resolution = '{res}' AND dimension = 'type'"
        );
        assert_eq!(rows(&s, &a, &q).await[0]["n"].as_u64().unwrap(), 360);
        assert_eq!(rows(&s, &b, &q).await[0]["n"].as_u64().unwrap(), 90);
    }
    let closed = rows(
        &s,
        &a,
        "SELECT count(*) AS n FROM rollups WHERE resolution = '1m' AND window_start < now() - INTERVAL '15 minutes'",
    )
    .await;
    assert!(closed[0]["n"].as_u64().unwrap() > 0);

    // Alerts.
    let (st, v) = s
        .post(
            "/api/v1/rules",
            &a,
            r#"{"id":"hot","kind":"threshold","op":">","value":100,"metrics":["temp"]}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s
        .post(
            "/api/v1/events",
            &a,
            r#"{"type":"reading","device_id":"d9","metrics":{"temp":150}}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    *a_types.entry("reading".into()).or_default() += 1;
    s.wait_rollups().await;
    let r = rows(
        &s,
        &a,
        "SELECT rule_id, device_id, status, value FROM alerts WHERE rule_id = 'hot'",
    )
    .await;
    assert_eq!(
        r,
        vec![json!({"rule_id": "hot", "device_id": "d9", "status": "open", "value": 150.0})]
    );
    assert!(rows(&s, &b, "SELECT * FROM alerts").await.is_empty());

    // Formats: by body field and by Accept.
    let q = "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type";
    let csv = s
        .post_raw(
            "/api/v1/query",
            &a,
            &[("content-type", "application/json"), ("accept", "text/csv")],
            json!({ "sql": q }).to_string(),
        )
        .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let expected: String = std::iter::once("type,n".to_string())
        .chain(a_types.iter().map(|(t, n)| format!("{t},{n}")))
        .map(|l| l + "\n")
        .collect();
    assert_eq!(csv.text().await.unwrap(), expected);
    let nd = s
        .post_raw(
            "/api/v1/query",
            &a,
            &[("content-type", "application/json")],
            json!({ "sql": q, "format": "ndjson" }).to_string(),
        )
        .await;
    assert_eq!(nd.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = nd
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), a_types.len());
    assert_eq!(lines[0]["type"], "click");
    let ipc = s
        .post_raw(
            "/api/v1/query",
            &a,
            &[
                ("content-type", "application/json"),
                ("accept", "application/vnd.apache.arrow.stream"),
            ],
            json!({ "sql": q }).to_string(),
        )
        .await;
    assert_eq!(ipc.status(), StatusCode::OK);
    let bytes = ipc.bytes().await.unwrap();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    assert_eq!(reader.schema().field(0).name(), "type");
    // Scans decode strings as views; answers keep plain Utf8 in every format.
    assert_eq!(
        reader.schema().field(0).data_type(),
        &arrow::datatypes::DataType::Utf8
    );
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, a_types.len());
    // An empty answer still has its columns.
    let (st, v) = sql(&s, &a, "SELECT event_id FROM events WHERE type = 'nothing'").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["data"], json!([]));
    assert_eq!(v["columns"][0]["name"], "event_id");
    // EXPLAIN shows the plan.
    let (st, v) = sql(&s, &a, &format!("EXPLAIN {q}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let plans: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["plan_type"].as_str().unwrap())
        .collect();
    assert_eq!(plans, ["logical_plan", "physical_plan"]);
    let text = v["data"].to_string();
    assert!(text.contains("AggregateExec"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_is_read_only_isolated_validated_and_limited() {
    let s = TestServer::spawn_with(
        &[
            "--max-result-rows",
            "50",
            "--query-timeout",
            "2s",
            "--query-memory",
            "16MiB",
        ],
        &[],
    )
    .await;
    let a = s.admin_key.clone();
    let (b_id, b, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let (_, write_only, _) = s.tenant_with_key("writer", &["write"]).await;
    let start = (chrono::Utc::now().timestamp_millis() / MIN_MS - 10) * MIN_MS;
    send(&s, &a, start, 60, "a").await;
    send(&s, &b, start, 30, "b").await;
    s.wait_visible().await;
    let escape = std::env::temp_dir().join(format!("eddy-sql-escape-{}", std::process::id()));
    let escape = escape.to_string_lossy().to_string();
    for (q, why) in [
        ("CREATE TABLE x AS SELECT 1", "DDL"),
        ("DROP TABLE events", "DDL"),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            "external table",
        ),
        (
            &format!("COPY (SELECT * FROM events) TO '{escape}' STORED AS CSV") as &str,
            "COPY",
        ),
        ("INSERT INTO events SELECT * FROM events", "DML"),
        ("SET datafusion.execution.batch_size = 1", "statement"),
        ("SELECT * FROM '/etc/passwd'", "path as table"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file function"),
        ("SELECT * FROM read_parquet('/etc/passwd')", "file function"),
        (
            &format!("SELECT count(*) FROM \"{b_id}\".events") as &str,
            "another tenant's schema",
        ),
        ("SELECT * FROM information_schema.tables", "catalog"),
        ("SELEC 1", "syntax"),
        ("SELECT nope FROM events", "unknown column"),
        ("SELECT 1; SELECT 2", "two statements"),
    ] {
        let (st, v) = sql(&s, &a, q).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {q} → {v}");
        assert_eq!(v["error"], "invalid_query", "{why}: {v}");
        let message = v["message"].as_str().unwrap();
        // Eddy's words, not the engine's type names.
        for leak in [
            "ParserError",
            "Error during planning",
            "DataFusion",
            "SQL error:",
        ] {
            assert!(!message.contains(leak), "{why}: {message}");
        }
    }
    for (q, says) in [
        (
            "SELEC 1",
            "the statement does not parse: Expected: an SQL statement, found: SELEC",
        ),
        (
            "DROP TABLE events",
            "DDL (CREATE, DROP, ALTER …) statements are refused",
        ),
        (
            "INSERT INTO events SELECT * FROM events",
            "DML (INSERT, UPDATE, DELETE, COPY …) statements are refused",
        ),
        (
            "SELECT nope FROM events",
            "the statement names something the tenant's tables do not have",
        ),
    ] {
        let (_, v) = sql(&s, &a, q).await;
        assert!(v["message"].as_str().unwrap().contains(says), "{q}: {v}");
    }
    assert!(
        !std::path::Path::new(&escape).exists(),
        "COPY wrote nothing"
    );
    // Nothing changed: A still has its 60 events, B its 30.
    assert_eq!(
        rows(&s, &a, "SELECT count(*) AS n FROM events").await[0]["n"],
        60
    );
    assert_eq!(
        rows(&s, &b, "SELECT count(*) AS n FROM events").await[0]["n"],
        30
    );
    // Whatever B writes, its tables are its own.
    let r = rows(
        &s,
        &b,
        "SELECT count(*) AS n FROM events WHERE event_id LIKE 'a%'",
    )
    .await;
    assert_eq!(r[0]["n"], 0);

    // Keys and bodies.
    let body = json!({"sql": "SELECT 1"}).to_string();
    let (st, _) = s.post("/api/v1/query", "eddy_bogus", &body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.post("/api/v1/query", &write_only, &body).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    for (body, code) in [
        (r#"{"sql": ""}"#, "invalid_query"),
        (
            r#"{"sql": "SELECT 1", "format": "xml"}"#,
            "invalid_parameter",
        ),
        (
            r#"{"sql": "SELECT 1", "tenant": "default"}"#,
            "invalid_body",
        ),
        (r#"{"query": "SELECT 1"}"#, "invalid_body"),
        ("not json", "invalid_body"),
    ] {
        let (st, v) = s.post("/api/v1/query", &b, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"], code, "{body}: {v}");
    }
    let long = format!("SELECT 1 {}", " ".repeat(70_000));
    let (st, v) = sql(&s, &a, &long).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );

    // Limits: rows, time, memory.
    let (st, v) = sql(&s, &a, "SELECT * FROM events").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "result_too_large");
    assert_eq!(
        rows(&s, &a, "SELECT * FROM events LIMIT 50").await.len(),
        50
    );
    let (st, v) = sql(
        &s,
        &a,
        "SELECT count(*) FROM generate_series(1, 100000000000)",
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "timeout: {v}");
    let (st, v) = sql(
        &s,
        &a,
        // array_agg cannot spill (a DISTINCT count would, and then only time out).
        "SELECT cardinality(array_agg(value)) FROM generate_series(1, 20000000) AS t(value)",
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "memory limit: {v}");
    assert!(
        v["message"].as_str().unwrap().contains("more memory"),
        "{v}"
    );
    // A CSV of map columns is refused clearly; JSON writes them.
    let resp = s
        .post_raw(
            "/api/v1/query",
            &a,
            &[("content-type", "application/json")],
            json!({"sql": "SELECT metrics FROM events LIMIT 1", "format": "csv"}).to_string(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let r = rows(
        &s,
        &a,
        "SELECT metrics FROM events WHERE type = 'reading' LIMIT 1",
    )
    .await;
    assert!(r[0]["metrics"]["temp"].is_number(), "{r:?}");
}

/// POSTs `sql` with `key`; (x-eddy-cache, status, answer).
async fn cached_sql(s: &TestServer, key: &str, sql: &str) -> (Option<String>, StatusCode, Value) {
    let r = s
        .post_raw(
            "/api/v1/query",
            key,
            &[("content-type", "application/json")],
            json!({ "sql": sql }).to_string(),
        )
        .await;
    let cache = r
        .headers()
        .get("x-eddy-cache")
        .map(|v| v.to_str().unwrap().to_string());
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        cache,
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_queries_are_cached_per_tenant_and_never_older_than_the_staleness() {
    let s = TestServer::spawn_with(&["--query-cache-staleness", "1s"], &[]).await;
    let a = s.admin_key.clone();
    let (_, b, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let (a_write_only, _) = s.key_for("default", &["write"]).await;
    let start = (chrono::Utc::now().timestamp_millis() / MIN_MS - 10) * MIN_MS;
    send(&s, &a, start, 30, "a").await;
    send(&s, &b, start, 12, "b").await;
    s.wait_visible().await;
    let q = "SELECT count(*) AS n FROM events";
    let (c, st, v) = cached_sql(&s, &a, q).await;
    assert_eq!(
        (c.as_deref(), st, v["data"][0]["n"].as_u64()),
        (Some("miss"), StatusCode::OK, Some(30))
    );
    let (c, _, v) = cached_sql(&s, &a, q).await;
    assert_eq!(
        (c.as_deref(), v["data"][0]["n"].as_u64()),
        (Some("hit"), Some(30))
    );
    // Another tenant asking the same gets its own answer.
    let (c, _, v) = cached_sql(&s, &b, q).await;
    assert_eq!(
        (c.as_deref(), v["data"][0]["n"].as_u64()),
        (Some("miss"), Some(12))
    );
    // A cached answer is no way around scopes and keys.
    let (c, st, _) = cached_sql(&s, &a_write_only, q).await;
    assert_eq!((c, st), (None, StatusCode::FORBIDDEN));
    let (c, st, _) = cached_sql(&s, "eddy_bogus", q).await;
    assert_eq!((c, st), (None, StatusCode::UNAUTHORIZED));
    // New data shows once the staleness has passed.
    let (st, _) = s
        .post("/api/v1/events", &a, r#"{"type":"click","user_id":"late"}"#)
        .await;
    assert_eq!(st, StatusCode::OK);
    s.wait_visible().await;
    // Asked again until the cached answer has expired (never more than the staleness, 1 s,
    // after it was made): the fresh answer counts the new event.
    let asked = std::time::Instant::now();
    let v = loop {
        let (c, _, v) = cached_sql(&s, &a, q).await;
        if c.as_deref() == Some("miss") {
            break v;
        }
        assert_eq!(
            v["data"][0]["n"].as_u64(),
            Some(30),
            "a hit is the cached answer"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the cached answer outlived its staleness"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v["data"][0]["n"].as_u64(), Some(31));
    // Errors are not kept.
    let (c, st, _) = cached_sql(&s, &a, "SELEC 1").await;
    assert_eq!((c.as_deref(), st), (Some("miss"), StatusCode::BAD_REQUEST));
    let (c, _, _) = cached_sql(&s, &a, "SELEC 1").await;
    assert_eq!(c.as_deref(), Some("miss"));
    // GET routes: the parameters' order does not matter; headers are kept.
    let get = |q: &'static str| {
        let (client, url, key) = (s.client.clone(), s.url.clone(), a.clone());
        async move {
            let r = client
                .get(format!("{url}/api/v1/timeseries?{q}"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            let cache = r.headers()["x-eddy-cache"].to_str().unwrap().to_string();
            let source = r.headers()["x-eddy-source"].to_str().unwrap().to_string();
            (cache, source, r.text().await.unwrap())
        }
    };
    let (c1, src1, body1) = get("metric=temp&from=-1h&bucket=1m&agg=count").await;
    let (c2, src2, body2) = get("agg=count&bucket=1m&from=-1h&metric=temp").await;
    assert_eq!((c1.as_str(), c2.as_str()), ("miss", "hit"));
    assert_eq!((src1, body1), (src2, body2));
    let metrics = s.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("eddy_query_cache_total{result=\"hit\"} ")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_staleness_turns_the_cache_off() {
    let s = TestServer::spawn_with(&["--query-cache-staleness", "0"], &[]).await;
    for _ in 0..2 {
        let (c, st, _) = cached_sql(&s, &s.admin_key, "SELECT 1").await;
        assert_eq!((c, st), (None, StatusCode::OK));
    }
}
