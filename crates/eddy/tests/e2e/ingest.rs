//! Every payload shape and every error class of ingestion.

use std::io::Write;

use eddy_model::Value as Prop;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, events, now_ms, now_rfc3339};

#[tokio::test]
async fn every_payload_shape_lands_in_the_log_as_one_model() {
    let mut s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    let ts = now_rfc3339();
    let ms = now_ms();
    let secs = ms / 1000;
    let cases = [
        (
            "/api/data",
            json!({"sensorId":"sensor-001","value":23.5,"timestamp": ts}),
        ),
        (
            "/api/data",
            json!({"sensor_id":"sensor-002","value":19.0,"timestamp": ts}),
        ),
        (
            "/ingest",
            json!({"event_id":"test_123","user_id":"user_1","event_type":"click","page_url":"https://example.com","time_stamp": ts}),
        ),
        (
            "/telemetry",
            json!({"device_id":"sensor-003","ts": ms,"metrics":{"temperature":23.5,"humidity":45.2,"pressure":1013.25}}),
        ),
        (
            "/events",
            json!({"id":"event_123","user_id":"user_456","event_type":"page_view","properties":{"page":"/dashboard","duration":"45"},"timestamp": secs,"source":"web-app"}),
        ),
        (
            "/v1/events",
            json!({"event":{"id":"event_gw","event_type":"signup","user_id":"user_9","timestamp": secs}}),
        ),
        (
            "/api/v1/events",
            json!({"event_id":"native-1","type":"reading","device_id":"d1","time": ts,"metrics":{"t":1.5},"properties":{"ok":true,"n":3}}),
        ),
    ];
    for (path, body) in &cases {
        let (st, v) = s.post(path, &k, &body.to_string()).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["accepted"], 1, "{path}: {v}");
    }
    // Async: 202 once queued.
    let (st, v) = s
        .post(
            "/events/async",
            &k,
            &json!({"id":"async-1","event_type":"click"}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "accepted");
    // Batches: array, {"events": …} on every batch route, NDJSON.
    let (st, v) = s
        .post(
            "/events/batch",
            &k,
            &json!({"events":[{"event_type":"a"},{"event_type":"b"}]}).to_string(),
        )
        .await;
    assert_eq!(
        (st, v["processed"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let (st, v) = s
        .post(
            "/api/v1/events",
            &k,
            &json!([{"type":"a"},{"type":"b"},{"type":"c"}]).to_string(),
        )
        .await;
    assert_eq!(
        (st, v["accepted"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{v}"
    );
    let (st, v) = s.post("/telemetry", &k, &json!({"events":[{"device_id":"x","metrics":{"a":1}},{"device_id":"y","metrics":{"a":2}}]}).to_string()).await;
    assert_eq!(
        (st, v["accepted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let resp = s
        .post_raw(
            "/api/v1/events",
            &k,
            &[("content-type", "application/x-ndjson")],
            "{\"type\":\"n1\"}\n{\"type\":\"n2\"}\n",
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!([{"type":"gz1"},{"type":"gz2"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let resp = s
        .post_raw(
            "/api/v1/events",
            &k,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let evs = events(&s.stop_and_read_log());
    assert_eq!(evs.len(), 7 + 1 + 2 + 3 + 2 + 2 + 2);
    let by_id = |id: &str| {
        evs.iter()
            .find(|e| e.event_id == id)
            .unwrap_or_else(|| panic!("{id} missing"))
    };
    let sensors: Vec<_> = evs
        .iter()
        .filter(|e| {
            e.device_id
                .as_deref()
                .is_some_and(|d| d.starts_with("sensor-"))
        })
        .collect();
    assert_eq!(sensors.len(), 3);
    assert!(
        sensors
            .iter()
            .all(|e| e.r#type == "reading" && e.tenant == "default")
    );
    assert_eq!(sensors[0].metrics["value"], 23.5);
    assert_eq!(sensors[2].metrics.len(), 3);
    assert_eq!(sensors[2].time, ms * 1_000_000);
    let click = by_id("test_123");
    assert_eq!(
        (
            click.r#type.as_str(),
            click.user_id.as_deref(),
            click.page_url.as_deref()
        ),
        ("click", Some("user_1"), Some("https://example.com"))
    );
    let pv = by_id("event_123");
    assert_eq!(
        pv.properties["page"].value,
        Some(Prop::String("/dashboard".into()))
    );
    assert_eq!(pv.source.as_deref(), Some("web-app"));
    assert_eq!(pv.time, secs * 1_000_000_000);
    assert_eq!(by_id("event_gw").r#type, "signup");
    let native = by_id("native-1");
    assert_eq!(native.properties["ok"].value, Some(Prop::Bool(true)));
    assert_eq!(by_id("async-1").r#type, "click");
}

#[tokio::test]
async fn rejected_events_name_index_and_field_and_store_nothing() {
    let mut s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    let end = s.log_end().await;
    let bad = json!([
        {"type":"ok"},
        {"type":"x","metrics":{"temp":"hot"}},
        {"type":"x","value":"NaN"},
        {"type":"x","timestamp":"2020-01-01T00:00:00Z"},
        {"type":"x","ts": now_ms() + 7_200_000},
        {"metrics":{}},
        {"type":"x","sensorId":"a","device_id":"b"},
        {"type":"x","nested":{"a":1}},
        {"type":"x","device_id":"d".repeat(5000)},
        "not an object",
    ]);
    let (st, v) = s.post("/api/v1/events", &k, &bad.to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "validation_failed");
    let errs = v["errors"].as_array().unwrap();
    let got: Vec<(u64, &str)> = errs
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "metrics.temp"),
            (2, "value"),
            (3, "timestamp"),
            (4, "ts"),
            (5, "type"),
            (6, "sensorId"),
            (7, "nested"),
            (8, "device_id"),
            (9, "")
        ]
    );
    assert!(
        errs.iter()
            .all(|e| !e["reason"].as_str().unwrap().is_empty())
    );
    assert_eq!(s.log_end().await, end, "all-or-nothing: nothing stored");

    // partial=true keeps the valid one and lists the rest.
    let (st, v) = s
        .post("/api/v1/events?partial=true", &k, &bad.to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["accepted"].as_u64(),
            v["rejected"].as_array().unwrap().len()
        ),
        (Some(1), 9)
    );
    assert_eq!(s.log_end().await, end + 1);

    // Body-level errors.
    for (body, code) in [
        ("{", "invalid_body"),
        ("[]", "invalid_body"),
        ("42", "invalid_body"),
    ] {
        let (st, v) = s.post("/api/v1/events", &k, body).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {v}"
        );
    }
    // Compatibility route shapes get the same structured errors.
    let (st, v) = s
        .post("/api/data", &k, r#"{"sensorId":"s","value":"warm"}"#)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["field"], "value");
    let evs = events(&s.stop_and_read_log());
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].r#type, "ok");
}

#[tokio::test]
async fn size_type_and_encoding_limits() {
    let s = TestServer::spawn_with(
        &[
            "--max-body-size",
            "2KiB",
            "--max-decompressed-size",
            "4KiB",
            "--max-batch-events",
            "5",
        ],
        &[],
    )
    .await;
    let k = s.admin_key.clone();
    let big = json!({"type":"x","properties":{"blob":"a".repeat(3000)}}).to_string();
    let (st, v) = s.post("/api/v1/events", &k, &big).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{v}"
    );
    let six =
        json!([{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}])
            .to_string();
    let (st, v) = s.post("/api/v1/events", &k, &six).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("6 events"), "{v}");
    // A gzip bomb: small on the wire, too large decompressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(
        json!({"type":"x","properties":{"blob":"a".repeat(100_000)}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 2048);
    let r = s
        .post_raw(
            "/api/v1/events",
            &k,
            &[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ],
            bomb,
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s
        .post_raw(
            "/api/v1/events",
            &k,
            &[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ],
            "not gzip",
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .post_raw("/api/v1/events", &k, &[("content-encoding", "br")], "{}")
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = s
        .post_raw(
            "/api/v1/events",
            &k,
            &[("content-type", "text/xml")],
            "<a/>",
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type");
    // /events/batch keeps its own limit of 1000 even when the server allows more.
    let s2 = TestServer::spawn().await;
    let many: Vec<_> = (0..1001).map(|_| json!({"event_type":"a"})).collect();
    let (st, _) = s2
        .post("/events/batch", &s2.admin_key, &json!(many).to_string())
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    let (st, _) = s2
        .post(
            "/events/batch",
            &s2.admin_key,
            &json!(many[..1000]).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn duplicates_are_acknowledged_once_stored_once_even_across_restarts() {
    let mut s = TestServer::spawn().await;
    let k = s.admin_key.clone();
    let ev = json!({"event_id":"dup-1","type":"click"}).to_string();
    let (_, v) = s.post("/api/v1/events", &k, &ev).await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let (st, v) = s.post("/api/v1/events", &k, &ev).await;
    assert_eq!(
        (st, v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (StatusCode::OK, Some(0), Some(1))
    );
    // Within one batch, too.
    let (_, v) = s
        .post(
            "/api/v1/events",
            &k,
            &json!([{"event_id":"dup-2","type":"a"},{"event_id":"dup-2","type":"a"}]).to_string(),
        )
        .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    // Another tenant may use the same id.
    let (_, other, _) = s.tenant_with_key("other", &["write"]).await;
    let (_, v) = s.post("/api/v1/events", &other, &ev).await;
    assert_eq!(v["accepted"], 1);
    // After a crash the index is rebuilt from the log.
    s.restart();
    let (_, v) = s.post("/api/v1/events", &k, &ev).await;
    assert_eq!(v["duplicates"], 1, "{v}");
    let (_, st) = s.get("/stats", &k).await;
    assert_eq!(st["since_start"]["events_deduplicated"], 1);
    let evs = events(&s.stop_and_read_log());
    assert_eq!(
        evs.iter().filter(|e| e.event_id == "dup-1").count(),
        2,
        "once per tenant"
    );
    assert_eq!(evs.iter().filter(|e| e.event_id == "dup-2").count(), 1);
}

#[tokio::test]
async fn quota_answers_429_with_retry_after_and_stores_nothing() {
    let s = TestServer::spawn().await;
    let (tenant, key, _) = s.tenant_with_key("limited", &["write", "read"]).await;
    let (st, _) = s
        .request(
            "PATCH",
            &format!("/api/v1/tenants/{tenant}"),
            Some(&s.admin_key),
            Some(r#"{"events_per_sec": 1}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // The burst is one full batch (max_batch_events = 10000); spend it, then one more is refused.
    let batch: Vec<_> = (0..10_000).map(|i| json!({"type":"t","n":i})).collect();
    let (st, v) = s
        .post("/api/v1/events", &key, &json!(batch).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let end = s.log_end().await;
    let r = s
        .post_raw(
            "/api/v1/events",
            &key,
            &[("content-type", "application/json")],
            json!(batch[..100]).to_string(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(s.log_end().await, end);
    // Other tenants are not affected.
    let (st, _) = s
        .post("/api/v1/events", &s.admin_key, r#"{"type":"x"}"#)
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn full_log_queue_answers_429_not_unbounded_memory() {
    let s = TestServer::spawn_with(&["--wal-queue-size", "1KiB"], &[]).await;
    let body = readings_batch(200);
    let saw_429 = overload_until(&s, &body, 32, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        saw_429,
        "a 1 KiB queue must overflow under 32 concurrent 10 KiB batches"
    );
}

#[tokio::test]
async fn in_flight_body_budget_answers_503_when_spent() {
    // Room for one 16 KiB body at a time.
    let s = TestServer::spawn_with(
        &["--max-body-size", "16KiB", "--max-inflight-size", "16KiB"],
        &[],
    )
    .await;
    let body = readings_batch(220);
    assert!(body.len() > 8 * 1024 && body.len() < 16 * 1024);
    let saw_503 = overload_until(&s, &body, 16, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        saw_503,
        "16 concurrent bodies cannot all fit a budget of one"
    );
    // Once the load is gone the budget is back.
    let (st, _) = s.post("/api/v1/events", &s.admin_key, &body).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_pipeline_behind_the_log_slows_ingest_with_503_and_retry_after() {
    // Any record the store or the processor has not applied within 1 ms counts as behind.
    let s = TestServer::spawn_with(&["--max-pipeline-lag", "1ms"], &[]).await;
    let body = readings_batch(2000);
    // A batch in flight beside a probe: the probe arrives while the batch is not applied yet.
    // Bounded: 50 tries.
    let mut refused = None;
    for _ in 0..50 {
        let end = s.log_end().await;
        let fill = s.post_raw(
            "/api/v1/events",
            &s.admin_key,
            &[("content-type", "application/json")],
            body.clone(),
        );
        let (_, r) = tokio::join!(
            fill,
            s.post_raw(
                "/api/v1/events",
                &s.admin_key,
                &[("content-type", "application/json")],
                body.clone(),
            )
        );
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            // At most the other batch was appended: a refusal stores nothing.
            assert!(s.log_end().await <= end + 1);
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = refused.expect("a batch beside another one 1 ms behind must be refused");
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unavailable", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("behind the log") && msg.contains("nothing was stored"),
        "{msg}"
    );
    // Caught up, ingest is open again, and /lag reports how far behind each consumer is.
    s.wait_visible().await;
    s.wait_rollups().await;
    let (_, lag) = s.get("/lag", &s.admin_key).await;
    assert_eq!(lag["store"]["behind_ms"], 0, "{lag}");
    assert_eq!(lag["stream"]["behind_ms"], 0, "{lag}");
    let (st, v) = s
        .post("/api/v1/events", &s.admin_key, r#"{"type":"x"}"#)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.wait_metric("eddy_ingest_backpressure_total").await;
}

/// Sends waves of `n` concurrent copies of `body` until some answer is `want` (which must carry
/// `Retry-After`); every other answer must be 200. Bounded: at most 20 waves.
async fn overload_until(s: &TestServer, body: &str, n: usize, want: StatusCode) -> bool {
    for _ in 0..20 {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (client, url, key, body) = (
                s.client.clone(),
                format!("{}/api/v1/events", s.url),
                s.admin_key.clone(),
                body.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("x-api-key", key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.headers().get("retry-after").is_some())
            }));
        }
        let mut seen = false;
        for t in tasks {
            let (st, retry) = t.await.unwrap();
            assert!(st == StatusCode::OK || st == want, "{st}");
            if st == want {
                assert!(retry, "{want} without Retry-After");
                seen = true;
            }
        }
        if seen {
            return true;
        }
    }
    false
}

/// A JSON array of `n` small readings (about 54 bytes each).
fn readings_batch(n: usize) -> String {
    json!(
        (0..n)
            .map(|i| json!({"type":"reading","device_id": format!("dev-{i}"), "metrics":{"v": i}}))
            .collect::<Vec<_>>()
    )
    .to_string()
}
