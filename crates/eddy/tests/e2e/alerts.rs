//! Rules and alerts end to end: CRUD and validation, the alert lifecycle through the API,
//! tenant isolation, durability across a SIGKILL, dead-man rules, and webhooks with retries
//! and dead letters.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::TestServer;

async fn reading(s: &TestServer, key: &str, device: &str, value: f64) {
    let (st, b) = s
        .post(
            "/api/v1/events",
            key,
            &json!({"device_id": device, "metrics": {"temp": value}}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

async fn alerts(s: &TestServer, key: &str, query: &str) -> Vec<Value> {
    s.wait_rollups().await;
    let (st, b) = s.get(&format!("/api/v1/alerts?{query}"), key).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    b["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn rules_are_created_listed_changed_and_deleted_with_clear_errors() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (st, b) = s.get("/api/v1/rules", &key).await;
    assert_eq!(st, StatusCode::OK);
    let rules = b["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "the default rule: {b}");
    assert_eq!(rules[0]["id"], "default-zscore");
    assert_eq!(rules[0]["kind"], "zscore");
    assert_eq!(rules[0]["window"], 100);
    assert_eq!(rules[0]["threshold"], 3.0);

    for (body, field) in [
        (json!({"op": ">", "value": 1}), "kind"),
        (json!({"kind": "threshold", "op": ">="}), "op"),
        (json!({"kind": "threshold", "op": ">"}), "value"),
        (json!({"kind": "zscore", "window": 0}), "window"),
        (json!({"kind": "deadman", "minutes": -1}), "minutes"),
        (json!({"kind": "zscore", "value": 1}), "value"),
        (json!({"id": "no spaces", "kind": "zscore"}), "id"),
    ] {
        let (st, e) = s.post("/api/v1/rules", &key, &body.to_string()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["errors"][0]["field"], field, "{body}: {e}");
    }
    let (st, e) = s
        .post(
            "/api/v1/rules",
            &key,
            r#"{"kind": "zscore", "colour": "red"}"#,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("colour"), "{e}");

    let hot = json!({"id": "hot", "name": "too hot", "kind": "threshold", "op": ">", "value": 30, "devices": ["d1"], "severity": "critical"});
    let (st, r) = s.post("/api/v1/rules", &key, &hot.to_string()).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(
        (&r["id"], &r["op"], &r["value"], &r["devices"]),
        (&json!("hot"), &json!(">"), &json!(30.0), &json!(["d1"]))
    );
    let (st, _) = s.post("/api/v1/rules", &key, &hot.to_string()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, r) = s
        .post(
            "/api/v1/rules",
            &key,
            r#"{"kind": "deadman", "minutes": 10}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("rule-"), "{r}");

    // A merge patch: change the limit; switching kind needs the old fields removed (null).
    let (st, r) = s
        .request(
            "PATCH",
            "/api/v1/rules/hot",
            Some(&key),
            Some(r#"{"value": 40}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!((&r["value"], &r["name"]), (&json!(40.0), &json!("too hot")));
    let (st, e) = s
        .request(
            "PATCH",
            "/api/v1/rules/hot",
            Some(&key),
            Some(r#"{"kind": "zscore"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, r) = s
        .request(
            "PATCH",
            "/api/v1/rules/hot",
            Some(&key),
            Some(r#"{"kind": "zscore", "op": null, "value": null, "window": 30}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!((&r["kind"], &r["window"]), (&json!("zscore"), &json!(30)));
    let (st, r) = s
        .request(
            "PUT",
            "/api/v1/rules/cold",
            Some(&key),
            Some(r#"{"kind": "threshold", "op": "<", "value": 0}"#),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (st, r) = s
        .request(
            "PUT",
            "/api/v1/rules/cold",
            Some(&key),
            Some(r#"{"kind": "threshold", "op": "<", "value": -5}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["value"], -5.0);
    let (_, b) = s.get("/api/v1/rules", &key).await;
    assert_eq!(b["rules"].as_array().unwrap().len(), 4);

    // Another tenant sees none of it and cannot touch it; a read key cannot change rules.
    let (_, other, _) = s.tenant_with_key("other", &["read", "write"]).await;
    let (_, b) = s.get("/api/v1/rules", &other).await;
    assert_eq!(b["rules"].as_array().unwrap().len(), 1, "{b}");
    let (st, _) = s.get("/api/v1/rules/hot", &other).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .request("DELETE", "/api/v1/rules/hot", Some(&other), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (read_only, _) = s.key_for("default", &["read"]).await;
    let (st, _) = s.post("/api/v1/rules", &read_only, &hot.to_string()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, _) = s
        .request("DELETE", "/api/v1/rules/hot", Some(&key), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get("/api/v1/rules/hot", &key).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Open → repeats update → acknowledge → auto-resolve; manual resolve; idempotent and
/// conflicting requests; the other tenant; and everything still there after a SIGKILL.
#[tokio::test]
async fn alerts_follow_their_lifecycle_and_survive_a_crash() {
    let mut s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let rule =
        json!({"id": "hot", "kind": "threshold", "op": ">", "value": 50, "resolve_after": 2});
    let (st, _) = s.post("/api/v1/rules", &key, &rule.to_string()).await;
    assert_eq!(st, StatusCode::CREATED);
    reading(&s, &key, "d1", 20.0).await;
    assert!(alerts(&s, &key, "").await.is_empty());
    reading(&s, &key, "d1", 60.0).await;
    reading(&s, &key, "d1", 65.0).await;
    reading(&s, &key, "d2", 99.0).await;
    let open = alerts(&s, &key, "status=open&device_id=d1").await;
    assert_eq!(open.len(), 1, "one alert per rule and series: {open:?}");
    let a = &open[0];
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(
        (&a["rule_id"], &a["metric"], &a["occurrences"], &a["value"]),
        (&json!("hot"), &json!("temp"), &json!(2), &json!(65.0))
    );
    assert_eq!(alerts(&s, &key, "status=open").await.len(), 2, "d1 and d2");
    assert_eq!(alerts(&s, &key, "status=resolved").await.len(), 0);
    let (st, e) = s.get("/api/v1/alerts?status=closed", &key).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");

    // Another tenant can neither see nor acknowledge it.
    let (_, other, _) = s.tenant_with_key("other", &["read", "write"]).await;
    assert!(alerts(&s, &other, "").await.is_empty());
    let (st, _) = s
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), &other, "")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, a) = s
        .post(
            &format!("/api/v1/alerts/{id}/acknowledge"),
            &key,
            r#"{"note": "on it"}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(
        (&a["status"], &a["note"]),
        (&json!("acknowledged"), &json!("on it"))
    );
    assert!(a["acknowledged_at"].is_string());
    let (st, again) = s
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), &key, "")
        .await;
    assert_eq!(
        (st, &again["status"]),
        (StatusCode::OK, &json!("acknowledged"))
    );
    // Two normal points resolve it.
    reading(&s, &key, "d1", 20.0).await;
    reading(&s, &key, "d1", 21.0).await;
    let (_, a) = s.get(&format!("/api/v1/alerts/{id}"), &key).await;
    assert_eq!(
        (&a["status"], &a["resolution"]),
        (&json!("resolved"), &json!("auto"))
    );
    let (st, _) = s
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), &key, "")
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "a resolved alert cannot be acknowledged"
    );
    let (st, _) = s.post("/api/v1/alerts/alert-999/resolve", &key, "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // d2's alert is resolved by hand.
    let d2 = alerts(&s, &key, "device_id=d2").await;
    let d2_id = d2[0]["id"].as_str().unwrap().to_string();
    let (st, a) = s
        .post(&format!("/api/v1/alerts/{d2_id}/resolve"), &key, "")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(a["resolution"], "manual");

    let before = alerts(&s, &key, "").await;
    assert_eq!(before.len(), 2);
    s.restart();
    let after = alerts(&s, &key, "").await;
    assert_eq!(
        after, before,
        "alerts are durable and replay to the same state"
    );
    let (_, r) = s.get("/api/v1/rules/hot", &key).await;
    assert_eq!(r["resolve_after"], 2, "rules too");
}

#[tokio::test]
async fn the_default_zscore_rule_catches_a_spike() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let batch: Vec<Value> = (0..60)
        .map(|i| {
            let v = 20.0 + [0.0, 0.4, -0.4, 0.8, -0.8][i % 5];
            json!({"device_id": "pump", "metrics": {"pressure": v}})
        })
        .collect();
    let (st, _) = s
        .post("/api/v1/events", &key, &json!(batch).to_string())
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        alerts(&s, &key, "").await.is_empty(),
        "noise is not an anomaly"
    );
    let (st, _) = s
        .post(
            "/api/v1/events",
            &key,
            &json!({"device_id": "pump", "metrics": {"pressure": 35.0}}).to_string(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let found = alerts(&s, &key, "").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["rule_id"], "default-zscore");
    assert_eq!(found[0]["severity"], "warning");
    assert!(found[0]["score"].as_f64().unwrap() > 3.0);
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("pressure on pump = 35 is "),
        "{}",
        found[0]["message"]
    );
}

#[tokio::test]
async fn a_deadman_rule_fires_on_silence_and_resolves_when_data_returns() {
    let s = TestServer::spawn().await;
    let key = s.admin_key.clone();
    let (st, _) = s
        .post(
            "/api/v1/rules",
            &key,
            r#"{"id": "quiet", "kind": "deadman", "minutes": 0.02, "metrics": ["temp"]}"#,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    reading(&s, &key, "d1", 1.0).await;
    let mut found = Vec::new();
    for _ in 0..100 {
        found = alerts(&s, &key, "rule_id=quiet").await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(found.len(), 1, "silence noticed within the check interval");
    assert!(
        found[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("no temp on d1 data for 0.02 minutes")
    );
    reading(&s, &key, "d1", 1.0).await;
    let found = alerts(&s, &key, "rule_id=quiet").await;
    assert_eq!(
        (&found[0]["status"], &found[0]["resolution"]),
        (&json!("resolved"), &json!("data_resumed"))
    );
}

/// What a webhook receiver saw: (headers of interest, body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A loopback HTTP receiver answering each request with the next status of `script` (the last
/// one repeats).
async fn receiver(script: Vec<u16>) -> (String, Seen) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as S};
    let seen: Seen = Arc::default();
    let state = (seen.clone(), Arc::new(script));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State((seen, script)): State<(Seen, Arc<Vec<u16>>)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let mut v = seen.lock().unwrap();
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    v.push((
                        h("x-eddy-event"),
                        h("x-eddy-delivery"),
                        serde_json::from_str(&body).unwrap(),
                    ));
                    let code = script[(v.len() - 1).min(script.len() - 1)];
                    S::from_u16(code).unwrap()
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn wait_for(seen: &Seen, n: usize) {
    for _ in 0..300 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "expected {n} webhook requests, got {}",
        seen.lock().unwrap().len()
    );
}

async fn dead_letters(s: &TestServer) -> u64 {
    let text = s.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("eddy_webhook_dead_letters_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn webhooks_retry_with_backoff_and_dead_letter_what_never_arrives() {
    let s =
        TestServer::spawn_with(&["--webhook-attempts", "3", "--webhook-timeout", "2s"], &[]).await;
    let admin = s.admin_key.clone();
    let (flaky_url, flaky) = receiver(vec![500, 503, 200]).await;
    let (down_url, down) = receiver(vec![502]).await;
    let (gone_url, gone) = receiver(vec![404]).await;
    let (st, e) = s
        .request(
            "PATCH",
            "/api/v1/tenants/default",
            Some(&admin),
            Some(r#"{"webhook_url": "ftp://example.com/x"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let mut keys = Vec::new();
    for (name, url) in [
        ("flaky", &flaky_url),
        ("down", &down_url),
        ("gone", &gone_url),
    ] {
        let (id, key, _) = s.tenant_with_key(name, &["read", "write"]).await;
        let (st, t) = s
            .request(
                "PATCH",
                &format!("/api/v1/tenants/{id}"),
                Some(&admin),
                Some(&json!({"webhook_url": url}).to_string()),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{t}");
        assert_eq!(t["webhook_url"], json!(url));
        let (st, _) = s
            .post(
                "/api/v1/rules",
                &key,
                r#"{"id": "hot", "kind": "threshold", "op": ">", "value": 50}"#,
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
        keys.push((id, key));
    }
    for (_, key) in &keys {
        reading(&s, key, "d1", 90.0).await;
    }
    // The flaky receiver gets the same delivery three times; the third succeeds.
    wait_for(&flaky, 3).await;
    let got = flaky.lock().unwrap().clone();
    assert!(
        got.iter()
            .all(|(ev, id, _)| ev == "alert.opened" && id == &got[0].1)
    );
    let body = &got[2].2;
    assert_eq!(body["type"], "alert");
    assert_eq!(body["tenant_id"], json!(keys[0].0));
    assert_eq!(body["data"]["device_id"], "d1");
    assert_eq!(body["data"]["event"], "opened");
    assert_eq!(body["data"]["message"], "temp on d1 = 90 is above 50");
    // The one that always fails: 3 attempts, then a dead letter; 404 is not retried.
    wait_for(&down, 3).await;
    wait_for(&gone, 1).await;
    for _ in 0..100 {
        if dead_letters(&s).await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead_letters(&s).await, 2);
    assert_eq!(down.lock().unwrap().len(), 3, "no more than the attempts");
    assert_eq!(gone.lock().unwrap().len(), 1, "a 4xx is final");
    assert_eq!(flaky.lock().unwrap().len(), 3);
    // Resolving is notified too.
    let id = got[0].1.split('.').next().unwrap().to_string();
    let (st, _) = s
        .post(&format!("/api/v1/alerts/{id}/resolve"), &keys[0].1, "")
        .await;
    assert_eq!(st, StatusCode::OK);
    wait_for(&flaky, 4).await;
    assert_eq!(flaky.lock().unwrap()[3].0, "alert.resolved");
}
